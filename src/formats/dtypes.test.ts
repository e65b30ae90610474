import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DTYPE_BYTES, DTYPES, decodeToF32, encodeFromF32, isDType, type DType } from "./dtypes.ts";

/** Value of a sign/exponent/mantissa code by the textbook formula (-1)^s * 2^(e-bias) * (1 + m/2^M). */
function formula(code: number, expBits: number, manBits: number, kind: "ieee" | "fn"): number {
  const s = Math.floor(code / 2 ** (expBits + manBits)) % 2;
  const e = Math.floor(code / 2 ** manBits) % 2 ** expBits;
  const m = code % 2 ** manBits;
  const bias = 2 ** (expBits - 1) - 1;
  const allOnes = 2 ** expBits - 1;
  const sign = s ? -1 : 1;
  if (kind === "ieee" && e === allOnes) return m === 0 ? sign * Infinity : NaN;
  if (kind === "fn" && e === allOnes && m === 2 ** manBits - 1) return NaN;
  if (e === 0) return sign * Math.pow(2, 1 - bias) * (m / Math.pow(2, manBits));
  return sign * Math.pow(2, e - bias) * (1 + m / Math.pow(2, manBits));
}

interface Layout {
  dtype: DType;
  expBits: number;
  manBits: number;
  kind: "ieee" | "fn";
}
const FLOAT_LAYOUTS: Layout[] = [
  { dtype: "F16", expBits: 5, manBits: 10, kind: "ieee" },
  { dtype: "BF16", expBits: 8, manBits: 7, kind: "ieee" },
  { dtype: "F8_E4M3", expBits: 4, manBits: 3, kind: "fn" },
  { dtype: "F8_E5M2", expBits: 5, manBits: 2, kind: "ieee" },
];

function codeBytes(dtype: DType, codes: number[]): Uint8Array {
  const out = new Uint8Array(codes.length * DTYPE_BYTES[dtype]);
  codes.forEach((c, i) => {
    out[i * DTYPE_BYTES[dtype]] = c & 0xff;
    if (DTYPE_BYTES[dtype] === 2) out[i * 2 + 1] = c >>> 8;
  });
  return out;
}

function readCodes(dtype: DType, bytes: Uint8Array): number[] {
  const size = DTYPE_BYTES[dtype];
  const codes: number[] = [];
  for (let i = 0; i < bytes.length; i += size) codes.push(size === 2 ? bytes[i]! | (bytes[i + 1]! << 8) : bytes[i]!);
  return codes;
}

const allCodes = (l: Layout) => Array.from({ length: 2 ** (1 + l.expBits + l.manBits) }, (_, i) => i);

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number) => ((f32[0] = x), u32[0]!);
const fromBits = (b: number) => ((u32[0] = b >>> 0), f32[0]!);

/**
 * Reference encoder by brute force: the representable value nearest to fround(x), ties to the even
 * code; past the largest finite value, the value the format would reach next (2^(emax+1): inf for
 * IEEE formats, 480 -> NaN for e4m3fn) takes part in the rounding and means overflow.
 */
function referenceEncoder(l: Layout) {
  const codes = allCodes(l).filter((c) => c < 2 ** (l.expBits + l.manBits));
  const finite = codes
    .map((code) => ({ code, value: formula(code, l.expBits, l.manBits, l.kind) }))
    .filter((e) => Number.isFinite(e.value))
    .sort((a, b) => a.value - b.value);
  const max = finite[finite.length - 1]!;
  const overflowValue = max.value + (max.value - finite[finite.length - 2]!.value); // one ulp further
  const overflowCode = l.kind === "ieee" ? (2 ** l.expBits - 1) * 2 ** l.manBits : 2 ** (l.expBits + l.manBits) - 1;
  const ladder = [...finite, { code: overflowCode, value: overflowValue }];
  const signBit = 2 ** (l.expBits + l.manBits);
  return {
    ladder,
    encode(x: number): number | "nan" {
      const v = Math.fround(x);
      if (Number.isNaN(v)) return "nan";
      const negative = v < 0 || Object.is(v, -0);
      const a = Math.abs(v);
      let code: number;
      if (a >= overflowValue) code = overflowCode;
      else {
        let lo = 0;
        let hi = ladder.length - 1;
        while (hi - lo > 1) {
          const mid = (lo + hi) >> 1;
          if (ladder[mid]!.value <= a) lo = mid;
          else hi = mid;
        }
        const below = ladder[lo]!;
        const above = ladder[hi]!;
        const dBelow = a - below.value;
        const dAbove = above.value - a;
        code = dBelow < dAbove ? below.code : dAbove < dBelow ? above.code : below.code % 2 === 0 ? below.code : above.code;
      }
      if (l.kind === "fn" && code === overflowCode) return "nan"; // e4m3fn: no inf, overflow is NaN
      return negative ? code + signBit : code;
    },
  };
}

