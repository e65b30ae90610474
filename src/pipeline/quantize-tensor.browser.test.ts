/**
 * The pipeline on real WebGPU (Chromium's SwiftShader): formats with a kernel run and are measured on the
 * GPU, giving the CPU reference's bytes and metrics within src/gpu/metrics.ts's stated bound; formats
 * without one run on the CPU and say so; a device lost mid-run leaves complete results that equal the
 * CPU reference exactly.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { readSafetensors, writeSafetensors, type TensorInfo } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import { encodeFromF32 } from "../formats/dtypes.ts";
import { readTensorValues } from "../formats/model.ts";
import { requestLabDevice, type LabDevice } from "../gpu/device.ts";
import "../gpu/kernels.ts";
import { metricsTolerance } from "../gpu/metrics.ts";
import { gpuQuantizerFor } from "../gpu/quantizer.ts";
import type { QuantFormat } from "../quant/format.ts";
import { Metrics, errorMetrics, metricsBlockSize, type ErrorMetricsWithBlocks } from "../quant/metrics.ts";
import { getFormat } from "../quant/registry.ts";
import { gaussian } from "../../test/random.ts";
import { quantizeTensor, type FormatResult } from "./quantize-tensor.ts";

let dev: LabDevice;

async function gpuDevice(): Promise<LabDevice> {
  const { status, device } = await requestLabDevice();
  if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
  return device;
}

beforeAll(async () => {
  dev = await gpuDevice();
});
afterAll(() => dev?.device.destroy());

async function memoryTensor(name: string, shape: [number, number], values: Float32Array): Promise<TensorInfo> {
  const bytes = writeSafetensors([{ name, dtype: "F32", shape, data: encodeFromF32("F32", values) }]);
  return (await readSafetensors(new BlobSource(new Blob([bytes]), `${name}.safetensors`))).tensors[0]!;
}

async function storiesTensor(name: string): Promise<TensorInfo> {
  const url = `/@fs${inject("sharedDir")}/models/stories260K/model.safetensors`;
  const blob = await (await fetch(url)).blob();
  const file = await readSafetensors(new BlobSource(blob, "model.safetensors"));
  return file.tensors.find((t) => t.name === name)!;
}

function succeeded(r: FormatResult | undefined): Extract<FormatResult, { ok: true }> {
  if (!r?.ok) throw new Error(`expected a result, got ${JSON.stringify(r)}`);
  return r;
}

/** The CPU reference's running sums for x against y (what the GPU's bound is stated around). */
function exactSums(x: Float32Array, y: Float32Array, cols: number) {
  const m = new Metrics({ rows: x.length / cols, cols });
  m.add(x, y);
  return m.errorSums();
}

/** GPU metrics against the CPU reference: exact where src/gpu/metrics.ts says exact, else within its bound. */
function expectWithinBound(got: ErrorMetricsWithBlocks, x: Float32Array, y: Float32Array, cols: number, format: QuantFormat): void {
  const blockSize = metricsBlockSize(format);
  const want = errorMetrics(x, y, { rows: x.length / cols, cols }, blockSize);
  const tol = metricsTolerance(exactSums(x, y, cols), blockSize);
  expect(got.count, format.id).toBe(want.count);
  expect(got.maxAbsErr, format.id).toBe(want.maxAbsErr);
  expect(got.maxAbsErrAt, format.id).toEqual(want.maxAbsErrAt);
  expect(Math.abs(got.mse - want.mse), format.id).toBeLessThanOrEqual(tol.mse);
  expect(Math.abs(got.snrDb - want.snrDb), format.id).toBeLessThanOrEqual(tol.snrDb);
  expect(Math.abs(got.cosine - want.cosine), format.id).toBeLessThanOrEqual(tol.cosine);
  expect(got.blocks.maxAbs, format.id).toEqual(want.blocks.maxAbs);
  for (let b = 0; b < want.blocks.mse.length; b++) {
    expect(Math.abs(got.blocks.mse[b]! - want.blocks.mse[b]!), `${format.id} block ${b}`).toBeLessThanOrEqual(tol.blockMse(want.blocks.mse[b]!));
  }
}

