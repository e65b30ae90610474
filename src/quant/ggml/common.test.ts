import { describe, expect, it } from "vitest";
import { f16BitsToF32, f32Bits } from "../../formats/float-bits.ts";
import { bitsView, decodeInSpans, encodeInSpans, F16_TO_F32, minMaxBits, nearestInt, nearestIntInRange, readF16, roundHalfAway, signedAbsMax, writeF16 } from "./common.ts";
import { decodeQ8_0, encodeQ4_1, Q4_1, Q8_0 } from "./legacy.ts";
import { gaussian } from "../../../test/random.ts";

/** ggml's nearest_int as C writes it: add 12582912.0f, keep the low 22 mantissa bits. */
function nearestIntBitTrick(v: number): number {
  return (f32Bits(Math.fround(v + 12582912)) & 0x007fffff) - 0x00400000;
}

/** Float32 values: ties, near-ties, range edges, huge values, inf and a spread of random ones. */
function probes(): number[] {
  const values = [0, -0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 3.4999998, 4194302.5, -4194302.5];
  values.push(4194303, -4194303, 4194303.5, -4194303.5, 4194304.5, 5e6, -5e6, 1e30, -1e30, Infinity, -Infinity, 8388608, 12582912);
  let s = 12345;
  for (let i = 0; i < 5000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    values.push((s / 2 ** 32 - 0.5) * 2 ** ((i % 48) - 24));
  }
  return values.map(Math.fround);
}

