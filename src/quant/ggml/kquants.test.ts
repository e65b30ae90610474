import { describe, expect, it } from "vitest";
import { goldenManifest, loadGoldenCase, type GoldenEntry } from "../../../test/ggml-golden.ts";
import { isQuantInputError, QuantInputError } from "../errors.ts";
import { bitsPerWeight } from "../format.ts";
import { GGML_K_FORMATS, QK_K } from "./kquants.ts";
import { gaussian } from "../../../test/random.ts";

const byId = new Map(GGML_K_FORMATS.map((f) => [f.id, f]));
const manifest = goldenManifest();
const entries = manifest.entries.filter((e) => byId.has(e.format));

/** First index where two byte arrays differ, or -1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function describeEntry(e: GoldenEntry): string {
  return `${e.format}/${e.variant}/${e.case} (${e.rows}x${e.cols})`;
}

describe("K-quant golden vectors (llama.cpp, bit for bit)", () => {
  it("covers every K-quant format, ref and imatrix", () => {
    for (const f of GGML_K_FORMATS) {
      const mine = entries.filter((e) => e.format === f.id);
      expect(mine.filter((e) => e.variant === "ref").length, f.id).toBeGreaterThan(0);
      expect(mine.filter((e) => e.variant === "imatrix").length, f.id).toBeGreaterThan(0);
      expect(f.blockBytes, f.id).toBe(manifest.formats[f.id]!.block_bytes);
      expect(f.blockWeights, f.id).toBe(manifest.formats[f.id]!.block_weights);
      expect(bitsPerWeight(f, { rows: 1, cols: 256 }), f.id).toBe(manifest.formats[f.id]!.bits_per_weight);
    }
    expect(entries.length).toBe(90);
  });

  for (const e of entries) {
    const format = byId.get(e.format)!;
    it(`encode: ${describeEntry(e)} (${e.fma_sensitive_blocks.length} FMA-sensitive blocks)`, () => {
      const g = loadGoldenCase(e);
      expect(e.quant.untouched_bytes, "only q8_K has untouched bytes").toBeUndefined();
      const shape = { rows: e.rows, cols: e.cols };
      const q = format.encode(g.input, shape, g.imatrix ? { imatrix: g.imatrix } : undefined);
      expect(q.length).toBe(g.quant.length);
      const at = firstDiff(q, g.quant);
      const block = Math.floor(at / format.blockBytes);
      expect(at, `first differing byte ${at} (block ${block}, byte ${at % format.blockBytes})`).toBe(-1);
    });
    it(`decode: ${describeEntry(e)}`, () => {
      const g = loadGoldenCase(e);
      const y = format.decode(g.quant, { rows: e.rows, cols: e.cols });
      const bits = new Uint32Array(y.buffer, y.byteOffset, y.length);
      const at = firstDiff(bits, g.dequantBits);
      expect(at, `first differing value ${at}`).toBe(-1);
    });
  }
});

describe("K-quant behaviour", () => {
  for (const format of GGML_K_FORMATS) {
    describe(format.id, () => {
      it("round-trips random rows within the format's error bound (ref and imatrix)", () => {
        const rows = 4;
        const cols = 1024;
        const x = gaussian(rows * cols, 0.02, 11);
        const imatrix = new Float32Array(cols).map((_, i) => Math.exp(Math.sin(i * 0.37)));
        const relRmse: Record<string, number> = { q2_K: 0.45, q3_K: 0.22, q4_K: 0.11, q5_K: 0.055, q6_K: 0.028 };
        for (const opts of [undefined, { imatrix }]) {
          const q = format.encode(x, { rows, cols }, opts);
          expect(q.length).toBe(format.encodedBytes({ rows, cols }));
          const y = format.decode(q, { rows, cols });
          let se = 0;
          for (let i = 0; i < x.length; i++) se += (y[i]! - x[i]!) ** 2;
          const rmse = Math.sqrt(se / x.length);
          expect(rmse / 0.02).toBeLessThan(relRmse[format.id]!);
          expect(format.encode(x, { rows, cols }, opts)).toEqual(q); // deterministic
        }
      });

      it("the imatrix encoder lowers the importance-weighted error", () => {
        const rows = 8;
        const cols = 1024;
        const x = gaussian(rows * cols, 0.02, 21);
        const z = gaussian(cols, 1, 22);
        const imatrix = z.map((v) => Math.exp(2 * v)); // weights spread over ~4 orders of magnitude
        const weightedError = (q: Uint8Array) => {
          const y = format.decode(q, { rows, cols });
          let e = 0;
          for (let i = 0; i < x.length; i++) e += imatrix[i % cols]! * (y[i]! - x[i]!) ** 2;
          return e;
        };
        const ratio = weightedError(format.encode(x, { rows, cols }, { imatrix })) / weightedError(format.encode(x, { rows, cols }));
        expect(ratio).toBeLessThan(0.7);
      });

      it("decodes blocks at an odd byte offset as at an aligned one (word-reading decoders go through a copy)", () => {
        const shape = { rows: 2, cols: 512 };
        const q = format.encode(gaussian(shape.rows * shape.cols, 0.02, 31), shape);
        const shifted = new Uint8Array(q.length + 1);
        shifted.set(q, 1);
        expect(format.decode(shifted.subarray(1), shape)).toEqual(format.decode(q, shape));
      });

      it("gives exact zeros for all-zero rows, +0 and -0", () => {
        const cols = 512;
        const x = new Float32Array(2 * cols);
        x.fill(-0, cols);
        for (const opts of [undefined, { imatrix: new Float32Array(cols).fill(1) }]) {
          const y = format.decode(format.encode(x, { rows: 2, cols }, opts), { rows: 2, cols });
          for (let i = 0; i < y.length; i++) expect(Math.abs(y[i]!)).toBe(0);
          // ggml's sign: q6_K gives (d*sc)*(0-32) = -0, the others +0.
          const sign = format.id === "q6_K" ? 0x80000000 : 0;
          expect(new Uint32Array(y.buffer)[0]).toBe(sign);
        }
      });

      it("rejects NaN and Inf with the row, column and count, naming the tensor", () => {
        const cols = 256;
        const x = gaussian(3 * cols, 1, 3);
        x[cols + 17] = NaN;
        x[2 * cols + 5] = Infinity;
        let err: unknown;
        try {
          format.encode(x, { rows: 3, cols }, { tensorName: "blk.0.attn_q.weight" });
        } catch (e) {
          err = e;
        }
        expect(isQuantInputError(err)).toBe(true);
        const qe = err as QuantInputError;
        expect(qe.problem).toBe("non-finite");
        expect([qe.row, qe.col, qe.count]).toEqual([1, 17, 2]);
        expect(qe.message).toContain("blk.0.attn_q.weight");
        expect(qe.message).toContain("row 1, column 17");
      });

      it("checkRowLength: multiples of 256 only, with llama.cpp's fallback", () => {
        expect(format.checkRowLength(256)).toEqual({ ok: true });
        expect(format.checkRowLength(4096)).toEqual({ ok: true });
        const expected: Record<string, string> = { q2_K: "q4_0", q3_K: "q4_0", q4_K: "q5_0", q5_K: "q5_1", q6_K: "q8_0" };
        const r = format.checkRowLength(2880); // 90 x 32, not a multiple of 256
        expect(r.ok).toBe(false);
        if (!r.ok) {
          expect(r.fallback).toBe(expected[format.id]);
          expect(r.reason).toContain("2880");
          expect(r.reason).toContain("256");
          expect(r.reason).toContain(expected[format.id]!);
        }
        const odd = format.checkRowLength(172);
        expect(odd.ok).toBe(false);
        if (!odd.ok) expect(odd.fallback).toBe("f16");
        expect(() => format.encode(new Float32Array(2 * 2880), { rows: 2, cols: 2880 }, { tensorName: "output.weight" })).toThrow(
          /output\.weight.*2880.*256.*falls? back|output\.weight.*2880.*256.*quantizes such a tensor as/,
        );
      });

      it("accepts an imatrix with zero weights (columns no calibration token reached)", () => {
        const cols = 512;
        const x = gaussian(2 * cols, 0.02, 9);
        const imatrix = new Float32Array(cols).map((_, i) => (i % 3 === 0 ? 0 : 1 + (i % 7)));
        imatrix.fill(0, 256, 512); // a whole super-block of zero weights
        const q = format.encode(x, { rows: 2, cols }, { imatrix });
        const y = format.decode(q, { rows: 2, cols });
        for (let i = 0; i < y.length; i++) expect(Number.isFinite(y[i]!)).toBe(true);
        expect(format.encode(x, { rows: 2, cols }, { imatrix })).toEqual(q);
      });

      it("rejects an imatrix of the wrong length and mis-sized decode input", () => {
        const x = gaussian(512, 1, 5);
        expect(() => format.encode(x, { rows: 1, cols: 512 }, { imatrix: new Float32Array(256).fill(1) })).toThrow(QuantInputError);
        expect(() => format.decode(new Uint8Array(format.blockBytes), { rows: 1, cols: 512 })).toThrow(QuantInputError);
      });
    });
  }

  it("has the GGML type ids of ggml.h", () => {
    expect(GGML_K_FORMATS.map((f) => [f.id, f.ggmlType, f.blockWeights])).toEqual([
      ["q2_K", 10, QK_K],
      ["q3_K", 11, QK_K],
      ["q4_K", 12, QK_K],
      ["q5_K", 13, QK_K],
      ["q6_K", 14, QK_K],
    ]);
  });
});

