import { describe, expect, it } from "vitest";
import { goldenManifest, loadGoldenCase, type GoldenEntry } from "../../../test/ggml-golden.ts";
import { QuantInputError, isQuantInputError } from "../errors.ts";
import type { QuantFormat } from "../format.ts";
import { GGML_LEGACY_FORMATS, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_K } from "./legacy.ts";
import { gaussian } from "../../../test/random.ts";

const byId = new Map(GGML_LEGACY_FORMATS.map((f) => [f.id, f]));
const manifest = goldenManifest();
const entries = manifest.entries.filter((e) => byId.has(e.format));

/** Byte ranges ggml never writes: q8_K bsums of all-zero blocks (`quant.untouched_bytes`). */
function untouchedRanges(e: GoldenEntry, input: Float32Array): Array<[number, number]> {
  if (!e.quant.untouched_bytes) return [];
  const f = byId.get(e.format)!;
  const ranges: Array<[number, number]> = [];
  const blocks = input.length / f.blockWeights;
  for (let b = 0; b < blocks; b++) {
    let zero = true;
    for (let j = 0; j < f.blockWeights; j++) if (input[b * f.blockWeights + j] !== 0) zero = false;
    if (zero) ranges.push([b * f.blockBytes + 260, b * f.blockBytes + 292]);
  }
  return ranges;
}

function firstByteDiff(a: Uint8Array, b: Uint8Array, skip: Array<[number, number]>): number {
  if (a.length !== b.length) return -2;
  outer: for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    for (const [lo, hi] of skip) if (i >= lo && i < hi) continue outer;
    return i;
  }
  return -1;
}

describe("golden vectors (llama.cpp ggml-quants.c, bit for bit)", () => {
  it("covers every legacy format, both variants", () => {
    const seen = new Set(entries.map((e) => `${e.format}/${e.variant}`));
    for (const id of ["q4_0", "q4_1", "q5_0", "q5_1"]) {
      expect(seen.has(`${id}/ref`)).toBe(true);
      expect(seen.has(`${id}/imatrix`)).toBe(true);
    }
    expect(seen.has("q8_0/ref")).toBe(true);
    expect(seen.has("q8_K/ref")).toBe(true);
    expect(entries.length).toBe(90);
  });

  it("format records match the manifest's block sizes", () => {
    for (const f of GGML_LEGACY_FORMATS) {
      const m = manifest.formats[f.id]!;
      expect(f.blockWeights).toBe(m.block_weights);
      expect(f.blockBytes).toBe(m.block_bytes);
      expect((f.blockBytes * 8) / f.blockWeights).toBe(m.bits_per_weight);
    }
  });

  for (const e of entries) {
    const name = `${e.format} ${e.variant} ${e.case} (${e.rows}x${e.cols})`;
    it(`encode: ${name}`, () => {
      const g = loadGoldenCase(e);
      const f = byId.get(e.format)!;
      const shape = { rows: e.rows, cols: e.cols };
      const q = f.encode(g.input, shape, g.imatrix ? { imatrix: g.imatrix } : undefined);
      expect(q.length).toBe(e.quant.bytes);
      expect(f.encodedBytes(shape)).toBe(e.quant.bytes);
      const skip = untouchedRanges(e, g.input);
      const at = firstByteDiff(q, g.quant, skip);
      const where = at >= 0 ? `byte ${at} (block ${Math.floor(at / f.blockBytes)})` : "";
      expect(where).toBe("");
      if (skip.length) {
        // Our bsums of an all-zero block are its true sums: zero.
        for (const [lo, hi] of skip) for (let i = lo; i < hi; i++) expect(q[i]).toBe(0);
      }
    });
    it(`decode: ${name}`, () => {
      const g = loadGoldenCase(e);
      const f = byId.get(e.format)!;
      const y = f.decode(g.quant, { rows: e.rows, cols: e.cols });
      const bits = new Uint32Array(y.buffer, y.byteOffset, y.length);
      let bad = -1;
      for (let i = 0; i < bits.length; i++) {
        if (bits[i] !== g.dequantBits[i]) {
          bad = i;
          break;
        }
      }
      expect(bad).toBe(-1);
    });
  }
});

