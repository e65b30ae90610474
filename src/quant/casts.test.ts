import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { STORIES_DIR, STORIES_SHARDED_DIR } from "../../test/shared-data.ts";
import { bitsPerWeight, type QuantFormat } from "./format.ts";
import { bitsToF32, f32Bits } from "../formats/float-bits.ts";
import { CAST_FORMATS, E4M3_MAX, f32ToE4m3Sat } from "./casts.ts";
import { expectThrowsQuant } from "../../test/quant-errors.ts";

const byId = (id: string): QuantFormat => CAST_FORMATS.find((f) => f.id === id)!;
const f16 = byId("f16");
const bf16 = byId("bf16");
const e4m3 = byId("fp8-e4m3");
const e5m2 = byId("fp8-e5m2");

/** Cast one value through a format record: the code and the decoded value. */
function cast(f: QuantFormat, x: number): { code: number; value: number } {
  const q = f.encode(new Float32Array([x]), { rows: 1, cols: 1 });
  const code = q.length === 1 ? q[0]! : q[0]! | (q[1]! << 8);
  return { code, value: f.decode(q, { rows: 1, cols: 1 })[0]! };
}
/** The value of a code through a format record's decoder. */
function valueOf(f: QuantFormat, code: number): number {
  const q = f.blockBytes === 1 ? new Uint8Array([code]) : new Uint8Array([code & 0xff, code >>> 8]);
  return f.decode(q, { rows: 1, cols: 1 })[0]!;
}

describe("cast formats", () => {
  it("are element-wise with exact sizes", () => {
    const shape = { rows: 3, cols: 5 };
    expect(CAST_FORMATS.map((f) => f.id)).toEqual(["f16", "bf16", "fp8-e4m3", "fp8-e5m2"]);
    expect([f16, bf16, e4m3, e5m2].map((f) => bitsPerWeight(f, shape))).toEqual([16, 16, 8, 8]);
    for (const f of CAST_FORMATS) {
      expect(f.family).toBe("cast");
      expect(f.blockWeights).toBe(1);
      expect(f.checkRowLength(7).ok).toBe(true);
      const x = new Float32Array(15).map((_, i) => (i - 7) / 3);
      expect(f.encode(x, shape).length).toBe(f.encodedBytes(shape));
    }
  });

  it("reject NaN/Inf weights naming the first and the count, and buffers of the wrong size", () => {
    const x = new Float32Array(12).fill(1);
    x[7] = Infinity;
    x[11] = NaN;
    for (const f of CAST_FORMATS) {
      const err = expectThrowsQuant(() => f.encode(x, { rows: 3, cols: 4 }, { tensorName: "w" }));
      expect([err.problem, err.row, err.col, err.count, err.tensor]).toEqual(["non-finite", 1, 3, 2, "w"]);
      expect(expectThrowsQuant(() => f.decode(new Uint8Array(3), { rows: 1, cols: 4 })).problem).toBe("shape");
    }
  });

  it("zeros stay exact zeros", () => {
    for (const f of CAST_FORMATS) {
      const y = f.decode(f.encode(new Float32Array(8), { rows: 2, cols: 4 }), { rows: 2, cols: 4 });
      expect(y.every((v) => Object.is(v, 0))).toBe(true);
    }
  });
});

/** All codes of an 8-bit float round-trip; every pair of neighbouring finite codes (c, c+1) has its midpoint checked. */
function fp8Checks(f: QuantFormat, maxCode: number, maxFinite: number): void {
  expect(valueOf(f, maxCode)).toBe(maxFinite);
  // every code round-trips (NaN codes excepted; -0 keeps its sign)
  for (let c = 0; c < 256; c++) {
    const v = valueOf(f, c);
    if (Number.isNaN(v) || !Number.isFinite(v)) continue;
    expect(cast(f, v).code).toBe(c);
  }
  // midpoints round to the even code (the code whose mantissa LSB, i.e. the code's LSB, is 0); one ulp
  // (of float32) either side rounds to the nearer code
  for (let c = 0; c < 0x7f; c++) {
    const a = valueOf(f, c);
    const b = valueOf(f, c + 1);
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    const m = (a + b) / 2; // exact in float32: at most 5 significant bits
    expect(Math.fround(m)).toBe(m);
    const even = c % 2 === 0 ? c : c + 1;
    for (const sign of [1, -1]) {
      const s = sign < 0 ? 0x80 : 0;
      expect(cast(f, sign * m).code).toBe(even | s);
      const below = bitsToF32(f32Bits(m) - 1);
      const above = bitsToF32(f32Bits(m) + 1);
      expect(cast(f, sign * below).code).toBe(c | s);
      expect(cast(f, sign * above).code).toBe((c + 1) | s);
    }
  }
}

