import { describe, expect, it } from "vitest";
import { encodeFromF32 } from "../formats/dtypes.ts";
import { openModel } from "../formats/model.ts";
import { writeSafetensors } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import { weightBlock } from "../quant/block-params.ts";
import { getFormat } from "../quant/registry.ts";
import { gaussian } from "../../test/random.ts";
import { inspectWeight } from "./inspect-weight.ts";

const shape = { rows: 6, cols: 512 };
const x = gaussian(shape.rows * shape.cols, 0.02, 21).map((v, i) => (i % 61 === 0 ? v * 30 : v));

async function tensor(values: Float32Array) {
  const bytes = writeSafetensors([{ name: "w", dtype: "F32", shape: [shape.rows, shape.cols], data: encodeFromF32("F32", Array.from(values)) }]);
  return (await openModel([new BlobSource(new Blob([bytes]), "w.safetensors")])).tensors[0]!;
}

describe("inspectWeight", () => {
  it("gives the value, decoded value, error and block of the whole-tensor CPU reference, for every kind of format", async () => {
    const t = await tensor(x);
    const formats = ["q4_K", "q4_1", "q6_K", "int4-asym-g32", "int8-tensor", "nf4-dq", "llm-int8", "f16"].map(getFormat);
    const full = formats.map((f) => {
      const q = f.encode(x, shape);
      return { q, y: f.decode(q, shape) };
    });
    for (const [row, col] of [[0, 0], [2, 300], [5, 511], [3, 61 * 26 - 3 * 512]] as const) {
      const got = await inspectWeight(t, formats, row, col);
      expect(got.value).toBe(x[row * shape.cols + col]);
      got.formats.forEach((g, i) => {
        if (!g.ok) throw new Error(g.error.message);
        const f = formats[i]!;
        const y = full[i]!.y[row * shape.cols + col]!;
        expect(g.value, `${f.id} at (${row}, ${col})`).toBe(y);
        expect(g.error).toBe(Math.fround(y - x[row * shape.cols + col]!));
        expect(g.block).toEqual(weightBlock(f, full[i]!.q, shape, row, col));
      });
    }
  });

  it("says why a format cannot take the weight's tensor, and rejects positions outside it", async () => {
    const withNaN = x.slice();
    withNaN[4 * 512 + 9] = NaN;
    const t = await tensor(withNaN);
    const got = await inspectWeight(t, [getFormat("q8_0"), getFormat("nf4")], 4, 100);
    expect(got.formats.map((f) => (f.ok ? "ok" : f.error.problem))).toEqual(["non-finite", "non-finite"]);
    const q8 = got.formats[0]!;
    if (!q8.ok) expect(q8.error).toMatchObject({ row: 4, col: 9 });
    await expect(inspectWeight(t, [getFormat("q8_0")], 6, 0)).rejects.toThrow(/outside tensor "w" \(6x512\)/);
  });
});