describe("round trip on random data", () => {
  const rows = 16;
  const cols = 1024;
  const x = gaussian(rows * cols, 0.02, 12345);
  // A few outliers, as real weights have.
  for (let i = 7; i < x.length; i += 997) x[i] = x[i]! * 20;

  /** Largest error each format allows per block, from the block's values (fp16 scale rounding included). */
  function blockBound(f: QuantFormat, blk: Float32Array): number {
    let min = Infinity;
    let max = -Infinity;
    let amax = 0;
    for (const v of blk) {
      min = Math.min(min, v);
      max = Math.max(max, v);
      amax = Math.max(amax, Math.abs(v));
    }
    const fp16 = 2 ** -10; // relative rounding of an fp16 scale, with margin
    switch (f.id) {
      case "q4_0": // clamping q=16 -> 15 costs up to one step
        return (amax / 8) * (1 + 8 * fp16);
      case "q5_0":
        return (amax / 16) * (1 + 16 * fp16);
      case "q4_1":
        return ((max - min) / 15) * (0.5 + 15 * fp16) + Math.abs(min) * fp16;
      case "q5_1":
        return ((max - min) / 31) * (0.5 + 31 * fp16) + Math.abs(min) * fp16;
      case "q8_0":
        return (amax / 127) * (0.5 + 127 * fp16);
      case "q8_K": // f32 scale
        return (amax / 127) * 0.5001;
      default:
        throw new Error(f.id);
    }
  }

  for (const f of GGML_LEGACY_FORMATS) {
    it(`${f.id}: every value within its block's error bound`, () => {
      const shape = { rows, cols };
      const y = f.decode(f.encode(x, shape), shape);
      expect(y.length).toBe(x.length);
      for (let b = 0; b < x.length / f.blockWeights; b++) {
        const blk = x.subarray(b * f.blockWeights, (b + 1) * f.blockWeights);
        const bound = blockBound(f, blk);
        for (let j = 0; j < f.blockWeights; j++) {
          const err = Math.abs(y[b * f.blockWeights + j]! - blk[j]!);
          if (err > bound) expect({ block: b, j, err, bound }).toBeUndefined();
        }
      }
    });
  }

  it("more bits, less error: q4_0 > q5_0 > q8_0 and q4_1 > q5_1", () => {
    const shape = { rows, cols };
    const rmse = (f: QuantFormat) => {
      const y = f.decode(f.encode(x, shape), shape);
      let s = 0;
      for (let i = 0; i < x.length; i++) s += (y[i]! - x[i]!) ** 2;
      return Math.sqrt(s / x.length);
    };
    expect(rmse(Q4_0)).toBeGreaterThan(rmse(Q5_0));
    expect(rmse(Q5_0)).toBeGreaterThan(rmse(Q8_0));
    expect(rmse(Q4_1)).toBeGreaterThan(rmse(Q5_1));
  });

  it("the importance-weighted encoders lower the imatrix-weighted error", () => {
    const shape = { rows, cols };
    const imatrix = new Float32Array(cols);
    const g = gaussian(cols, 0.75, 777);
    for (let c = 0; c < cols; c++) imatrix[c] = Math.exp(g[c]!) * (c % 97 === 0 ? 50 : 1);
    const weighted = (y: Float32Array) => {
      let s = 0;
      for (let i = 0; i < x.length; i++) s += imatrix[i % cols]! * (y[i]! - x[i]!) ** 2;
      return s;
    };
    for (const f of [Q4_0, Q4_1, Q5_0, Q5_1]) {
      const ref = f.encode(x, shape);
      const imp = f.encode(x, shape, { imatrix });
      expect(imp.length).toBe(ref.length);
      expect(weighted(f.decode(imp, shape))).toBeLessThan(weighted(f.decode(ref, shape)));
    }
    // q8_0 and q8_K have no weighted encoder: the imatrix changes nothing.
    for (const f of [Q8_0, Q8_K]) expect(f.encode(x, shape, { imatrix })).toEqual(f.encode(x, shape));
  });
});

