import { describe, expect, it } from "vitest";
import { gaussian } from "../../test/random.ts";
import { weightBlock } from "./block-params.ts";
import { FP4_CODE, NF4_CODE } from "./bnb.ts";
import type { QuantFormat } from "./format.ts";
import { FORMATS } from "./registry.ts";

const fr = Math.fround;
const shape = { rows: 3, cols: 512 };
/** Weights with a few large outliers, so blocks get different scales and asymmetric ones non-zero minimums. */
const x = gaussian(shape.rows * shape.cols, 0.02, 7).map((v, i) => (i % 97 === 5 ? v * 40 : v + (i % 512 < 256 ? 0.01 : 0)));

/** The code k with y = scale*k + min (as the format rounds it), or undefined when y is not on the block's grid. */
function gridCode(format: QuantFormat, y: number, scale: number, min: number): number | undefined {
  if (format.id === "llm-int8") {
    const k = Math.round((y * 127) / scale);
    return fr(fr(k * scale) * fr(1 / 127)) === y ? k : undefined;
  }
  if (format.family === "bnb") {
    const table = format.id.startsWith("nf4") ? NF4_CODE : FP4_CODE;
    const k = table.findIndex((c) => fr(c * scale) === y);
    return k >= 0 ? k : undefined;
  }
  if (scale === 0) return y === min ? 0 : undefined;
  const k = Math.round((y - min) / scale);
  return fr(scale * k + min) === y ? k : undefined;
}

describe("weightBlock", () => {
  const blocky = FORMATS.filter((f) => f.family !== "cast" && f.checkRowLength(shape.cols).ok);

  it.each(blocky.map((f) => [f.id, f] as const))("%s: every decoded weight is on its block's grid", (_id, format) => {
    const q = format.encode(x, shape);
    const y = format.decode(q, shape);
    const codes = new Set<number>();
    const scales = new Set<number>();
    for (let row = 0; row < shape.rows; row++) {
      for (let col = 0; col < shape.cols; col++) {
        const b = weightBlock(format, q, shape, row, col)!;
        expect(b.size).toBeGreaterThan(0);
        expect(b.index).toBeGreaterThanOrEqual(0);
        const k = gridCode(format, y[row * shape.cols + col]!, b.scale, b.min ?? 0);
        if (k === undefined) {
          throw new Error(`${format.id} (${row}, ${col}): ${y[row * shape.cols + col]} is not scale ${b.scale} * k + ${b.min ?? 0}`);
        }
        codes.add(k);
        scales.add(b.scale);
      }
    }
    // Real grids: many codes and several scales (a reader stuck on one block would not see them); one
    // scale for the per-tensor integers.
    expect(codes.size).toBeGreaterThanOrEqual(3); // symmetric int2 has three codes
    if (format.id.endsWith("-tensor")) expect(scales.size).toBe(1);
    else expect(scales.size).toBeGreaterThan(2);
  });

  it("says which sub-block of a K-quant super-block", () => {
    const q4K = FORMATS.find((f) => f.id === "q4_K")!;
    const q = q4K.encode(x, shape);
    expect(weightBlock(q4K, q, shape, 1, 300)).toMatchObject({ index: 3, size: 256, sub: 1, subSize: 32 });
    const q6K = FORMATS.find((f) => f.id === "q6_K")!;
    expect(weightBlock(q6K, q6K.encode(x, shape), shape, 0, 255)).toMatchObject({ index: 0, sub: 15, subSize: 16 });
  });

  it("has no block for casts, and rejects positions outside the tensor", () => {
    const f16 = FORMATS.find((f) => f.id === "f16")!;
    expect(weightBlock(f16, f16.encode(x, shape), shape, 0, 0)).toBeUndefined();
    const q8 = FORMATS.find((f) => f.id === "q8_0")!;
    expect(() => weightBlock(q8, q8.encode(x, shape), shape, 3, 0)).toThrow(/outside the 3x512 tensor/);
  });
});
