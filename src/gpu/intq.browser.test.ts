/**
 * shaders/intq.wgsl on real WebGPU: for every plain integer format (8/4/3/2 bits, symmetric and asymmetric,
 * per tensor, per channel, groups of 32/64/128), the bytes of the CPU reference src/quant/intq.ts and the
 * float32 bits of its decoder; on random tensors (zero rows, outliers, subnormal scales, one-signed groups)
 * streamed whole and in small chunks, and on every stories260K tensor the format takes. Bad input fails
 * with the CPU's errors.
 */
import { describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { gpuQuantizerFor } from "./quantizer.ts";
import { intGpuQuantizer } from "./intq.ts";
import type { ChunkOptions } from "./kernel-chunks.ts";
import { PLAIN_FORMATS } from "../quant/intq.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { normal, rng } from "../../test/random.ts";
import { bitsToF32, f16BitsToF32, f32Bits } from "../formats/float-bits.ts";
import { expectGpuEqualsCpu, storiesTensors } from "../../test/gpu-quantizer-compare.ts";

const labDevice = useLabDevice();

function quantizer(format: QuantFormat, options: ChunkOptions = {}) {
  const q = intGpuQuantizer(labDevice(), format, options);
  if (!q) throw new Error(`no GPU kernel for ${format.id}`);
  return q;
}

/**
 * Weights with what makes integer quantization interesting: whole zero rows, a zero group, groups of one
 * sign, outliers, groups of tiny values (subnormal fp16 scales) and float32 subnormals, -0.
 */
function messyWeights({ rows, cols }: MatrixShape, seed: number): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(rows * cols);
  const bits = new Uint32Array(x.buffer);
  for (let r = 0; r < rows; r++) {
    const kind = r % 6;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const v = normal(random);
      if (kind === 1) x[i] = 0; // a zero row
      else if (kind === 2) x[i] = Math.abs(v) * (c < 32 ? 1 : 0.01); // positive only
      else if (kind === 3) x[i] = -Math.abs(v) * 1e-6; // negative and tiny: subnormal fp16 scales
      else if (kind === 4 && random() < 0.3) bits[i] = (random() < 0.5 ? 0x80000000 : 0) | Math.floor(random() * 0x7fffff); // f32 subnormals and +-0
      else x[i] = v * (random() < 0.01 ? 100 : 1) * (c < 32 && r % 5 === 0 ? 0 : 1);
    }
  }
  return x;
}

const idOf = (f: QuantFormat) => f.id;

