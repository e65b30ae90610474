/**
 * shaders/bnb.wgsl on real WebGPU: nf4, fp4, nf4-dq, fp4-dq and llm-int8 give the bytes of the CPU reference
 * src/quant/bnb.ts and the float32 bits of its decoders; on random tensors whose blocks of 64 span rows
 * (cols not a multiple of 64), with zero blocks, outliers, values on the code trees' pivots, blocks and rows
 * the kernels leave to the CPU (subnormal and extreme magnitudes), more than 256 blocks (two double-
 * quantization blocks), streamed in small chunks; and on every stories260K tensor. NaN/Inf as the CPU.
 */
import { describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { gpuQuantizerFor } from "./quantizer.ts";
import { bnbGpuQuantizer, fourBitTable } from "./bnb.ts";
import type { ChunkOptions } from "./kernel-chunks.ts";
import { BNB_FORMATS, quantizeFp4, quantizeNf4 } from "../quant/bnb.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { bitsToF32, f32Bits } from "../formats/float-bits.ts";
import { normal, rng } from "../../test/random.ts";
import { expectGpuEqualsCpu, storiesTensors } from "../../test/gpu-quantizer-compare.ts";

const labDevice = useLabDevice();

function quantizer(format: QuantFormat, options: ChunkOptions = {}) {
  const q = bnbGpuQuantizer(labDevice(), format, options);
  if (!q) throw new Error(`no GPU kernel for ${format.id}`);
  return q;
}

/** The 4-bit code the shader's table gives v: its cell, found in float32 as the shader does, then the pivot test. */
function tableCode(table: Uint32Array, fp4: boolean, v: number): number {
  const a = fp4 ? Math.abs(v) : v;
  const fr = Math.fround;
  const position = fr(fr(a + bitsToF32(table[0]!)) * 16);
  const cell = Math.min(Math.max(Math.floor(position), 0), bitsToF32(table[1]!));
  const codes = table[34 + cell]!;
  return (a > bitsToF32(table[2 + cell]!) ? codes >> 4 : codes & 15) | (fp4 && v < 0 ? 8 : 0);
}

/** Every pivot of both tables, and the float32 values just around them. */
function pivotNeighbourhoods(): number[] {
  const out: number[] = [];
  for (const type of ["nf4", "fp4"] as const) {
    const table = fourBitTable(type);
    for (let j = 0; j <= bitsToF32(table[1]!); j++) {
      const b = table[2 + j]!;
      if (bitsToF32(b) > 2) continue; // a cell without a pivot
      for (const d of [-2, -1, 0, 1, 2]) out.push(bitsToF32(b + d), -bitsToF32(b + d));
    }
  }
  return out;
}

/**
 * Gaussian weights with zero blocks, outliers, pivot values (with a 1.0 in their block, so x / absmax is the
 * pivot itself), and rows the kernels hand to the CPU: subnormals, tiny blocks, and 1e30 next to 1e-10.
 */
function messyWeights({ rows, cols }: MatrixShape, seed: number): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(rows * cols);
  const bits = new Uint32Array(x.buffer);
  const pivots = pivotNeighbourhoods();
  for (let r = 0; r < rows; r++) {
    const kind = r % 7;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      if (kind === 1) x[i] = 0;
      else if (kind === 2) x[i] = c === 0 ? 1 : pivots[Math.floor(random() * pivots.length)]!;
      else if (kind === 3) bits[i] = (random() < 0.5 ? 0x80000000 : 0) | Math.floor(random() * 0x7fffff); // subnormals
      else if (kind === 4) x[i] = normal(random) * 1e-36;
      else if (kind === 5) x[i] = c % 17 === 0 ? 1e30 : normal(random) * 1e-10;
      else x[i] = normal(random) * (random() < 0.01 ? 30 : 1);
    }
  }
  return x;
}

describe("the 4-bit code tables", () => {
  it("give bnb.ts's codes for values all over and around [-1, 1], pivots and cell edges included", () => {
    const random = rng(1);
    const values = pivotNeighbourhoods();
    for (let i = 0; i < 100_000; i++) values.push(Math.fround((random() * 2 - 1) * 1.1));
    // Cell edges and the ends of the range (x / absmax can round just past +-1).
    for (let j = -16; j <= 16; j++) values.push(j / 16, bitsToF32(f32Bits(j / 16) + 1), -bitsToF32(f32Bits(j / 16) + 1));
    values.push(0, -0, 1.0000001, -1.0000001);
    const nf4 = fourBitTable("nf4");
    const fp4 = fourBitTable("fp4");
    for (const v of values) {
      expect(tableCode(nf4, false, v), `nf4 ${v} (${f32Bits(v).toString(16)})`).toBe(quantizeNf4(v));
      expect(tableCode(fp4, true, v), `fp4 ${v}`).toBe(quantizeFp4(v));
    }
  });
});

describe("GPU bitsandbytes formats equal the CPU reference", () => {
  it("registers a kernel for every bitsandbytes format", () => {
    for (const f of BNB_FORMATS) expect(gpuQuantizerFor(labDevice(), f)?.format, f.id).toBe(f);
  });

  for (const format of BNB_FORMATS) {
    it(`${format.id}: random tensors, whole and in small chunks`, async () => {
      const shapes: MatrixShape[] = [
        { rows: 1, cols: 1 },
        { rows: 1, cols: 63 },
        { rows: 3, cols: 50 },
        { rows: 14, cols: 64 },
        { rows: 9, cols: 333 },
        { rows: 130, cols: 131 }, // 266 blocks of 64: two blocks of the double quantization
      ];
      for (const [k, shape] of shapes.entries()) {
        const x = messyWeights(shape, k * 31 + format.id.length);
        await expectGpuEqualsCpu(quantizer(format), x, shape);
        await expectGpuEqualsCpu(quantizer(format, { maxChunkBytes: 3 * 256 + 12 }), x, shape);
      }
    });
  }

  it("every stories260K tensor, every format", { timeout: 120_000 }, async () => {
    const tensors = await storiesTensors(inject("sharedDir"));
    expect(tensors).toHaveLength(47);
    for (const format of BNB_FORMATS) for (const t of tensors) await expectGpuEqualsCpu(quantizer(format), t.values, t.shape);
  });

  it("reports NaN and Inf weights as the CPU does", async () => {
    const shape = { rows: 5, cols: 70 };
    const x = messyWeights(shape, 4);
    x[10] = 0.5;
    x[200] = -Infinity;
    x[201] = NaN;
    for (const format of BNB_FORMATS) {
      let cpu: Error | undefined;
      try {
        format.encode(x, shape, { tensorName: "w" });
      } catch (e) {
        cpu = e as Error;
      }
      const gpu = await quantizer(format, { maxChunkBytes: 512 })
        .encode(x, shape, { tensorName: "w" })
        .then(() => undefined, (e: unknown) => e as Error);
      expect(gpu?.message, format.id).toBe(cpu!.message);
      expect(gpu).toMatchObject({ problem: "non-finite", row: 2, col: 60, count: 2 });
    }
  });
});