const FORMATS = ["q8_0", "q4_0", "q5_1", "q4_K", "q6_K", "int4-g128", "int8-channel", "int4-asym-tensor", "nf4", "f16", "fp8-e4m3"];

describe("quantizeTensor on WebGPU", () => {
  it("formats with a kernel run and are measured on the GPU: the CPU's bytes, its metrics within the stated bound", async () => {
    const cols = 512;
    const x = gaussian(48 * cols, 0.02, 11);
    x[5 * cols + 3] = 0.5; // an outlier
    x.fill(0, 7 * cols, 8 * cols); // an all-zero row
    const tensor = await memoryTensor("random.weight", [48, cols], x);
    const formats = FORMATS.map(getFormat);
    const run = await quantizeTensor(tensor, formats, { device: dev, keepBytes: true });
    let onGpu = 0;
    for (const [i, format] of formats.entries()) {
      const r = succeeded(run.results[i]);
      const q = format.encode(x, run.shape);
      expect(r.bytes, format.id).toEqual(q);
      const kernel = gpuQuantizerFor(dev, format);
      kernel?.destroy();
      if (kernel) {
        onGpu++;
        expect(r.ranOn, format.id).toBe("gpu");
        expect(r.why, format.id).toBeUndefined();
        expectWithinBound(r.metrics, x, format.decode(q, run.shape), cols, format);
      } else {
        expect(r.ranOn, format.id).toBe("cpu");
        expect(r.why, format.id).toBe(`no WGSL kernel for ${format.id} yet`);
        expect(r.metrics, format.id).toEqual(errorMetrics(x, format.decode(q, run.shape), run.shape, metricsBlockSize(format)));
      }
    }
    // The ggml legacy kernels are registered at least.
    expect(onGpu).toBeGreaterThanOrEqual(2);
  });

  it("a real stories260K tensor streamed in chunks through the GPU", async () => {
    const tensor = await storiesTensor("model.layers.2.mlp.up_proj.weight"); // 172 x 64
    const x = await readTensorValues(tensor);
    const formats = ["q8_0", "q4_1", "q5_0"].map(getFormat);
    const run = await quantizeTensor(tensor, formats, { device: dev, keepBytes: true, chunkBytes: 40 * 64 * 4 });
    for (const [i, format] of formats.entries()) {
      const r = succeeded(run.results[i]);
      const q = format.encode(x, run.shape);
      expect(r.bytes, format.id).toEqual(q);
      expect(r.ranOn, format.id).toBe("gpu");
      expectWithinBound(r.metrics, x, format.decode(q, run.shape), 64, format);
    }
  });

  it("a device lost mid-run: every format completes, with exactly the CPU reference's bytes and metrics", async () => {
    const doomed = await gpuDevice();
    const cols = 256;
    const x = gaussian(64 * cols, 0.05, 12);
    const tensor = await memoryTensor("doomed.weight", [64, cols], x);
    const formats = ["q8_0", "q4_0", "q4_K", "int4-g64"].map(getFormat);
    let pieces = 0;
    const run = await quantizeTensor(tensor, formats, {
      device: doomed,
      keepBytes: true,
      // 8 rows a chunk: formats take turns chunk by chunk; the device goes after a few.
      chunkBytes: 8 * cols * 4,
      onProgress: () => {
        if (++pieces === 5) doomed.device.destroy();
      },
    });
    for (const [i, format] of formats.entries()) {
      const r = succeeded(run.results[i]);
      const q = format.encode(x, run.shape);
      expect(r.bytes, format.id).toEqual(q);
      // Measured again on the CPU, or on the CPU from the start: the reference's figures exactly.
      expect(r.metrics, format.id).toEqual(errorMetrics(x, format.decode(q, run.shape), run.shape, metricsBlockSize(format)));
      expect(r.ranOn, format.id).toBe("cpu");
      const kernel = gpuQuantizerFor(dev, format);
      kernel?.destroy();
      if (kernel) expect(r.why, format.id).toMatch(/the GPU device was lost .* after \d+ of 64 rows/);
    }
    // The formats that had measured rows on the GPU ran again over the whole tensor.
    expect(run.results.some((r) => r.ok && /whole tensor ran again on the CPU reference/.test(r.why ?? ""))).toBe(true);
  });
});
