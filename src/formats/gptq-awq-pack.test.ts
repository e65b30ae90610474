import { describe, expect, it } from "vitest";
import { rng } from "../../test/random.ts";
import { unpackAwqGemm, unpackGptqV1 } from "../../test/gptq-awq-unpack.ts";
import { awqShapeProblem, gptqShapeProblem, gptqZeroProblem, packAwq, packGptq, type QuantizedLinear } from "./gptq-awq-pack.ts";
import { encodeFromF32, decodeToF32 } from "./dtypes.ts";

/** A random layer; scales exactly representable in float16 so the expected weights are exact. */
function layer(rows: number, cols: number, bits: number, group: number, seed: number, shuffledGroups = false): QuantizedLinear {
  const r = rng(seed);
  const maxq = 2 ** bits - 1;
  const groups = Math.ceil(cols / group);
  const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(r() * (maxq + 1)));
  const scales = decodeToF32("F16", encodeFromF32("F16", Float32Array.from({ length: rows * groups }, () => 0.001 + r() * 0.05)));
  const zeros = Float32Array.from({ length: rows * groups }, () => 1 + Math.floor(r() * maxq));
  const gIdx = Int32Array.from({ length: cols }, (_, i) => Math.floor(i / group));
  if (shuffledGroups) for (let i = cols - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [gIdx[i], gIdx[j]] = [gIdx[j]!, gIdx[i]!]; }
  return { rows, cols, bits, codes, scales, zeros, gIdx };
}

function dequantize(q: QuantizedLinear): Float32Array {
  const groups = q.scales.length / q.rows;
  return Float32Array.from({ length: q.rows * q.cols }, (_, k) => {
    const o = Math.floor(k / q.cols);
    const g = o * groups + q.gIdx[k % q.cols]!;
    return Math.fround(q.scales[g]! * (q.codes[k]! - q.zeros[g]!));
  });
}

describe("GPTQ v1 packing", () => {
  for (const [bits, group, act] of [[4, 32, false], [4, 32, true], [2, 16, false], [8, 64, true]] as const) {
    it(`${bits} bits, group ${group}${act ? ", act-order g_idx" : ""}: the loaders' unpack gives back every weight`, () => {
      const q = layer(48, 128, bits, group, bits * 100 + group, act);
      const p = packGptq(q);
      expect(p.qweight.length).toBe((128 * bits) / 32 * 48);
      expect(p.qzeros.length).toBe(p.groups * (48 * bits) / 32);
      expect(unpackGptqV1(p.qweight, p.qzeros, p.scales, p.gIdx, bits, 48, 128)).toEqual(dequantize(q));
    });
  }

  it("packs input rows low bits first, zeros minus one (a hand-made word)", () => {
    const q: QuantizedLinear = { rows: 8, cols: 8, bits: 4, codes: new Uint8Array(64), scales: new Float32Array(8).fill(1), zeros: Float32Array.from({ length: 8 }, (_, o) => o + 1), gIdx: new Int32Array(8) };
    for (let i = 0; i < 8; i++) q.codes[0 * 8 + i] = i + 8; // row (output) 0: codes 8..15 along the inputs
    const p = packGptq(q);
    expect(p.qweight[0]! >>> 0).toBe(0xfedcba98);
    expect(p.qzeros[0]! >>> 0).toBe(0x76543210);
  });

  it("names what the layout cannot take", () => {
    expect(gptqShapeProblem(172, 64, 4)).toMatch(/172 output features/);
    expect(gptqShapeProblem(64, 172, 4)).toMatch(/172 input features/);
    expect(gptqShapeProblem(64, 64, 3)).toMatch(/2, 4 or 8 bits/);
    expect(gptqZeroProblem(Float32Array.of(3, 0))).toMatch(/zero point 0/);
    expect(() => packGptq({ ...layer(8, 8, 4, 8, 1), zeros: new Float32Array(8) })).toThrow(/zero point 0/);
  });
});

describe("AWQ GEMM packing", () => {
  for (const group of [32, 64, 128]) {
    it(`group ${group}: unpack_awq + reverse_awq_order give back every weight`, () => {
      const q = layer(40, 256, 4, group, group);
      q.zeros.forEach((_, i) => (q.zeros[i] = i % 16)); // AWQ stores 0 too
      const p = packAwq(q);
      expect(p.qweight.length).toBe(256 * 5);
      expect(unpackAwqGemm(p.qweight, p.qzeros, p.scales, group, 40, 256)).toEqual(dequantize(q));
    });
  }

  it("interleaves output columns 0,2,4,6,1,3,5,7 (a hand-made word)", () => {
    const q: QuantizedLinear = { rows: 8, cols: 32, bits: 4, codes: new Uint8Array(256), scales: new Float32Array(8).fill(1), zeros: new Float32Array(8), gIdx: new Int32Array(32) };
    for (let o = 0; o < 8; o++) q.codes[o * 32] = o; // input 0: output o has code o
    expect(packAwq(q).qweight[0]! >>> 0).toBe(0x75316420);
  });

  it("names what the layout cannot take", () => {
    expect(awqShapeProblem(172, 64, 4, 32)).toMatch(/172 output features/);
    expect(awqShapeProblem(64, 172, 4, 32)).toMatch(/multiple of the group size 32/);
    expect(awqShapeProblem(64, 64, 3, 32)).toMatch(/4-bit/);
  });
});