describe("edge cases", () => {
  it("all-zero rows decode to exact zeros, with the sign ggml gives", () => {
    const shape = { rows: 2, cols: 256 };
    const x = new Float32Array(512);
    x.fill(-0, 256); // row 1 is -0.0
    // q4_0/q5_0 store d = -0.0 for zero blocks ((0-8) * -0 = -0); the others give +0.
    const negative: Record<string, boolean> = { q4_0: true, q5_0: true, q4_1: false, q5_1: false, q8_0: false, q8_K: false };
    for (const f of GGML_LEGACY_FORMATS) {
      const y = f.decode(f.encode(x, shape), shape);
      for (let i = 0; i < y.length; i++) {
        expect(y[i] === 0).toBe(true);
        expect(Object.is(y[i], -0)).toBe(negative[f.id]);
      }
    }
  });

  it("an output buffer at an odd byte offset gets the same bytes (word-storing encoders go through an aligned copy)", () => {
    const shape = { rows: 3, cols: 512 };
    const x = gaussian(shape.rows * shape.cols, 0.02, 777);
    for (const f of GGML_LEGACY_FORMATS) {
      const expected = f.encode(x, shape);
      const backing = new Uint8Array(expected.length + 2).fill(0xa5);
      f.encode(x, shape, { out: backing.subarray(1, 1 + expected.length) });
      expect(backing.subarray(1, 1 + expected.length)).toEqual(expected);
      expect([backing[0], backing[expected.length + 1]]).toEqual([0xa5, 0xa5]);
    }
  });

  it("blocks so small that 1/scale overflows give zero codes, never NaN (ggml's C is undefined there; x86 gives these)", () => {
    const shape = { rows: 1, cols: 256 };
    const x = new Float32Array(256);
    for (let i = 0; i < 256; i++) x[i] = ((i % 7) - 3) * 1e-40; // the block max is -3e-40, a float32 subnormal
    for (const f of GGML_LEGACY_FORMATS) {
      const q = f.encode(x, shape);
      const y = f.decode(q, shape);
      for (const v of y) expect(v === 0).toBe(true);
    }
    // q4_0: d rounds to fp16 ±0 and every code is 0 (cvttss2si of ±Inf/NaN is INT_MIN, whose low byte is 0).
    const q4 = Q4_0.encode(x, shape);
    for (let b = 0; b < 8; b++) {
      expect(q4[b * 18]).toBe(0);
      expect([0, 0x80]).toContain(q4[b * 18 + 1]);
      expect(Array.from(q4.subarray(b * 18 + 2, b * 18 + 18))).toEqual(new Array(16).fill(0));
    }
  });

  it("q4_1 and q5_1 round (x-min)/d + 0.5 in float32 as ggml does: 0.49999997 becomes level 1, 0.49999994 level 0", () => {
    const shape = { rows: 1, cols: 32 };
    for (const [f, top, qsAt] of [
      [Q4_1, 15, 4],
      [Q5_1, 31, 8],
    ] as const) {
      // min 0 and max `top` make d = 1 and id = 1, so the level is (int)(x + 0.5f) with the sum in float32.
      const x = new Float32Array(32);
      x[1] = top;
      x[2] = Math.fround(0.5 - 2 ** -25); // + 0.5f ties to 1.0f (even)
      x[3] = Math.fround(0.5 - 2 ** -24); // + 0.5f = 0.99999994f
      x[4] = Math.fround(1.5 - 2 ** -23); // + 0.5f = 1.9999999f
      x[5] = 0.5;
      const q = f.encode(x, shape);
      const level = (i: number) => (q[qsAt + i]! & 0x0f) | (f === Q5_1 ? ((q[4]! | (q[5]! << 8)) >> i) & 1 ? 16 : 0 : 0);
      expect([level(1), level(2), level(3), level(4), level(5)]).toEqual([top, 1, 0, 1, 1]);
    }
  });

  it("NaN and Inf are reported with row, column, count and tensor name", () => {
    const shape = { rows: 3, cols: 64 };
    const x = gaussian(192, 1, 9);
    x[64 + 5] = NaN;
    x[128 + 63] = Infinity;
    for (const f of GGML_LEGACY_FORMATS.filter((f) => f.blockWeights === 32)) {
      let err: unknown;
      try {
        f.encode(x, shape, { tensorName: "blk.0.attn_q.weight" });
      } catch (e) {
        err = e;
      }
      expect(isQuantInputError(err)).toBe(true);
      const qe = err as QuantInputError;
      expect(qe).toBeInstanceOf(QuantInputError);
      expect(qe.problem).toBe("non-finite");
      expect(qe.row).toBe(1);
      expect(qe.col).toBe(5);
      expect(qe.count).toBe(2);
      expect(qe.tensor).toBe("blk.0.attn_q.weight");
      expect(qe.message).toMatch(/blk\.0\.attn_q\.weight/);
      expect(qe.message).toMatch(/2 NaN or infinite values, the first at row 1, column 5/);
    }
    // Each kind alone, in a block of its own, is found by every format (the encoders detect it on the way).
    for (const bad of [NaN, -NaN, Infinity, -Infinity]) {
      for (const f of GGML_LEGACY_FORMATS) {
        const z = gaussian(2 * 256, 1, 4);
        z[256 + 77] = bad;
        expect(() => f.encode(z, { rows: 2, cols: 256 }), `${f.id} ${bad}`).toThrow(/at row 1, column 77/);
      }
    }
    const y = new Float32Array(256);
    y[3] = -Infinity;
    expect(() => Q8_K.encode(y, { rows: 1, cols: 256 })).toThrow(/1 infinite value, the first at row 0, column 3/);
  });

  it("checkRowLength: multiples of the block pass; others name the problem and the fallback", () => {
    for (const f of [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0]) {
      expect(f.checkRowLength(4096)).toEqual({ ok: true });
      expect(f.checkRowLength(32)).toEqual({ ok: true });
      const r = f.checkRowLength(100);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.reason).toMatch(new RegExp(`^rows of 100 weights are not a multiple of 32, the ${f.id} block size`));
        expect(r.fallback).toBe("f16");
      }
    }
    expect(Q8_K.checkRowLength(512)).toEqual({ ok: true });
    const r = Q8_K.checkRowLength(4000);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toMatch(/^rows of 4000 weights are not a multiple of 256, the q8_K block size/);
      expect(r.fallback).toBeUndefined();
    }
  });

  it("encode refuses a row length the block does not divide, naming the tensor and the fallback", () => {
    const x = new Float32Array(2 * 48);
    let err: unknown;
    try {
      Q4_0.encode(x, { rows: 2, cols: 48 }, { tensorName: "v.patch_embd.weight" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QuantInputError);
    const qe = err as QuantInputError;
    expect(qe.problem).toBe("row-length");
    expect(qe.fallback).toBe("f16");
    expect(qe.message).toMatch(/^tensor "v\.patch_embd\.weight": rows of 48 weights are not a multiple of 32/);
  });

  it("rejects mismatched buffers and importance vectors", () => {
    expect(() => Q8_0.encode(new Float32Array(63), { rows: 2, cols: 32 })).toThrow(QuantInputError);
    expect(() => Q8_0.decode(new Uint8Array(33), { rows: 1, cols: 32 })).toThrow(/33 bytes of q8_0/);
    const x = gaussian(64, 1, 3);
    expect(() => Q4_0.encode(x, { rows: 1, cols: 64 }, { imatrix: new Float32Array(32).fill(1) })).toThrow(
      /importance matrix has 32 entries for rows of 64/,
    );
    const bad = new Float32Array(64).fill(1);
    bad[10] = -1;
    expect(() => Q4_1.encode(x, { rows: 1, cols: 64 }, { imatrix: bad })).toThrow(/column 10/);
  });

  it("encodedBytes and ggml type ids", () => {
    const shape = { rows: 4096, cols: 4096 };
    expect(GGML_LEGACY_FORMATS.map((f) => [f.id, f.ggmlType, f.encodedBytes(shape) / (4096 * 4096 / f.blockWeights)])).toEqual([
      ["q4_0", 2, 18],
      ["q4_1", 3, 20],
      ["q5_0", 6, 22],
      ["q5_1", 7, 24],
      ["q8_0", 8, 34],
      ["q8_K", 15, 292],
    ]);
  });
});
