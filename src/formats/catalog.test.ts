import { beforeAll, describe, expect, it } from "vitest";
import { memorySource, storiesFile } from "../../test/formats-fixtures.ts";
import { readFileSync } from "node:fs";
import {
  OUTSIDE_LAYERS_GROUP,
  catalogRows,
  filterRows,
  groupOf,
  groupRows,
  naturalCompare,
  sortRows,
  totals,
  type TensorRow,
} from "./catalog.ts";
import { encodeFromF32 } from "./dtypes.ts";
import { openModel } from "./model.ts";
import { writeSafetensors } from "./safetensors.ts";

describe("groupOf", () => {
  it("finds the numbered block in the usual layouts", () => {
    expect(groupOf("model.layers.12.mlp.up_proj.weight")).toBe("model.layers.12");
    expect(groupOf("transformer.h.3.attn.c_attn.weight")).toBe("transformer.h.3");
    expect(groupOf("layers.0.attention.wq.weight")).toBe("layers.0");
    expect(groupOf("blk.7.attn_q.weight")).toBe("blk.7");
    expect(groupOf("model.decoder.layers.5.fc1.weight")).toBe("model.decoder.layers.5");
    expect(groupOf("encoder.layer.11.output.dense.weight")).toBe("encoder.layer.11");
    expect(groupOf("model.layers.3.mlp.experts.17.w1.weight")).toBe("model.layers.3");
  });

  it("puts everything outside the blocks in one group", () => {
    for (const name of ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "token_embd.weight", "model.layers", "proj.3.weight"]) {
      expect(groupOf(name)).toBe(OUTSIDE_LAYERS_GROUP);
    }
  });
});

describe("naturalCompare", () => {
  it("compares digit runs as numbers", () => {
    const names = ["layers.10.w", "layers.2.w", "layers.1.w", "layers.2.b", "a", "layers.02.w", "layers.100000000000000000000001.w", "layers.100000000000000000000000.w"];
    expect([...names].sort(naturalCompare)).toEqual([
      "a",
      "layers.1.w",
      "layers.2.b",
      "layers.02.w",
      "layers.2.w",
      "layers.10.w",
      "layers.100000000000000000000000.w",
      "layers.100000000000000000000001.w",
    ]);
    expect(naturalCompare("x", "x")).toBe(0);
  });
});

/** A model with 12 layers of two tensors each, plus embedding and head, in file order b..a. */
async function twelveLayerModel() {
  const tensors = [];
  for (let l = 11; l >= 0; l--) {
    tensors.push({ name: `model.layers.${l}.mlp.weight`, dtype: "F16" as const, shape: [4, 8], data: encodeFromF32("F16", new Array(32).fill(l)) });
    tensors.push({ name: `model.layers.${l}.norm.weight`, dtype: "F32" as const, shape: [8], data: encodeFromF32("F32", new Array(8).fill(1)) });
  }
  tensors.push({ name: "model.embed_tokens.weight", dtype: "BF16" as const, shape: [16, 8], data: encodeFromF32("BF16", new Array(128).fill(0.5)) });
  tensors.push({ name: "lm_head.weight", dtype: "I8" as const, shape: [16, 8], data: encodeFromF32("I8", new Array(128).fill(1)) });
  return openModel([memorySource(writeSafetensors(tensors), "twelve.safetensors")]);
}

