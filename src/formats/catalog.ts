/**
 * The tensor table as data: rows, layer groups, filter, sort and totals. The UI and the CLI both
 * show exactly this; neither computes anything of its own.
 */
import { errorText } from "../common/error-text.ts";
import type { OpenedModel } from "./model.ts";
import type { TensorInfo } from "./safetensors.ts";
import { undecodableReason } from "./tensor-data.ts";

/** A tensor as the table shows it: what the header says (without the byte source), its share and group. */
export type TensorRow = Omit<TensorInfo, "source"> & {
  /** bytes / the model's total bytes (0 for an empty model). */
  share: number;
  /** groupOf(name) */
  group: string;
  /** Why the lab cannot read its values (a GGUF tensor in an IQ*, TQ*... type); absent when it can. */
  undecodable?: string;
};

/** The group of every tensor outside the numbered blocks: embeddings, final norm, output head... */
export const OUTSIDE_LAYERS_GROUP = "embeddings & head";

/** Path segments that are followed by a block number in the usual checkpoint layouts. */
const BLOCK_WORDS = new Set(["layers", "layer", "h", "blk", "blocks", "block"]);

/**
 * The layer a tensor belongs to: its name up to the first number that follows a block word
 * ("layers", "layer", "h", "blk", "blocks", "block"), so
 * model.layers.12.mlp.up_proj.weight -> model.layers.12, transformer.h.3.attn.c_attn.weight ->
 * transformer.h.3, blk.0.attn_q.weight -> blk.0, model.decoder.layers.5.fc1.weight ->
 * model.decoder.layers.5. Everything else is in OUTSIDE_LAYERS_GROUP.
 */
export function groupOf(name: string): string {
  const parts = name.split(".");
  for (let i = 1; i < parts.length; i++) {
    if (/^\d+$/.test(parts[i]!) && BLOCK_WORDS.has(parts[i - 1]!)) return parts.slice(0, i + 1).join(".");
  }
  return OUTSIDE_LAYERS_GROUP;
}

const chunker = /(\d+)|(\D+)/g;

/**
 * Compare strings with runs of digits compared as numbers: "layers.2" < "layers.10".
 * Ties between equal numbers written differently ("01" vs "1") fall back to plain order.
 */
export function naturalCompare(a: string, b: string): number {
  if (a === b) return 0;
  const pa = a.match(chunker) ?? [];
  const pb = b.match(chunker) ?? [];
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    if (x === y) continue;
    const xDigits = x.charCodeAt(0) >= 48 && x.charCodeAt(0) <= 57;
    const yDigits = y.charCodeAt(0) >= 48 && y.charCodeAt(0) <= 57;
    if (xDigits && yDigits) {
      // Compare by value without Number(): digit runs may be longer than a double holds.
      const xs = x.replace(/^0+(?=\d)/, "");
      const ys = y.replace(/^0+(?=\d)/, "");
      if (xs.length !== ys.length) return xs.length - ys.length;
      if (xs !== ys) return xs < ys ? -1 : 1;
      continue;
    }
    return x < y ? -1 : 1;
  }
  if (pa.length !== pb.length) return pa.length - pb.length;
  return a < b ? -1 : 1;
}

function withUndecodable(t: TensorInfo): { undecodable?: string } {
  const why = undecodableReason(t);
  return why === undefined ? {} : { undecodable: why };
}

/** The model's tensors as table rows, in natural name order. */
export function catalogRows(model: OpenedModel): TensorRow[] {
  const total = model.totalBytes;
  return model.tensors
    .map(
      (t): TensorRow => ({
        name: t.name,
        dtype: t.dtype,
        shape: [...t.shape],
        params: t.params,
        bytes: t.bytes,
        offset: t.offset,
        file: t.file,
        share: total > 0 ? t.bytes / total : 0,
        group: groupOf(t.name),
        ...withUndecodable(t),
      }),
    )
    .sort((a, b) => naturalCompare(a.name, b.name));
}

export interface FilterResult {
  rows: TensorRow[];
  /** Set when the query is a /regex/ that does not compile; rows are then left unfiltered. */
  error?: string;
}

const REGEX_QUERY = /^\/(.*)\/([a-z]*)$/s;

/**
 * Keep the rows whose name matches `query`: a case-insensitive substring, or, written as
 * /pattern/flags, a regular expression (the g and y flags are dropped: they would make test() stateful).
 * An empty query keeps everything.
 */
export function filterRows(rows: readonly TensorRow[], query: string): FilterResult {
  const q = query.trim();
  if (q === "") return { rows: [...rows] };
  const m = REGEX_QUERY.exec(q);
  if (m) {
    let re: RegExp;
    try {
      re = new RegExp(m[1]!, m[2]!.replace(/[gy]/g, ""));
    } catch (e) {
      return { rows: [...rows], error: `invalid regular expression ${q}: ${errorText(e)}` };
    }
    return { rows: rows.filter((r) => re.test(r.name)) };
  }
  const needle = q.toLowerCase();
  return { rows: rows.filter((r) => r.name.toLowerCase().includes(needle)) };
}

export type SortKey = keyof TensorRow;

function compareShapes(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** A sorted copy. Strings sort naturally, shapes dimension by dimension; ties keep name order. */
export function sortRows(rows: readonly TensorRow[], key: SortKey, dir: "asc" | "desc" = "asc"): TensorRow[] {
  const sign = dir === "asc" ? 1 : -1;
  const compare = (a: TensorRow, b: TensorRow): number => {
    const x = a[key];
    const y = b[key];
    if (typeof x === "number" && typeof y === "number") return x - y;
    if (Array.isArray(x) && Array.isArray(y)) return compareShapes(x, y);
    return naturalCompare(String(x), String(y));
  };
  return [...rows].sort((a, b) => sign * compare(a, b) || naturalCompare(a.name, b.name));
}

export interface RowGroup extends Totals {
  group: string;
  rows: TensorRow[];
}

/** Rows gathered by group, groups in the order they first appear in `rows` (so a sorted table stays sorted). */
export function groupRows(rows: readonly TensorRow[]): RowGroup[] {
  const groups = new Map<string, RowGroup>();
  for (const r of rows) {
    let g = groups.get(r.group);
    if (!g) groups.set(r.group, (g = { group: r.group, rows: [], tensors: 0, params: 0, bytes: 0, share: 0 }));
    g.rows.push(r);
    addRow(g, r);
  }
  return [...groups.values()];
}

export interface Totals {
  tensors: number;
  params: number;
  bytes: number;
  /** Share of the whole model these rows hold (the sum of their shares). */
  share: number;
}

function addRow(t: Totals, r: TensorRow): void {
  t.tensors++;
  t.params += r.params;
  t.bytes += r.bytes;
  t.share += r.share;
}

export function totals(rows: readonly TensorRow[]): Totals {
  const t: Totals = { tensors: 0, params: 0, bytes: 0, share: 0 };
  for (const r of rows) addRow(t, r);
  return t;
}