describe("fp8 E4M3 (e4m3fn, saturating)", () => {
  it("every code round-trips and midpoints round to even", () => fp8Checks(e4m3, 0x7e, 448));

  it("has the e4m3fn value set: max 448, min subnormal 2^-9, NaN only at 0x7F/0xFF", () => {
    expect(valueOf(e4m3, 0x7e)).toBe(448);
    expect(valueOf(e4m3, 0x01)).toBe(2 ** -9);
    expect(valueOf(e4m3, 0x08)).toBe(2 ** -6);
    expect(Number.isNaN(valueOf(e4m3, 0x7f))).toBe(true);
    expect(Number.isNaN(valueOf(e4m3, 0xff))).toBe(true);
    expect(valueOf(e4m3, 0x78)).toBe(256); // x.1111.000 is a number, not inf
  });

  it("saturates beyond 448 instead of producing NaN", () => {
    for (const x of [448, 449, 464, 465, 479, 480, 1e4, 3.4e38]) {
      expect(cast(e4m3, x)).toEqual({ code: 0x7e, value: E4M3_MAX });
      expect(cast(e4m3, -x)).toEqual({ code: 0xfe, value: -E4M3_MAX });
    }
    expect(cast(e4m3, 447).value).toBe(448); // midpoint of 416 and 448 is 432; 447 is nearer 448
    expect(cast(e4m3, 432).value).toBe(448); // tie: 448 (mantissa 110) is even, 416 (101) odd
    expect(cast(e4m3, 2 ** -10).code).toBe(0); // half the smallest subnormal: tie to 0
    expect(cast(e4m3, 2 ** -10 * 1.0001).code).toBe(1);
    expect(f32ToE4m3Sat(-1e30)).toBe(0xfe);
  });
});

describe("fp8 E5M2 (IEEE-like, torch's non-saturating cast)", () => {
  it("every code round-trips and midpoints round to even", () => fp8Checks(e5m2, 0x7b, 57344));

  it("overflows to inf from 61440 (the midpoint of 57344 and 65536) as torch does", () => {
    expect(valueOf(e5m2, 0x7b)).toBe(57344);
    expect(valueOf(e5m2, 0x7c)).toBe(Infinity);
    expect(valueOf(e5m2, 0x01)).toBe(2 ** -16);
    expect(cast(e5m2, 61439.99).value).toBe(57344);
    expect(cast(e5m2, 61440)).toEqual({ code: 0x7c, value: Infinity });
    expect(cast(e5m2, -1e6)).toEqual({ code: 0xfc, value: -Infinity });
  });
});

describe("f16", () => {
  it("every finite code round-trips; midpoints round to even; 65520 overflows", () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const v = valueOf(f16, h);
      if (cast(f16, v).code !== h) throw new Error(`code ${h.toString(16)} does not round-trip`);
    }
    expect(cast(f16, 1 + 2 ** -11).code).toBe(0x3c00); // tie between 1 and 1+2^-10: even
    expect(cast(f16, 1 + 3 * 2 ** -11).code).toBe(0x3c02);
    expect(cast(f16, 65519.99).value).toBe(65504);
    expect(cast(f16, 65520).value).toBe(Infinity);
    expect(cast(f16, 2 ** -25).code).toBe(0); // half the smallest subnormal
    expect(cast(f16, 3 * 2 ** -26).code).toBe(1);
  });
});

describe("bf16", () => {
  const rule = (u: number) => ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;

  it("follows the RNE rule of ../shared/models/stories260K-sharded/README.md, with its worked examples", () => {
    const examples: Array<[number, number, number]> = [
      [0xbe96e950, 0xbe97, -0.294921875],
      [0x401d54ef, 0x401d, 2.453125],
      [0x3d35d536, 0x3d36, 0.0444335938],
      [0xbb65d38b, 0xbb66, -0.00350952148],
    ];
    for (const [bits, expected, value] of examples) {
      const r = cast(bf16, bitsToF32(bits));
      expect(r.code).toBe(expected);
      expect(Math.abs(r.value - value)).toBeLessThan(1e-9);
    }
    expect(cast(bf16, bitsToF32(0x3eae8000)).code).toBe(0x3eae); // tie, even: stays
    expect(cast(bf16, bitsToF32(0xbcb18000)).code).toBe(0xbcb2); // tie, odd: up
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (u) => {
        if ((u & 0x7f800000) === 0x7f800000) return; // NaN/Inf are rejected as input
        expect(cast(bf16, bitsToF32(u)).code).toBe(rule(u));
      }),
      { numRuns: 20000 },
    );
  });

  it("reproduces the BF16 shards from the F32 checkpoint bit for bit (stories260K)", () => {
    const tensors = (file: string) => {
      const buf = readFileSync(file);
      const len = Number(buf.readBigUInt64LE(0));
      const header = JSON.parse(buf.subarray(8, 8 + len).toString("utf8")) as Record<
        string,
        { dtype: string; shape: number[]; data_offsets: [number, number] }
      >;
      const out = new Map<string, Uint8Array>();
      for (const [name, t] of Object.entries(header)) {
        if (name === "__metadata__") continue;
        out.set(name, new Uint8Array(buf.subarray(8 + len + t.data_offsets[0], 8 + len + t.data_offsets[1])));
      }
      return out;
    };
    const f32 = tensors(resolve(STORIES_DIR, "model.safetensors"));
    const shards = new Map([
      ...tensors(resolve(STORIES_SHARDED_DIR, "model-00001-of-00002.safetensors")),
      ...tensors(resolve(STORIES_SHARDED_DIR, "model-00002-of-00002.safetensors")),
    ]);
    expect(shards.size).toBe(47);
    let values = 0;
    for (const [name, bytes] of f32) {
      const x = new Float32Array(bytes.slice().buffer);
      const q = bf16.encode(x, { rows: 1, cols: x.length });
      const shard = shards.get(name)!;
      expect(Buffer.from(q.buffer, q.byteOffset, q.length).equals(Buffer.from(shard.buffer, shard.byteOffset, shard.length)), name).toBe(true);
      values += x.length;
    }
    expect(values).toBe(260032);
  });
});