describe("catalogRows", () => {
  let rows: TensorRow[];
  beforeAll(async () => {
    rows = catalogRows(await twelveLayerModel());
  });

  it("sorts names naturally: layer 2 before layer 10", () => {
    const names = rows.map((r) => r.name);
    expect(names.indexOf("model.layers.2.mlp.weight")).toBeLessThan(names.indexOf("model.layers.10.mlp.weight"));
    expect(names[0]).toBe("lm_head.weight");
    expect(names.slice(1, 5)).toEqual(["model.embed_tokens.weight", "model.layers.0.mlp.weight", "model.layers.0.norm.weight", "model.layers.1.mlp.weight"]);
    expect(names.at(-1)).toBe("model.layers.11.norm.weight");
  });

  it("carries each tensor's facts, its group, and its share of the model's bytes", () => {
    const mlp = rows.find((r) => r.name === "model.layers.10.mlp.weight")!;
    expect(mlp).toMatchObject({ dtype: "F16", shape: [4, 8], params: 32, bytes: 64, file: "twelve.safetensors", group: "model.layers.10" });
    const total = 12 * (64 + 32) + 256 + 128;
    expect(mlp.share).toBeCloseTo(64 / total, 15);
    expect(rows.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1, 12);
    const t = totals(rows);
    expect(t).toMatchObject({ tensors: 26, params: 12 * 40 + 256, bytes: total });
    expect(t.share).toBeCloseTo(1, 12);
  });

  it("groups rows by layer in table order, with per-group totals that add up", () => {
    const groups = groupRows(rows);
    expect(groups.map((g) => g.group)).toEqual([OUTSIDE_LAYERS_GROUP, ...Array.from({ length: 12 }, (_, l) => `model.layers.${l}`)]);
    expect(groups[0]!.rows.map((r) => r.name)).toEqual(["lm_head.weight", "model.embed_tokens.weight"]);
    expect(groups[1]).toMatchObject({ params: 40, bytes: 96 });
    expect(groups.reduce((s, g) => s + g.bytes, 0)).toBe(totals(rows).bytes);
    for (const g of groups) expect(g.share).toBeCloseTo(g.bytes / totals(rows).bytes, 12);
    const sortedBySize = groupRows(sortRows(rows, "bytes", "desc"));
    expect(sortedBySize[0]!.group).toBe(OUTSIDE_LAYERS_GROUP);
  });

  it("on stories260K: 47 rows in six groups", async () => {
    const model = await openModel([memorySource(readFileSync(storiesFile), "model.safetensors")]);
    const r = catalogRows(model);
    expect(r).toHaveLength(47);
    expect(groupRows(r).map((g) => [g.group, g.rows.length])).toEqual([
      [OUTSIDE_LAYERS_GROUP, 2],
      ["model.layers.0", 9],
      ["model.layers.1", 9],
      ["model.layers.2", 9],
      ["model.layers.3", 9],
      ["model.layers.4", 9],
    ]);
    expect(totals(r)).toMatchObject({ tensors: 47, params: 260_032, bytes: 1_040_128 });
  });
});

describe("filterRows", () => {
  let rows: TensorRow[];
  beforeAll(async () => {
    rows = catalogRows(await twelveLayerModel());
  });

  it("matches a case-insensitive substring of the name; an empty query keeps all", () => {
    expect(filterRows(rows, "LAYERS.1.").rows.map((r) => r.name)).toEqual(["model.layers.1.mlp.weight", "model.layers.1.norm.weight"]);
    expect(filterRows(rows, "  ").rows).toHaveLength(26);
    expect(filterRows(rows, "nothing-like-this").rows).toEqual([]);
  });

  it("takes /regex/flags", () => {
    expect(filterRows(rows, "/layers\\.1\\d\\.mlp/").rows.map((r) => r.name)).toEqual(["model.layers.10.mlp.weight", "model.layers.11.mlp.weight"]);
    expect(filterRows(rows, "/^LM_/").rows).toEqual([]);
    expect(filterRows(rows, "/^LM_/i").rows.map((r) => r.name)).toEqual(["lm_head.weight"]);
    // a g flag would make RegExp.test stateful and skip every other match
    expect(filterRows(rows, "/norm/g").rows).toHaveLength(12);
  });

  it("reports an invalid regex and leaves the rows unfiltered", () => {
    const r = filterRows(rows, "/layers.(/");
    expect(r.rows).toHaveLength(26);
    expect(r.error).toMatch(/^invalid regular expression \/layers\.\(\/: /);
  });
});

describe("sortRows", () => {
  let rows: TensorRow[];
  beforeAll(async () => {
    rows = catalogRows(await twelveLayerModel());
  });

  it("sorts by numbers, by shapes, by strings naturally, in both directions, ties by name", () => {
    const byBytes = sortRows(rows, "bytes", "desc");
    expect(byBytes.slice(0, 2).map((r) => r.name)).toEqual(["model.embed_tokens.weight", "lm_head.weight"]);
    expect(byBytes.at(-1)!.name).toBe("model.layers.11.norm.weight");
    expect(sortRows(rows, "bytes", "asc")[0]!.name).toBe("model.layers.0.norm.weight");
    const byShape = sortRows(rows, "shape");
    expect(byShape.map((r) => r.shape.join("x")).filter((s, i, a) => a.indexOf(s) === i)).toEqual(["4x8", "8", "16x8"]);
    expect(sortRows(rows, "name", "desc").map((r) => r.name)).toEqual([...rows].reverse().map((r) => r.name));
    expect(sortRows(rows, "dtype").map((r) => r.dtype).filter((s, i, a) => a.indexOf(s) === i)).toEqual(["BF16", "F16", "F32", "I8"]);
    expect(rows[0]!.name).toBe("lm_head.weight"); // the input is not modified
  });
});