describe("dtype table", () => {
  it("knows the twelve safetensors dtypes and their sizes", () => {
    expect(DTYPES).toHaveLength(12);
    expect(DTYPES.map((d) => DTYPE_BYTES[d])).toEqual([8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1]);
    for (const d of DTYPES) expect(isDType(d)).toBe(true);
    for (const s of ["U16", "f32", "", "__proto__", "toString", "F8_E4M3FN"]) expect(isDType(s)).toBe(false);
  });
});

describe("decoding floats", () => {
  for (const l of FLOAT_LAYOUTS) {
    it(`${l.dtype}: all ${2 ** (1 + l.expBits + l.manBits)} codes equal the formula`, () => {
      const codes = allCodes(l);
      const decoded = decodeToF32(l.dtype, codeBytes(l.dtype, codes));
      codes.forEach((code, i) => {
        const expected = formula(code, l.expBits, l.manBits, l.kind);
        // Object.is: -0 must stay -0, NaN must be NaN
        if (!Object.is(decoded[i], expected)) throw new Error(`${l.dtype} code 0x${code.toString(16)}: ${decoded[i]} != ${expected}`);
      });
    });
  }

  it("BF16 is the top half of a float32, NaN payloads included", () => {
    const codes = Array.from({ length: 65536 }, (_, i) => i);
    const decoded = decodeToF32("BF16", codeBytes("BF16", codes));
    const bits = new Uint32Array(decoded.buffer);
    codes.forEach((c, i) => expect(bits[i]).toBe((c << 16) >>> 0));
  });

  it("F8_E4M3 is the finite 'fn' variant: 448 is the largest value, only x.1111.111 is NaN", () => {
    const d = decodeToF32("F8_E4M3", new Uint8Array([0x7e, 0xfe, 0x7f, 0xff, 0x78, 0x01, 0x08, 0x80]));
    expect([...d]).toEqual([448, -448, NaN, NaN, 256, 2 ** -9, 2 ** -6, -0]);
    expect(Object.is(d[7], -0)).toBe(true);
  });

  it("F8_E5M2 has inf and NaN like IEEE", () => {
    const d = decodeToF32("F8_E5M2", new Uint8Array([0x7b, 0x7c, 0xfc, 0x7d, 0x7e, 0x7f, 0x01, 0x04]));
    expect([...d]).toEqual([57344, Infinity, -Infinity, NaN, NaN, NaN, 2 ** -16, 2 ** -14]);
  });

  it("F32 is copied bit for bit (NaN payloads, subnormals, -0) from any byte alignment", () => {
    const bits = [0x00000001, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 0x7f800123, 0x3f800000, 0x00800000, 0x807fffff];
    const raw = new Uint8Array(new Uint32Array(bits).buffer);
    const unaligned = new Uint8Array(raw.length + 3);
    unaligned.set(raw, 3);
    for (const view of [raw, unaligned.subarray(3)]) {
      expect([...new Uint32Array(decodeToF32("F32", view).buffer)]).toEqual(bits);
    }
  });

  it("F64 rounds to the nearest float32", () => {
    const values = [1 / 3, -2 / 3, 1e-50, 1e300, -1e300, 2 ** -149, 2 ** -150 * 1.5, NaN, -0, 16777217, 3.4028235677973366e38];
    const d = decodeToF32("F64", new Uint8Array(new Float64Array(values).buffer));
    // 2^24 + 1 lies halfway between two float32 values: ties to even -> 2^24. The last value is the
    // midpoint between the largest float32 and 2^128: ties to even -> infinity.
    const expected = [0.3333333432674408, -0.6666666865348816, 0, Infinity, -Infinity, 2 ** -149, 2 ** -149, NaN, -0, 16777216, Infinity];
    values.forEach((_, i) => expect(Object.is(d[i], expected[i])).toBe(true));
  });
});

