import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bitsPerWeight, type QuantFormat } from "./format.ts";
import { bitsToF32, f32Bits } from "../formats/float-bits.ts";
import {
  absmaxMean,
  BNB_FORMATS,
  decodeAbsmax,
  DYNAMIC_MAP,
  FP4_CODE,
  NF4_CODE,
  quantizeDynamic,
  quantizeFp4,
  quantizeNf4,
} from "./bnb.ts";
import { expectThrowsQuant } from "../../test/quant-errors.ts";
import { gaussian } from "../../test/random.ts";

const fr = Math.fround;
const byId = (id: string): QuantFormat => BNB_FORMATS.find((f) => f.id === id)!;

/** The next float32 above / below a float32 x. */
function nextUp(x: number): number {
  if (x === 0) return bitsToF32(1);
  const b = f32Bits(x);
  return bitsToF32(x > 0 ? b + 1 : b - 1);
}
function nextDown(x: number): number {
  return -nextUp(-x);
}

function readF32(q: Uint8Array, off: number): number {
  return bitsToF32((q[off]! | (q[off + 1]! << 8) | (q[off + 2]! << 16) | (q[off + 3]! << 24)) >>> 0);
}

/** Indices of the codes nearest to x (one, or two on an exact tie). */
function nearestCodes(table: ArrayLike<number>, x: number): number[] {
  let best = Infinity;
  let out: number[] = [];
  for (let c = 0; c < table.length; c++) {
    const d = Math.abs(x - table[c]!);
    if (d < best) {
      best = d;
      out = [c];
    } else if (d === best) out.push(c);
  }
  return out;
}

describe("code tables", () => {
  it("NF4 is bitsandbytes' published table", () => {
    // bitsandbytes csrc dDequantizeNF4 / functional.get_4bit_type("nf4") (QLoRA, Dettmers et al. 2023)
    const published = [
      -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
      -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
      0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ];
    expect(Array.from(NF4_CODE)).toEqual(published.map(fr));
    // these are float32 values already: the decimal strings are their shortest double round-trips
    for (const v of published) expect(fr(v)).toBe(v);
  });

  it("FP4 is bitsandbytes' e2m1 table [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 with a sign bit", () => {
    const e2m1 = [0, 0.0625, 8, 12, 4, 6, 2, 3];
    for (let c = 0; c < 16; c++) {
      const v = (c & 8 ? -1 : 1) * (e2m1[c & 7]! / 12);
      expect(Math.abs(FP4_CODE[c]! - v)).toBeLessThan(1e-7);
      expect(Object.is(FP4_CODE[c]! < 0 || Object.is(FP4_CODE[c], -0), (c & 8) !== 0)).toBe(true);
    }
  });

  it("the dynamic map is bitsandbytes' create_dynamic_map(): 256 increasing values, 0 at 127, 1 at 255", () => {
    expect(DYNAMIC_MAP).toHaveLength(256);
    for (let i = 1; i < 256; i++) expect(DYNAMIC_MAP[i]!).toBeGreaterThan(DYNAMIC_MAP[i - 1]!);
    expect(DYNAMIC_MAP[127]).toBe(0);
    expect(DYNAMIC_MAP[255]).toBe(1);
    for (let i = 0; i < 127; i++) expect(DYNAMIC_MAP[i]).toBe(-DYNAMIC_MAP[254 - i]!);
    // Values of bitsandbytes' map (torch's fused linspace), including entries where a separately rounded
    // product would be one ulp off.
    expect(DYNAMIC_MAP[0]).toBe(fr(-0.992968738079071));
    expect(DYNAMIC_MAP[20]).toBe(fr(-0.7117187976837158));
    expect(DYNAMIC_MAP[116]).toBe(fr(-0.000493750034365803));
    expect(DYNAMIC_MAP[128]).toBe(fr(5.500000384017767e-7));
    expect(DYNAMIC_MAP[236]).toBe(fr(0.7398437261581421));
    expect(DYNAMIC_MAP[254]).toBe(fr(0.992968738079071));
  });
});

