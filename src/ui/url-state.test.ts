import { describe, expect, it } from "vitest";
import { formatUrlState, parseUrlState } from "./url-state.ts";

describe("page URL state", () => {
  it("round-trips every field, readably", () => {
    const state = {
      src: "https://example.org/a b/model.safetensors?x=1&y=2",
      tensor: "model.layers.0.self_attn.q_proj.weight",
      tab: "heatmaps" as const,
      formats: ["int8-channel", "int4-g128", "q4_K"],
      show: "rel" as const,
      pool: "mean" as const,
      view: { row0: 10, col0: 0, rows: 20, cols: 256 },
      lang: "zh-CN" as const,
    };
    const hash = formatUrlState(state);
    expect(hash).toContain("formats=int8-channel,int4-g128,q4_K");
    expect(hash).toContain("view=10,0,20,256");
    expect(parseUrlState(`#${hash}`)).toEqual(state);
  });

  it("drops what does not parse instead of failing the link", () => {
    expect(parseUrlState("#tab=nope&show=loud&pool=sum&view=1,2,0,4&formats=&lang=fr&tensor=w")).toEqual({ tensor: "w" });
    expect(parseUrlState("#view=1,2,3")).toEqual({});
    expect(parseUrlState("")).toEqual({});
  });
});
