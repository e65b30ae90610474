/**
 * What the page URL keeps, so a shared link reopens the same view: where the model came from (the demo or a
 * URL: local files cannot be reopened from a link), the tensor, the workspace tab, the heatmap formats, mode
 * and zoom, and the interface language. Kept in the fragment (#...), which never reaches a server.
 *
 *   #src=demo&tensor=model.layers.0.self_attn.q_proj.weight&tab=heatmaps&formats=int8-channel,int4-g128
 *    &show=abs&pool=max&view=0,0,256,256&lang=zh-CN
 */
import type { HeatmapPooling, HeatmapQuantity, HeatmapView } from "../quant/heatmap.ts";
import { isLang, type Lang } from "./i18n.ts";

export type LabTab = "quantize" | "heatmaps" | "results" | "export";

export interface LabUrlState {
  /** "demo", or the URL the model was opened from. */
  src?: string;
  tensor?: string;
  tab?: LabTab;
  formats?: string[];
  show?: HeatmapQuantity;
  pool?: HeatmapPooling;
  view?: HeatmapView;
  lang?: Lang;
}

const QUANTITIES: readonly HeatmapQuantity[] = ["weights", "abs", "rel", "signed", "scale"];
const POOLINGS: readonly HeatmapPooling[] = ["max", "mean"];
const TABS: readonly LabTab[] = ["quantize", "heatmaps", "results", "export"];

/** The state in a URL fragment; fields that do not parse are left out (a hand-edited link still opens). */
export function parseUrlState(hash: string): LabUrlState {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const out: LabUrlState = {};
  const src = p.get("src");
  if (src) out.src = src;
  const tensor = p.get("tensor");
  if (tensor) out.tensor = tensor;
  const tab = p.get("tab");
  if (tab && (TABS as readonly string[]).includes(tab)) out.tab = tab as LabTab;
  const formats = p.get("formats");
  if (formats) out.formats = formats.split(",").filter((f) => f !== "").slice(0, 4);
  const show = p.get("show");
  if (show && (QUANTITIES as readonly string[]).includes(show)) out.show = show as HeatmapQuantity;
  const pool = p.get("pool");
  if (pool && (POOLINGS as readonly string[]).includes(pool)) out.pool = pool as HeatmapPooling;
  const view = p.get("view")?.split(",").map(Number);
  if (view && view.length === 4 && view.every((v) => Number.isInteger(v) && v >= 0) && view[2]! > 0 && view[3]! > 0) {
    out.view = { row0: view[0]!, col0: view[1]!, rows: view[2]!, cols: view[3]! };
  }
  const lang = p.get("lang") ?? undefined;
  if (isLang(lang)) out.lang = lang;
  return out;
}

/** The fragment for a state (without the '#'). */
export function formatUrlState(s: LabUrlState): string {
  const p = new URLSearchParams();
  if (s.src) p.set("src", s.src);
  if (s.tensor) p.set("tensor", s.tensor);
  if (s.tab) p.set("tab", s.tab);
  if (s.formats && s.formats.length > 0) p.set("formats", s.formats.join(","));
  if (s.show) p.set("show", s.show);
  if (s.pool) p.set("pool", s.pool);
  if (s.view) p.set("view", [s.view.row0, s.view.col0, s.view.rows, s.view.cols].join(","));
  if (s.lang) p.set("lang", s.lang);
  // Commas are fine in a fragment and keep links readable.
  return p.toString().replace(/%2C/gi, ",");
}