/**
 * The decision trees against a brute-force nearest search. Ties: bitsandbytes' pivots are float32 roundings
 * of the midpoints with strict `x > pivot`, so within 1e-6 of a midpoint either neighbour is accepted (and
 * the pivot value itself must take the lower code); everywhere else the tree must give the nearest code.
 */
function checkTree(table: Float32Array, quantize: (x: number) => number, x: number, midpoints: number[]): void {
  const c = quantize(x);
  const near = midpoints.some((m) => Math.abs(x - m) < 1e-6);
  if (near) {
    const d = Math.abs(x - table[c]!);
    const best = Math.abs(x - table[nearestCodes(table, x)[0]!]!);
    if (!(d - best < 2e-6)) throw new Error(`x=${x}: code ${c} is not a neighbour of the nearest`);
  } else if (!nearestCodes(table, x).includes(c)) {
    throw new Error(`x=${x}: code ${c} (${table[c]}) is not the nearest (${nearestCodes(table, x)})`);
  }
}

function sortedMidpoints(table: Float32Array): number[] {
  const v = Array.from(new Set(Array.from(table).map((t) => (Object.is(t, -0) ? 0 : t)))).sort((a, b) => a - b);
  return v.slice(1).map((b, i) => (v[i]! + b) / 2);
}

describe("nearest-code choice", () => {
  const nf4Mid = sortedMidpoints(NF4_CODE);
  const fp4Mid = sortedMidpoints(FP4_CODE);

  it("NF4: dQuantizeNF4's tree picks the nearest code (random values and every midpoint's neighbours)", () => {
    fc.assert(
      fc.property(fc.float({ min: -1, max: 1, noNaN: true }), (x) => checkTree(NF4_CODE, quantizeNf4, x, nf4Mid)),
      { numRuns: 20000 },
    );
    const sorted = Array.from(NF4_CODE).sort((a, b) => a - b);
    for (let k = 0; k < nf4Mid.length; k++) {
      const m = fr(nf4Mid[k]!);
      const lower = NF4_CODE.indexOf(sorted[k]!);
      const upper = NF4_CODE.indexOf(sorted[k + 1]!);
      // ~1e-6 away the tie band is left: strictly nearest
      expect(quantizeNf4(fr(nf4Mid[k]! - 2e-6))).toBe(lower);
      expect(quantizeNf4(fr(nf4Mid[k]! + 2e-6))).toBe(upper);
      for (const x of [nextDown(m), m, nextUp(m)]) expect([lower, upper]).toContain(quantizeNf4(x));
    }
    // exactly on a pivot: the lower code (strict >)
    expect(quantizeNf4(fr(0.03979014977812767))).toBe(0b0111);
    expect(quantizeNf4(nextUp(fr(0.03979014977812767)))).toBe(0b1000);
    expect(quantizeNf4(fr(-0.8480964004993439))).toBe(0b0000);
    expect(quantizeNf4(0)).toBe(0b0111);
    expect(quantizeNf4(1)).toBe(0b1111);
    expect(quantizeNf4(-1)).toBe(0b0000);
  });

  it("FP4: dQuantizeFP4's tree picks the nearest code; ties go to the smaller magnitude", () => {
    fc.assert(
      fc.property(fc.float({ min: -1, max: 1, noNaN: true }), (x) => checkTree(FP4_CODE, quantizeFp4, x, fp4Mid)),
      { numRuns: 20000 },
    );
    // pivots that are not exact midpoints: 0.583333 (midpoint 0.58333...) and 0.00260417 (0.00260416...)
    // 0.5833332 is nearer 0.5, but above bitsandbytes' pivot 0.583333: the tree gives 2/3 (documented band)
    expect(quantizeFp4(fr(0.5833332))).toBe(0b0010);
    expect(quantizeFp4(fr(0.58333))).toBe(0b0101);
    expect(quantizeFp4(fr(0.0859375))).toBe(0b0001); // exact midpoint of 0.0052 and 0.1667: smaller magnitude
    expect(quantizeFp4(nextUp(fr(0.0859375)))).toBe(0b0110);
    expect(quantizeFp4(-fr(0.0859375))).toBe(0b1001);
    expect(quantizeFp4(0)).toBe(0);
    expect(quantizeFp4(-0)).toBe(0); // -0 < 0 is false: no sign bit
    expect(quantizeFp4(-1e-30)).toBe(0b1000);
    expect(quantizeFp4(1)).toBe(0b0011);
    expect(quantizeFp4(-1)).toBe(0b1011);
  });

  it("dynamic map: dQuantize's binary search picks the nearest entry", () => {
    const mids = Array.from(DYNAMIC_MAP.subarray(1)).map((b, i) => (DYNAMIC_MAP[i]! + b) / 2);
    const check = (x: number) => {
      const c = quantizeDynamic(DYNAMIC_MAP, x);
      const best = nearestCodes(DYNAMIC_MAP, x);
      if (best.includes(c)) return;
      const near = mids.some((m) => Math.abs(x - m) <= Math.abs(m) * 2 ** -22);
      if (!near) throw new Error(`x=${x}: dQuantize gives ${c}, nearest ${best}`);
    };
    fc.assert(fc.property(fc.float({ min: -1, max: 1, noNaN: true }), check), { numRuns: 20000 });
    for (const m of mids) for (const x of [nextDown(fr(m)), fr(m), nextUp(fr(m))]) check(x);
    for (let i = 0; i < 256; i++) expect(quantizeDynamic(DYNAMIC_MAP, DYNAMIC_MAP[i]!)).toBe(i);
    expect(quantizeDynamic(DYNAMIC_MAP, -1)).toBe(0);
    expect(quantizeDynamic(DYNAMIC_MAP, 0)).toBe(127);
  });
});