describe("GPU plain integer formats equal the CPU reference", () => {
  it("registers a kernel for every plain format", () => {
    expect(PLAIN_FORMATS).toHaveLength(40);
    for (const f of PLAIN_FORMATS) expect(gpuQuantizerFor(labDevice(), f)?.format, f.id).toBe(f);
  });

  for (const format of PLAIN_FORMATS) {
    it(`${idOf(format)}: random tensors, whole and in small chunks`, async () => {
      const shapes: MatrixShape[] = [
        { rows: 1, cols: 128 },
        { rows: 12, cols: 256 },
        { rows: 7, cols: 384 },
      ];
      if (format.blockWeights === 0) shapes.push({ rows: 1, cols: 1 }, { rows: 6, cols: 7 }, { rows: 13, cols: 33 }, { rows: 3, cols: 3000 });
      for (const [k, shape] of shapes.entries()) {
        const x = messyWeights(shape, k * 101 + format.id.length);
        await expectGpuEqualsCpu(quantizer(format), x, shape);
        await expectGpuEqualsCpu(quantizer(format, { maxChunkBytes: 2 * shape.cols * 4 + 4 }), x, shape);
      }
    });
  }

  it("scales on and next to fp16 steps: largest weights of k * s and one float32 step either side", async () => {
    // One group of 32 per (fp16 scale s, k, offset): the scale search must find the same fp16 as the CPU
    // where range / k sits on an fp16 value or just beside it.
    const random = rng(99);
    const values: number[] = [];
    for (let h = 1; h < 0x7bff; h += 97) {
      for (const k of [1, 3, 7, 15, 127, 255]) {
        for (const step of [-1, 0, 1]) {
          const top = bitsToF32(f32Bits(f16BitsToF32(h) * k) + step);
          if (!(top > 0) || top > 65504) continue;
          values.push(top, ...Array.from({ length: 31 }, () => (random() * 2 - 1) * top));
        }
      }
    }
    const shape = { rows: values.length / 32, cols: 32 };
    const x = new Float32Array(values);
    for (const id of ["int8-g32", "int4-g32", "int3-g32", "int2-g32", "int8-asym-g32", "int4-asym-g32", "int2-asym-g32"]) {
      const format = PLAIN_FORMATS.find((f) => f.id === id)!;
      await expectGpuEqualsCpu(quantizer(format), x, shape);
    }
  });

  // Every bit width, both kinds and every granularity that rows of 64 or 172 allow (g128 takes neither).
  const storiesFormats = ["int8-channel", "int8-asym-tensor", "int4-g32", "int4-asym-g64", "int3-g32", "int3-asym-channel", "int2-g64", "int2-asym-tensor", "int4-tensor"];

  it("every stories260K tensor each of several formats takes", { timeout: 120_000 }, async () => {
    const tensors = await storiesTensors(inject("sharedDir"));
    let checked = 0;
    for (const format of PLAIN_FORMATS.filter((f) => storiesFormats.includes(f.id))) {
      for (const t of tensors) {
        if (!format.checkRowLength(t.shape.cols).ok) continue;
        await expectGpuEqualsCpu(quantizer(format), t.values, t.shape);
        checked++;
      }
    }
    // Per-tensor and per-channel formats take all 47 tensors; groups skip the 5 of rows of 172.
    expect(checked).toBe(5 * 47 + 4 * 42);
  });
});

describe("GPU plain integer formats reject what the CPU rejects, with its message", () => {
  async function errors(format: QuantFormat, x: Float32Array, shape: MatrixShape) {
    const cpu = (() => {
      try {
        format.encode(x, shape, { tensorName: "w" });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    const gpu = await quantizer(format, { maxChunkBytes: 1024 })
      .encode(x, shape, { tensorName: "w" })
      .then(() => undefined, (e: unknown) => e as Error);
    return { cpu, gpu };
  }

  it("NaN and Inf weights", async () => {
    const shape = { rows: 6, cols: 128 };
    const x = messyWeights(shape, 5);
    x[300] = NaN;
    x[700] = Infinity;
    for (const format of PLAIN_FORMATS) {
      const { cpu, gpu } = await errors(format, x, shape);
      expect(gpu?.message, format.id).toBe(cpu!.message);
      expect(gpu).toMatchObject({ problem: "non-finite", row: 2, col: 44, count: 2 });
    }
  });

  it("scales past the fp16 range", async () => {
    const shape = { rows: 2, cols: 128 };
    const x = messyWeights(shape, 6);
    x[140] = 3e7; // 3e7 / 127 > 65504 for int8, and far more for fewer bits
    for (const format of PLAIN_FORMATS) {
      const { cpu, gpu } = await errors(format, x, shape);
      expect(cpu, format.id).toBeInstanceOf(RangeError);
      expect(gpu?.message, format.id).toBe(cpu!.message);
    }
  });

  it("rows that are not whole groups, naming the per-channel fallback", async () => {
    const shape = { rows: 2, cols: 100 };
    const x = messyWeights(shape, 7);
    for (const format of PLAIN_FORMATS.filter((f) => f.blockWeights > 0)) {
      const { cpu, gpu } = await errors(format, x, shape);
      expect(gpu?.message, format.id).toBe(cpu!.message);
      expect(gpu).toMatchObject({ problem: "row-length", fallback: format.id.replace(/g\d+$/, "channel") });
    }
  });
});