describe("ggml rounding helpers", () => {
  it("nearestInt equals ggml's nearest_int bit trick everywhere (ties to even, huge values, inf)", () => {
    for (const v of probes()) expect(nearestInt(v), String(v)).toBe(nearestIntBitTrick(v));
  });

  it("nearestIntInRange equals it inside ggml's range |v| <= 4194303", () => {
    for (const v of probes()) if (Math.abs(v) <= 4194303) expect(nearestIntInRange(v), String(v)).toBe(nearestIntBitTrick(v));
  });

  it("roundHalfAway is C's roundf: ties away from zero", () => {
    const cases: [number, number][] = [[0.5, 1], [-0.5, -1], [1.5, 2], [-1.5, -2], [2.5, 3], [-2.5, -3], [0.49999997, 0], [126.5, 127], [-127.5, -128], [3.2, 3], [-3.7, -4]];
    for (const [v, r] of cases) expect(roundHalfAway(Math.fround(v)), String(v)).toBe(r);
  });

  it("the fp16 table holds every code's value; readF16 and writeF16 round-trip every finite code", () => {
    const bytes = new Uint8Array(2);
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      expect(Object.is(F16_TO_F32[h], v) || (Number.isNaN(v) && Number.isNaN(F16_TO_F32[h]))).toBe(true);
      if (!Number.isFinite(v)) continue;
      writeF16(bytes, 0, v);
      expect(bytes[0]! | (bytes[1]! << 8)).toBe(h);
      expect(Object.is(readF16(bytes, 0), v)).toBe(true);
    }
  });

  it("signedAbsMax returns the signed value of the largest |x|, the first on ties, like ggml's branchy loop", () => {
    const sam = (v: number[], xo = 0, n = v.length) => signedAbsMax(bitsView(new Float32Array(v)), xo, n);
    expect(sam([1, -3, 3, 2])).toBe(-3);
    expect(sam([9, 1, 3, -3], 1, 3)).toBe(3);
    expect(Object.is(sam([0, -0, 0]), 0)).toBe(true);
    expect(Object.is(sam([-0, -0]), 0)).toBe(true);
    expect(sam([-3.4028234663852886e38, 3.4028234663852886e38, 1e-45])).toBe(-3.4028234663852886e38);
    // Against the loop as ggml writes it, on values with many ties and both signs.
    const x = new Float32Array(4096).map((_, i) => ((i * 7919) % 13) - 6 + (i % 3 === 0 ? 0.5 : 0));
    for (let xo = 0; xo < x.length; xo += 16) {
      let amax = 0;
      let max = 0;
      for (let i = xo; i < xo + 16; i++) {
        const ax = Math.abs(x[i]!);
        if (ax > amax) {
          amax = ax;
          max = x[i]!;
        }
      }
      expect(signedAbsMax(bitsView(x), xo, 16)).toBe(max);
    }
  });

  it("minMaxBits finds ggml's min and max, the first zero's sign included, and flags NaN and infinities", () => {
    const pool = [0, -0, 1.5, -1.5, 2, -2, 1e-45, -1e-45, 3.4028234663852886e38, -3.4028234663852886e38, 0.25];
    const range = new Int32Array(2);
    const asFloat = new Float32Array(range.buffer);
    let s = 7;
    for (let trial = 0; trial < 3000; trial++) {
      const n = 1 + (trial % 9);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        // Mostly zeros of both signs and a few other values, so zero ties come up often.
        v[i] = s % 3 === 0 ? pool[s % pool.length]! : (s >> 8) % 2 ? 0 : -0;
      }
      let min = 3.4028234663852886e38;
      let max = -3.4028234663852886e38;
      for (const x of v) {
        if (x < min) min = x;
        if (x > max) max = x;
      }
      expect(minMaxBits(bitsView(v), 0, n, range)).toBe(true);
      expect(Object.is(asFloat[0], min), `min of ${[...v].map((x) => Object.is(x, -0) ? "-0" : x)}`).toBe(true);
      expect(Object.is(asFloat[1], max), `max of ${[...v].map((x) => Object.is(x, -0) ? "-0" : x)}`).toBe(true);
    }
    // Weight-like blocks (all |x| < 2, the fast path) of every length up to 40, some with repeated values.
    for (let n = 1; n <= 40; n++) {
      for (let seed = 1; seed <= 20; seed++) {
        const v = gaussian(n, 0.5, 1000 * n + seed);
        if (seed % 4 === 0) v[n - 1] = v[0]!;
        const expectedMin = v.reduce((a, b) => (b < a ? b : a));
        const expectedMax = v.reduce((a, b) => (b > a ? b : a));
        expect(minMaxBits(bitsView(v), 0, n, range)).toBe(true);
        expect([asFloat[0], asFloat[1]]).toEqual([expectedMin, expectedMax]);
      }
    }
    for (const bad of [NaN, -NaN, Infinity, -Infinity]) {
      const v = new Float32Array([1, -2, bad, 0.5]);
      expect(minMaxBits(bitsView(v), 0, 4, range)).toBe(false);
    }
    const negativeNaN = new Int32Array([0x3f800000, 0xffc00001 | 0]);
    expect(minMaxBits(negativeNaN, 0, 2, range)).toBe(false);
  });

  it("encodeInSpans encodes a tensor in spans exactly as in one piece, and stops at a non-finite value", () => {
    const shape = { rows: 3, cols: 320 };
    const x = gaussian(shape.rows * shape.cols, 1, 12);
    const whole = Q4_1.encode(x, shape);
    const spans: number[] = [];
    const out = new Uint8Array(whole.length);
    // 32-weight blocks with a limit of 100: three blocks a span, 30 blocks in 10 spans.
    const ok = encodeInSpans((xs, xo, os, oo, blocks) => { spans.push(blocks); return encodeQ4_1(xs, xo, os, oo, blocks); }, x, out, 30, 32, 20, 100);
    expect(ok).toBe(true);
    expect(spans).toEqual(new Array(10).fill(3));
    expect(Array.from(out)).toEqual(Array.from(whole));
    x[700] = NaN; // in the eighth span
    spans.length = 0;
    expect(encodeInSpans((xs, xo, os, oo, blocks) => { spans.push(blocks); return encodeQ4_1(xs, xo, os, oo, blocks); }, x, out, 30, 32, 20, 100)).toBe(false);
    expect(spans.length).toBe(8);
  });

  it("decodeInSpans decodes a tensor in spans exactly as in one piece", () => {
    const shape = { rows: 3, cols: 320 };
    const x = gaussian(shape.rows * shape.cols, 1, 11);
    const q = Q8_0.encode(x, shape);
    const whole = Q8_0.decode(q, shape);
    const spans: number[] = [];
    const y = new Float32Array(whole.length);
    // 34-byte blocks with a limit of 100: two blocks a span, 30 blocks in 15 spans.
    decodeInSpans((qs, qo, ys, yo, blocks) => { spans.push(blocks); decodeQ8_0(qs, qo, ys, yo, blocks); }, q, y, 30, 32, 34, 100);
    expect(spans).toEqual(new Array(15).fill(2));
    expect(Array.from(y)).toEqual(Array.from(whole));
  });
});
