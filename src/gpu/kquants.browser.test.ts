/**
 * shaders/kquants.wgsl on real WebGPU against llama.cpp's golden vectors (../shared/golden/ggml) and the
 * CPU reference (src/quant/ggml/q{2..6}_K.ts): encoded bytes equal, decoded float32 bits equal, for the
 * reference and the importance-weighted encoders. No tolerance anywhere.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { requestLabDevice, type LabDevice } from "./device.ts";
import { kquantGpuQuantizer, type KQuantGpuQuantizer } from "./kquants.ts";
import type { ChunkOptions } from "./kernel-chunks.ts";
import { gpuQuantizerFor, type GpuQuantizer } from "./quantizer.ts";
import { getFormat } from "../quant/registry.ts";
import { isQuantInputError, type QuantInputError } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { fetchGoldenCase, fetchGoldenManifest } from "../../test/ggml-golden-fetch.ts";
import { expectGpuEqualsCpu, firstBitsDiff, firstByteDiff } from "../../test/gpu-quantizer-compare.ts";
import { gaussian, normal, rng } from "../../test/random.ts";

const K_FORMATS = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"] as const;

let dev: LabDevice;

beforeAll(async () => {
  const { status, device } = await requestLabDevice();
  if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
  dev = device;
});

afterAll(() => dev?.device.destroy());

function quantizerOf(format: QuantFormat, opts: ChunkOptions = {}): KQuantGpuQuantizer {
  const q = kquantGpuQuantizer(dev, format, opts);
  if (!q) throw new Error(`no GPU quantizer for ${format.id}`);
  return q as KQuantGpuQuantizer;
}

describe("K-quant kernels on llama.cpp's golden vectors", async () => {
  const sharedDir = inject("sharedDir");
  const manifest = await fetchGoldenManifest(sharedDir);
  const entries = manifest.entries.filter((e) => (K_FORMATS as readonly string[]).includes(e.format));

  it("has every K-quant format in both variants", () => {
    for (const id of K_FORMATS) {
      for (const variant of ["ref", "imatrix"]) expect(entries.some((e) => e.format === id && e.variant === variant)).toBe(true);
    }
  });

  for (const entry of entries) {
    it(`${entry.format} ${entry.variant} ${entry.case}: GPU bytes = golden = CPU bytes, GPU decode = golden bits`, async () => {
      const golden = await fetchGoldenCase(sharedDir, entry);
      const format = getFormat(entry.format);
      const shape = { rows: entry.rows, cols: entry.cols };
      const opts = golden.imatrix ? { imatrix: golden.imatrix } : {};
      const gpu = quantizerOf(format);
      expect(firstByteDiff(await gpu.encode(golden.input, shape, opts), golden.quant), "GPU vs golden bytes").toBe(-1);
      expect(firstByteDiff(format.encode(golden.input, shape, opts), golden.quant), "CPU vs golden bytes").toBe(-1);
      const decoded = await gpu.decode(golden.quant, shape);
      const goldenValues = new Float32Array(golden.dequantBits.buffer, golden.dequantBits.byteOffset, golden.dequantBits.length);
      expect(firstBitsDiff(decoded, goldenValues), "GPU decode vs golden bits").toBe(-1);
    });
  }
});

/**
 * Rows that take the encoders down every path: Gaussian rows from 1e4 down to 1e-8 (fp16 super-block
 * scales underflow) and 1e-5 (subnormal fp16 scales), rows shifted to all-positive (min = 0), outliers,
 * +0 and -0 rows, constant rows, ReLU-like and zeroed sub-blocks, and f32-subnormal weights.
 */
function kquantRows(rows: number, cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(rows * cols);
  const kinds = 12;
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const kind = r % kinds;
    const std = [1, 0.02, 1e4, 1e-5, 1e-8, 0.3, 1, 0.05, 1, 1e-3, 2.5, 1e-20][kind]!;
    for (let i = 0; i < cols; i++) row[i] = std * normal(random);
    switch (kind) {
      case 5: // all positive: the min is 0
        for (let i = 0; i < cols; i++) row[i] = Math.abs(row[i]!) + 0.75;
        break;
      case 6: // outliers at ~20-1000x the std
        for (let k = 0; k < cols / 64; k++) row[Math.floor(random() * cols)] = (random() < 0.5 ? -1 : 1) * (20 + 980 * random());
        break;
      case 7: // ReLU-like: ~70% zeros
        for (let i = 0; i < cols; i++) row[i] = Math.max(0, row[i]! - 0.025);
        break;
      case 8: // zeroed 16- and 32-weight groups, and a -0 group
        for (let i = 0; i < cols; i++) if (((i >> 4) & 3) === 1 || ((i >> 5) & 7) === 5) row[i] = 0;
        for (let i = 96; i < 112; i++) row[i] = -0;
        break;
      case 11: // f32 subnormals mixed in
        for (let i = 0; i < cols; i += 3) row[i] = (random() - 0.5) * 2e-39;
        break;
    }
    if (r % 29 === 13) row.fill(0);
    if (r % 29 === 14) row.fill(-0);
    if (r % 31 === 3) row.fill(r % 2 === 0 ? 0.0123 : -7.5);
  }
  return x;
}

/** An importance vector like llama.cpp's: positive, spread over orders of magnitude, a few zeros. */
function importanceVector(cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const w = new Float32Array(cols);
  for (let i = 0; i < cols; i++) w[i] = random() < 0.02 ? 0 : Math.exp(normal(random));
  return w;
}