describe("decoding integers and BOOL", () => {
  it("I8, U8, I16 are exact for every value", () => {
    const all8 = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect([...decodeToF32("U8", all8)]).toEqual([...all8]);
    expect([...decodeToF32("I8", all8)]).toEqual([...all8].map((v) => (v < 128 ? v : v - 256)));
    const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const d = decodeToF32("I16", new Uint8Array(all16.buffer));
    all16.forEach((v, i) => {
      if (d[i] !== (v < 32768 ? v : v - 65536)) throw new Error(`I16 ${v}`);
    });
  });

  it("I32 rounds to the nearest float32 (ties to even)", () => {
    const values = [0, -1, 2 ** 31 - 1, -(2 ** 31), 16777217, 16777219, -16777217, 123456789];
    const d = decodeToF32("I32", new Uint8Array(new Int32Array(values).buffer));
    expect([...d]).toEqual([0, -1, 2 ** 31, -(2 ** 31), 16777216, 16777220, -16777216, 123456792]);
  });

  /** The float32 nearest to an integer, by exact BigInt comparison of the two candidates around it. */
  function nearestF32(v: bigint): number {
    const guess = Math.fround(Number(v));
    const candidates = [guess, fromBits(bitsOf(guess) + 1), fromBits(bitsOf(guess) - 1)].filter((c) => Number.isInteger(c));
    let best = guess;
    for (const c of candidates) {
      const dc = BigInt(c) - v < 0n ? v - BigInt(c) : BigInt(c) - v;
      const db = BigInt(best) - v < 0n ? v - BigInt(best) : BigInt(best) - v;
      if (dc < db || (dc === db && (bitsOf(c) & 1) === 0)) best = c;
    }
    return best;
  }

  it("I64 rounds once, from the exact integer, to the nearest float32", () => {
    const cases = [
      0n,
      -1n,
      2n ** 53n + 1n,
      2n ** 63n - 1n,
      -(2n ** 63n),
      2n ** 60n + 2n ** 36n + 1n, // just above a float32 midpoint: a double would round onto the midpoint
      -(2n ** 60n + 2n ** 36n + 1n),
      2n ** 60n + 2n ** 36n, // exactly a midpoint: ties to even
      2n ** 40n + 3n,
    ];
    const d = decodeToF32("I64", new Uint8Array(new BigInt64Array(cases).buffer));
    cases.forEach((v, i) => expect(d[i]).toBe(nearestF32(v)));
    expect(d[5]).toBe(2 ** 60 + 2 ** 37);
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (v) => {
        expect(decodeToF32("I64", new Uint8Array(new BigInt64Array([v]).buffer))[0]).toBe(nearestF32(v));
      }),
      { numRuns: 2000 },
    );
  });

  it("BOOL is 0 or 1", () => {
    expect([...decodeToF32("BOOL", new Uint8Array([0, 1, 2, 255]))]).toEqual([0, 1, 1, 1]);
  });

  it("rejects a byte count that is not whole elements and writes into a given output", () => {
    expect(() => decodeToF32("F32", new Uint8Array(6))).toThrow(RangeError);
    const out = new Float32Array(4).fill(9);
    const got = decodeToF32("I8", new Uint8Array([1, 255]), out);
    expect(got.buffer).toBe(out.buffer);
    expect([...out]).toEqual([1, -1, 9, 9]);
    expect(() => decodeToF32("U8", new Uint8Array(5), out)).toThrow(RangeError);
  });
});