describe("NF4 / FP4 formats", () => {
  it("exact sizes and bits per weight", () => {
    const nf4 = byId("nf4");
    const dq = byId("nf4-dq");
    expect(bitsPerWeight(nf4, { rows: 64, cols: 64 })).toBe(4.5);
    expect(bitsPerWeight(byId("fp4"), { rows: 4096, cols: 4096 })).toBe(4.5);
    // 3x50: 150 weights = blocks of 64, 64, 22 over the flattened tensor; 75 code bytes
    expect(nf4.encodedBytes({ rows: 3, cols: 50 })).toBe(3 * 4 + 75);
    expect(nf4.encodedBytes({ rows: 1, cols: 7 })).toBe(4 + 4);
    // double quantization: offset f32 + absmax2 f32 per 256 blocks + u8 per block + codes
    expect(dq.encodedBytes({ rows: 256, cols: 128 })).toBe(4 + 4 * 2 + 512 + 16384);
    expect(bitsPerWeight(dq, { rows: 256, cols: 128 })).toBe(4 + 8 / 64 + 32 / (64 * 256) + 32 / 32768);
    expect(bitsPerWeight(byId("fp4-dq"), { rows: 4096, cols: 4096 })).toBe(4 + 8 / 64 + 32 / (64 * 256) + 32 / 4096 ** 2);
    for (const f of BNB_FORMATS) expect(f.family).toBe("bnb");
  });

  it("packs the first element in the high nibble and stores absmax as f32 first", () => {
    const x = new Float32Array(64);
    x[0] = 2;
    x[1] = -2;
    x[2] = 1;
    const q = byId("nf4").encode(x, { rows: 1, cols: 64 });
    expect(readF32(q, 0)).toBe(2);
    expect(q[4]).toBe(0xf0); // +1.0 -> 0b1111 high, -1.0 -> 0b0000 low
    // 0.5 -> nearest NF4 0.4407 (0b1100); zeros -> 0b0111
    expect(q[5]).toBe(0xc7);
    expect(q[6]).toBe(0x77);
    const qf = byId("fp4").encode(x, { rows: 1, cols: 64 });
    expect(qf[4]).toBe(0x3b); // +1 -> 0b0011, -1 -> 0b1011
    expect(qf[5]).toBe(0x50); // 0.5 -> 0b0101, 0 -> 0b0000
    // an odd element count leaves the last low nibble zero
    const q7 = byId("nf4").encode(new Float32Array([1, 1, 1, 1, 1, 1, 1]), { rows: 1, cols: 7 });
    expect(q7[4 + 3]).toBe(0xf0);
  });

  const cases = fc.record({
    id: fc.constantFrom("nf4", "fp4", "nf4-dq", "fp4-dq"),
    rows: fc.integer({ min: 1, max: 40 }),
    cols: fc.integer({ min: 1, max: 130 }),
    seed: fc.integer(),
    zeroRow: fc.integer({ min: -1, max: 5 }),
    std: fc.constantFrom(1e-6, 0.02, 1, 300),
  });

  it("each weight decodes to the nearest code times its block's absmax; zero rows exact (property)", () => {
    fc.assert(
      fc.property(cases, ({ id, rows, cols, seed, zeroRow, std }) => {
        const f = byId(id);
        const shape = { rows, cols };
        const n = rows * cols;
        const x = gaussian(n, std, seed);
        if (zeroRow >= 0 && zeroRow < rows) x.fill(0, zeroRow * cols, (zeroRow + 1) * cols);
        const q = f.encode(x, shape);
        expect(q.length).toBe(f.encodedBytes(shape));
        const y = f.decode(q, shape);
        const table = id.startsWith("nf4") ? NF4_CODE : FP4_CODE;
        const dq = id.endsWith("-dq");
        const nb = Math.ceil(n / 64);
        const nb2 = Math.ceil(nb / 256);
        const codesAt = dq ? 4 + 4 * nb2 + nb : 4 * nb;
        for (let k = 0; k < nb; k++) {
          let a = 0;
          for (let e = k * 64; e < Math.min(n, k * 64 + 64); e++) a = Math.max(a, Math.abs(x[e]!));
          let used = a;
          if (dq) {
            const absmax2 = readF32(q, 4 + 4 * Math.floor(k / 256));
            used = decodeAbsmax(q[4 + 4 * nb2 + k]!, absmax2, readF32(q, 0));
            if (!(Math.abs(used - a) <= absmax2 * 0.00704 + 1e-6 * a)) throw new Error(`block ${k}: absmax ${a} -> ${used}`);
          } else if (readF32(q, 4 * k) !== a) throw new Error(`block ${k}: stored absmax`);
          for (let e = k * 64; e < Math.min(n, k * 64 + 64); e++) {
            const c = (q[codesAt + (e >> 1)]! >> ((e & 1) === 0 ? 4 : 0)) & 15;
            if (y[e] !== fr(table[c]! * used)) throw new Error(`element ${e}: decode`);
            // the code is the nearest to x / absmax (within the tie band)
            const v = a === 0 ? 0 : x[e]! / a;
            const best = Math.min(...Array.from(table, (t) => Math.abs(v - t)));
            if (!(Math.abs(v - table[c]!) <= best + 2e-6)) throw new Error(`element ${e}: code ${c} not nearest for ${v}`);
          }
        }
        if (zeroRow >= 0 && zeroRow < rows) {
          for (let c = 0; c < cols; c++) if (y[zeroRow * cols + c] !== 0) throw new Error(`zero row decodes to ${y[zeroRow * cols + c]}`);
        }
        // the 4-bit codes do not depend on double quantization
        if (dq) {
          const plain = byId(id.replace("-dq", "")).encode(x, shape);
          expect(q.subarray(codesAt)).toEqual(plain.subarray(4 * nb));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("double quantization: offset is the fixed-order mean, absmax2 the block's max |absmax - offset|", () => {
    expect(absmaxMean(new Float32Array([1, 2, 3]))).toBe(2);
    expect(absmaxMean(new Float32Array(0))).toBe(0);
    // 300 blocks of 64: two double-quantization blocks (256 + 44)
    const shape = { rows: 300, cols: 64 };
    const x = gaussian(300 * 64, 0.05, 7);
    const q = byId("nf4-dq").encode(x, shape);
    const absmax = new Float32Array(300);
    for (let k = 0; k < 300; k++) for (let j = 0; j < 64; j++) absmax[k] = Math.max(absmax[k]!, Math.abs(x[k * 64 + j]!));
    let part1 = 0;
    let part2 = 0;
    for (let k = 0; k < 256; k++) part1 = fr(part1 + absmax[k]!);
    for (let k = 256; k < 300; k++) part2 = fr(part2 + absmax[k]!);
    const offset = fr(fr(part1 + part2) / 300);
    expect(readF32(q, 0)).toBe(offset);
    const max2 = (k0: number, k1: number) => {
      let m = 0;
      for (let k = k0; k < k1; k++) m = Math.max(m, Math.abs(fr(absmax[k]! - offset)));
      return m;
    };
    expect(readF32(q, 4)).toBe(max2(0, 256));
    expect(readF32(q, 8)).toBe(max2(256, 300));
  });

  it("all-zero tensors decode to zeros with every variant", () => {
    for (const f of BNB_FORMATS) {
      const y = f.decode(f.encode(new Float32Array(200), { rows: 2, cols: 100 }), { rows: 2, cols: 100 });
      expect(y.every((v) => v === 0)).toBe(true);
    }
  });
});

describe("LLM.int8", () => {
  const f = byId("llm-int8");

  it("stores SCB f32 per row, then int8 codes round(x * 127 / absmax) (ties to even)", () => {
    const q = f.encode(new Float32Array([1, -0.5, 0.25, 0, 0, 0, 0, 0]), { rows: 2, cols: 4 });
    expect(q.length).toBe(2 * 4 + 8);
    expect(readF32(q, 0)).toBe(1);
    expect(readF32(q, 4)).toBe(0);
    // 127, -63.5 -> -64 (even), 31.75 -> 32, 0
    expect(Array.from(q.subarray(8, 12))).toEqual([127, 0xc0, 32, 0]);
    const y = f.decode(q, { rows: 2, cols: 4 });
    expect(y[0]).toBe(fr(127 * fr(7.874015718698502e-3)));
    expect(Array.from(y.subarray(4))).toEqual([0, 0, 0, 0]);
    expect(bitsPerWeight(f, { rows: 3, cols: 4096 })).toBe(8 + 32 / 4096);
  });

  it("round-trips within half a step (absmax / 254) (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 }), fc.integer(), fc.constantFrom(1e-7, 0.02, 5, 1e4), (rows, cols, seed, std) => {
        const x = gaussian(rows * cols, std, seed);
        const q = f.encode(x, { rows, cols });
        const y = f.decode(q, { rows, cols });
        for (let r = 0; r < rows; r++) {
          const scb = readF32(q, 4 * r);
          for (let c = 0; c < cols; c++) {
            const code = (q[4 * rows + r * cols + c]! << 24) >> 24;
            if (code < -127 || code > 127) throw new Error("code out of range");
            const e = r * cols + c;
            if (!(Math.abs(x[e]! - y[e]!) <= scb / 254 + scb * 1e-6)) throw new Error(`element ${e}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("input checks", () => {
  it("reports NaN/Inf weights with row, column and count", () => {
    const x = new Float32Array(10 * 64).fill(0.1);
    x[5 * 64 + 17] = NaN;
    x[9 * 64 + 3] = NaN;
    x[9 * 64 + 60] = -Infinity;
    for (const f of BNB_FORMATS) {
      const err = expectThrowsQuant(() => f.encode(x, { rows: 10, cols: 64 }, { tensorName: "t" }));
      expect(err.problem).toBe("non-finite");
      expect([err.row, err.col, err.count, err.tensor]).toEqual([5, 17, 3, "t"]);
    }
  });

  it("rejects buffers of the wrong size", () => {
    for (const f of BNB_FORMATS) {
      expect(expectThrowsQuant(() => f.decode(new Uint8Array(3), { rows: 1, cols: 64 })).problem).toBe("shape");
      expect(expectThrowsQuant(() => f.encode(new Float32Array(3), { rows: 1, cols: 64 })).problem).toBe("shape");
      expect(f.checkRowLength(173).ok).toBe(true);
    }
  });
});