describe("K-quant kernels against the CPU reference on random tensors", () => {
  // Odd block counts leave the last workgroup (two super-blocks) half empty.
  const shapes: MatrixShape[] = [
    { rows: 301, cols: 256 },
    { rows: 97, cols: 1024 },
    { rows: 36, cols: 4096 },
    { rows: 3, cols: 768 },
  ];
  for (const id of K_FORMATS) {
    for (const variant of ["ref", "imatrix"] as const) {
      it(`${id} ${variant}: GPU bytes and decode bits = CPU`, async () => {
        const format = getFormat(id);
        const gpu = quantizerOf(format);
        for (const [i, shape] of shapes.entries()) {
          const x = kquantRows(shape.rows, shape.cols, 1000 * i + 17);
          const opts: EncodeOptions = variant === "imatrix" ? { imatrix: importanceVector(shape.cols, i + 5) } : {};
          await expectGpuEqualsCpu(gpu, x, shape, opts);
        }
      });
    }
  }

  it("streams a tensor through many small chunks with the same bytes", async () => {
    const shape = { rows: 45, cols: 512 };
    const x = kquantRows(shape.rows, shape.cols, 99);
    for (const id of K_FORMATS) {
      // 2 KiB of input per dispatch: a row of 512 floats, so each chunk holds one row of two super-blocks.
      await expectGpuEqualsCpu(quantizerOf(getFormat(id), { maxChunkBytes: 2048 }), x, shape);
      await expectGpuEqualsCpu(quantizerOf(getFormat(id), { maxChunkBytes: 5000 }), x, shape, { imatrix: importanceVector(512, 3) });
    }
  });
});

describe("blocks the kernels leave to the CPU (subnormal arithmetic, which this adapter flushes)", () => {
  it("keeps ordinary weights on the GPU", async () => {
    const shape = { rows: 32, cols: 1024 };
    const x = gaussian(shape.rows * shape.cols, 0.02, 11);
    for (const id of K_FORMATS) {
      for (const imatrix of [undefined, importanceVector(shape.cols, 12)]) {
        const gpu = quantizerOf(getFormat(id));
        await expectGpuEqualsCpu(gpu, x, shape, imatrix ? { imatrix } : {});
        expect(gpu.blockCounts, `${id} ${imatrix ? "imatrix" : "ref"}`).toEqual({ gpu: 128, cpu: 0 });
      }
    }
  });

  it("sends blocks of tiny or subnormal weights to the CPU, with the CPU's bytes", async () => {
    const shape = { rows: 4, cols: 512 };
    const x = gaussian(shape.rows * shape.cols, 1e-8, 13);
    x.fill(0, 512, 1024); // an all-zero row needs no arithmetic: it stays on the GPU
    x[3 * 512 + 7] = 3e-39; // a subnormal in the last row, whose other weights are ordinary
    for (let i = 3 * 512; i < 4 * 512; i++) if (i !== 3 * 512 + 7) x[i] = 0.5 * Math.sin(i);
    for (const id of K_FORMATS) {
      const gpu = quantizerOf(getFormat(id));
      await expectGpuEqualsCpu(gpu, x, shape);
      expect(gpu.blockCounts, id).toEqual({ gpu: 3, cpu: 5 });
    }
  });
});

describe("K-quant kernels reject what the CPU rejects, with the same error", () => {
  async function errorOf(run: () => unknown): Promise<QuantInputError> {
    try {
      await run();
    } catch (e) {
      if (isQuantInputError(e)) return e;
      throw e;
    }
    throw new Error("expected a QuantInputError");
  }

  it("reports the first NaN or infinite weight (row, column, count) as the CPU does", async () => {
    const shape = { rows: 9, cols: 512 };
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = kquantRows(shape.rows, shape.cols, 7);
      x[5 * 512 + 300] = bad;
      x[8 * 512 + 2] = NaN;
      for (const id of K_FORMATS) {
        const format = getFormat(id);
        const opts = { tensorName: "blk.0.ffn_up.weight" };
        const gpuError = await errorOf(() => quantizerOf(format).encode(x, shape, opts));
        const cpuError = await errorOf(() => format.encode(x, shape, opts));
        expect(gpuError.problem).toBe("non-finite");
        expect({ row: gpuError.row, col: gpuError.col, count: gpuError.count, message: gpuError.message }).toEqual({
          row: cpuError.row,
          col: cpuError.col,
          count: cpuError.count,
          message: cpuError.message,
        });
        expect(gpuError.row).toBe(5);
        expect(gpuError.col).toBe(300);
      }
    }
  });

  it("rejects rows that are not whole super-blocks, naming the tensor and llama.cpp's fallback", async () => {
    const x = new Float32Array(2 * 320);
    for (const id of K_FORMATS) {
      const format = getFormat(id);
      const gpuError = await errorOf(() => quantizerOf(format).encode(x, { rows: 2, cols: 320 }, { tensorName: "output.weight" }));
      const cpuError = await errorOf(() => format.encode(x, { rows: 2, cols: 320 }, { tensorName: "output.weight" }));
      expect(gpuError.problem).toBe("row-length");
      expect(gpuError.message).toBe(cpuError.message);
      expect(gpuError.message).toContain("output.weight");
      expect(gpuError.fallback).toBe(cpuError.fallback);
    }
  });
});

describe("gpuQuantizerFor", () => {
  it("returns the K-quant kernels for q2_K..q6_K", () => {
    for (const id of K_FORMATS) expect(gpuQuantizerFor(dev, getFormat(id))?.format.id).toBe(id);
  });
  it("does not claim other formats", () => {
    expect(kquantGpuQuantizer(dev, getFormat("q4_0"))).toBeUndefined();
  });
});
