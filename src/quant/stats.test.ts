import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { f32At, memorySource, rawSafetensors, storiesFile } from "../../test/formats-fixtures.ts";
import { encodeFromF32 } from "../formats/dtypes.ts";
import { openModel, type OpenedModel } from "../formats/model.ts";
import { writeSafetensors } from "../formats/safetensors.ts";
import { FIRST_VALUES, tensorStats } from "./stats.ts";

/** Textbook statistics of an array, in double precision, two passes. */
function reference(values: Float32Array) {
  const finite = [...values].filter(Number.isFinite);
  const mean = finite.reduce((s, v) => s + v, 0) / finite.length;
  const variance = finite.reduce((s, v) => s + (v - mean) ** 2, 0) / finite.length;
  return { mean, std: Math.sqrt(variance), min: Math.min(...finite), max: Math.max(...finite) };
}

describe("tensorStats on stories260K", () => {
  let model: OpenedModel;
  const raw = rawSafetensors(storiesFile);
  beforeAll(async () => {
    model = await openModel([memorySource(readFileSync(storiesFile), "model.safetensors")]);
  });

  it("matches a direct computation for every tensor, streamed in small chunks", async () => {
    for (const t of model.tensors) {
      const r = raw.tensors.get(t.name)!;
      const values = f32At(raw.bytes, r.start, r.end);
      const ref = reference(values);
      // chunks of at most 1 KiB: many chunks for every matrix, so the merging is exercised
      const s = await tensorStats(t, undefined, 1024);
      expect(s.count).toBe(t.params);
      expect(s.min).toBe(ref.min);
      expect(s.max).toBe(ref.max);
      expect(Math.abs(s.mean - ref.mean)).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(ref.mean)));
      expect(Math.abs(s.std - ref.std)).toBeLessThanOrEqual(1e-12 * ref.std);
      expect(s.nan + s.inf).toBe(0);
      expect(s.zeros).toBe([...values].filter((v) => v === 0).length);
      expect(s.first).toEqual([...values.subarray(0, FIRST_VALUES)]);
    }
  });

  it("gives the same result whatever the chunk size", async () => {
    const t = model.tensors.find((x) => x.name === "model.layers.3.mlp.down_proj.weight")!;
    const whole = await tensorStats(t);
    const chunked = await tensorStats(t, undefined, 700); // one row of 172 float32 per chunk
    expect(chunked.min).toBe(whole.min);
    expect(chunked.max).toBe(whole.max);
    expect(chunked.mean).toBeCloseTo(whole.mean, 14);
    expect(chunked.std).toBeCloseTo(whole.std, 14);
  });
});

describe("tensorStats on special values", () => {
  async function statsOf(dtype: "F32" | "F16", shape: number[], values: number[]) {
    const model = await openModel([memorySource(writeSafetensors([{ name: "t", dtype, shape, data: encodeFromF32(dtype, values) }]))]);
    return tensorStats(model.tensors[0]!, undefined, 8);
  }

  it("counts NaN, inf and zeros apart and leaves them out of min/max/mean/std", async () => {
    const values = [NaN, 1, -0, Infinity, 3, 0, -Infinity, NaN, 2, -6, 0, 4, 1, 1, 1, 1, 1, 7];
    const s = await statsOf("F32", [3, 6], values);
    expect(s).toMatchObject({ count: 18, nan: 2, inf: 2, zeros: 3, min: -6, max: 7 });
    const finite = values.filter(Number.isFinite);
    const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
    expect(s.mean).toBeCloseTo(mean, 14);
    expect(s.std).toBeCloseTo(Math.sqrt(finite.reduce((a, v) => a + (v - mean) ** 2, 0) / finite.length), 14);
    expect(s.first).toEqual(values.slice(0, 16));
  });

  it("orders -0 below +0 for min and max, whichever comes first", async () => {
    for (const values of [[0, -0, 0], [-0, 0, -0]]) {
      const s = await statsOf("F32", [3], values);
      expect(Object.is(s.min, -0), `min of ${values.map((v) => (Object.is(v, -0) ? "-0" : "0"))}`).toBe(true);
      expect(Object.is(s.max, 0)).toBe(true);
    }
  });

  it("has NaN statistics when nothing is finite, and handles an empty tensor", async () => {
    const allBad = await statsOf("F16", [4], [NaN, Infinity, NaN, -Infinity]);
    expect(allBad).toMatchObject({ count: 4, nan: 2, inf: 2, zeros: 0 });
    for (const k of ["min", "max", "mean", "std"] as const) expect(allBad[k]).toBeNaN();
    const empty = await statsOf("F32", [0, 5], []);
    expect(empty).toMatchObject({ count: 0, nan: 0, inf: 0, zeros: 0, first: [] });
  });

  it("stays accurate for values far from zero (no sum-of-squares cancellation)", async () => {
    const values = Array.from({ length: 4096 }, (_, i) => 10000 + (i % 2 === 0 ? 0.5 : -0.5));
    const s = await statsOf("F32", [64, 64], values);
    expect(s.mean).toBe(10000);
    expect(s.std).toBe(0.5);
  });
});