describe("encoding floats rounds to nearest, ties to even", () => {
  for (const l of FLOAT_LAYOUTS) {
    const ref = referenceEncoder(l);
    const check = (x: number) => {
      const expected = ref.encode(x);
      const bytes = encodeFromF32(l.dtype, [x]);
      if (expected === "nan") {
        if (!Number.isNaN(decodeToF32(l.dtype, bytes)[0])) throw new Error(`${l.dtype}(${x}) should be NaN`);
        return;
      }
      const got = readCodes(l.dtype, bytes)[0]!;
      if (got !== expected) throw new Error(`${l.dtype}(${x}, bits 0x${bitsOf(x).toString(16)}): 0x${got.toString(16)} != 0x${expected.toString(16)}`);
    };

    it(`${l.dtype}: every midpoint between neighbours, and the float32s right next to it`, () => {
      const { ladder } = ref;
      for (let i = 0; i + 1 < ladder.length; i++) {
        const mid = (ladder[i]!.value + ladder[i + 1]!.value) / 2;
        if (Math.fround(mid) !== mid) throw new Error("midpoint not a float32");
        for (const x of [mid, fromBits(bitsOf(mid) + 1), mid > 0 ? fromBits(bitsOf(mid) - 1) : 0, ladder[i]!.value]) {
          check(x);
          check(-x);
        }
      }
    });

    it(`${l.dtype}: random float32s (subnormals, inf, NaN included)`, () => {
      fc.assert(fc.property(fc.float(), (x) => check(x)), { numRuns: 5000 });
      fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (b) => check(fromBits(b))), { numRuns: 5000 });
    });

    it(`${l.dtype}: decode then encode gives every non-NaN code back`, () => {
      const codes = allCodes(l);
      const values = decodeToF32(l.dtype, codeBytes(l.dtype, codes));
      const back = readCodes(l.dtype, encodeFromF32(l.dtype, values));
      codes.forEach((c, i) => {
        if (!Number.isNaN(values[i]) && back[i] !== c) throw new Error(`${l.dtype} 0x${c.toString(16)} -> 0x${back[i]!.toString(16)}`);
      });
    });
  }

  it("F8_E4M3 follows torch's float8_e4m3fn cast: above 448 (and inf) is NaN, 464 rounds down to 448", () => {
    const d = decodeToF32("F8_E4M3", encodeFromF32("F8_E4M3", [448, 464, 465, 479, 480, 1e6, Infinity, -Infinity, -464, NaN]));
    expect([...d]).toEqual([448, 448, NaN, NaN, NaN, NaN, NaN, NaN, -448, NaN]);
    expect([...encodeFromF32("F8_E4M3", [NaN, 1e9, -1e9, Infinity])]).toEqual([0x7f, 0x7f, 0xff, 0x7f]);
  });

  it("F8_E5M2 and F16 overflow to infinity", () => {
    expect([...decodeToF32("F8_E5M2", encodeFromF32("F8_E5M2", [57344, 61439, 61440, -1e9]))]).toEqual([57344, 57344, Infinity, -Infinity]);
    expect([...decodeToF32("F16", encodeFromF32("F16", [65504, 65519.99, 65520, 1e10]))]).toEqual([65504, 65504, Infinity, Infinity]);
  });

  it("F32 and F64 store the value (F64 keeps the double)", () => {
    expect([...decodeToF32("F32", encodeFromF32("F32", [0.1, -0, 1e-45]))]).toEqual([Math.fround(0.1), -0, 2 ** -149]);
    expect([...new Float64Array(encodeFromF32("F64", [0.1, -0, 1e300]).buffer)]).toEqual([0.1, -0, 1e300]);
  });
});

describe("encoding integers", () => {
  it("rounds half to even and refuses what does not fit", () => {
    expect([...new Int8Array(encodeFromF32("I8", [2.5, -2.5, 3.5, -128, 127, 0.4999]).buffer)]).toEqual([2, -2, 4, -128, 127, 0]);
    expect([...encodeFromF32("U8", [0, 255, 254.5])]).toEqual([0, 255, 254]);
    expect(() => encodeFromF32("U8", [256])).toThrow(RangeError);
    expect(() => encodeFromF32("I8", [-129])).toThrow(RangeError);
    expect(() => encodeFromF32("I16", [NaN])).toThrow(RangeError);
    expect(() => encodeFromF32("I32", [2 ** 31])).toThrow(RangeError);
    expect(() => encodeFromF32("I64", [2 ** 63])).toThrow(RangeError);
    expect([...new BigInt64Array(encodeFromF32("I64", [-(2 ** 63), 2 ** 62, -7]).buffer)]).toEqual([-(2n ** 63n), 2n ** 62n, -7n]);
    expect([...new Int16Array(encodeFromF32("I16", [-32768, 32767]).buffer)]).toEqual([-32768, 32767]);
  });

  it("BOOL stores non-zero as 1", () => {
    expect([...encodeFromF32("BOOL", [0, -0, 1, -3, 0.5, NaN])]).toEqual([0, 0, 1, 1, 1, 1]);
  });

  it("round-trips every integer dtype through its bytes", () => {
    const cases: [DType, number, number][] = [
      ["I8", -128, 127],
      ["U8", 0, 255],
      ["I16", -32768, 32767],
      ["I32", -(2 ** 24), 2 ** 24], // the float32-exact range
      ["I64", -(2 ** 24), 2 ** 24],
    ];
    for (const [dtype, min, max] of cases) {
      fc.assert(
        fc.property(fc.array(fc.integer({ min, max }), { maxLength: 50 }), (values) => {
          expect([...decodeToF32(dtype, encodeFromF32(dtype, values))]).toEqual(values);
        }),
        { numRuns: 200 },
      );
    }
  });
});
