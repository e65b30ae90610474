/**
 * GpuQuantizer.roundTrip on real WebGPU, for every kernel family: the decoded buffer holds the float32 bits
 * of decode(encode(x)) (CPU reference and the GPU's own encode/decode), the bytes are encode's, the CPU
 * fallbacks (rows and blocks the kernels leave to the CPU reference) land in the decoded buffer, errors are
 * encode's, metrics measured from the buffers equal the old upload-again path's, and no buffer is left
 * behind (every createBuffer matched by a destroy, `decoded` included once the caller frees it).
 */
import { describe, expect, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { firstBitsDiff, firstByteDiff } from "../../test/gpu-quantizer-compare.ts";
import { gaussian, normal, rng } from "../../test/random.ts";
import { getFormat } from "../quant/registry.ts";
import { isQuantInputError } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape } from "../quant/format.ts";
import { readBack, uploadStorage } from "./buffers.ts";
import { GpuMetrics } from "./metrics.ts";
import { gpuQuantizerFor, uploadWeights, type GpuQuantizer } from "./quantizer.ts";
import "./kernels.ts";

const labDevice = useLabDevice();

/** Counts the device's buffers made and destroyed while `body` runs. */
async function countingBuffers<T>(device: GPUDevice, body: () => Promise<T>): Promise<{ result: T; created: number; destroyed: number }> {
  const create = device.createBuffer;
  let created = 0;
  let destroyed = 0;
  device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor): GPUBuffer {
    const buffer = create.call(this, descriptor);
    created++;
    const destroy = buffer.destroy;
    buffer.destroy = function (this: GPUBuffer) {
      destroyed++;
      destroy.call(this);
    };
    return buffer;
  };
  try {
    return { result: await body(), created, destroyed };
  } finally {
    device.createBuffer = create;
  }
}

/** Gaussian rows at a few scales, with zeros and, where `tiny`, a row of subnormal-range weights (CPU fallbacks). */
function weights(shape: MatrixShape, seed: number, tiny: boolean): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(shape.rows * shape.cols);
  for (let r = 0; r < shape.rows; r++) {
    const scale = [0.02, 1, 0.3, 1e-4][r % 4]!;
    for (let c = 0; c < shape.cols; c++) x[r * shape.cols + c] = r % 5 === 4 ? 0 : scale * normal(random);
  }
  if (tiny && shape.rows > 1) for (let c = 0; c < shape.cols; c++) x[shape.cols + c] = 1e-41 * normal(random);
  return x;
}

interface Case {
  format: string;
  shape: MatrixShape;
  imatrix?: boolean;
  /** Add a row of subnormal-range weights (the kernels leave such rows or blocks to the CPU). */
  tiny?: boolean;
}

/** At least one format of every family, the importance-weighted encoders, per-tensor and -dq formats, odd shapes. */
const CASES: Case[] = [
  { format: "q4_0", shape: { rows: 6, cols: 96 }, tiny: true },
  { format: "q4_1", shape: { rows: 5, cols: 64 }, imatrix: true, tiny: true },
  { format: "q5_0", shape: { rows: 3, cols: 160 } },
  { format: "q8_0", shape: { rows: 7, cols: 32 } },
  { format: "q8_K", shape: { rows: 4, cols: 256 }, tiny: true },
  { format: "q2_K", shape: { rows: 3, cols: 256 } },
  { format: "q3_K", shape: { rows: 3, cols: 512 }, imatrix: true },
  { format: "q4_K", shape: { rows: 4, cols: 256 }, tiny: true },
  { format: "q6_K", shape: { rows: 5, cols: 256 }, imatrix: true },
  { format: "int8", shape: { rows: 5, cols: 100 } },
  { format: "int4-g32", shape: { rows: 6, cols: 96 } },
  { format: "int4-asym-g32", shape: { rows: 3, cols: 64 } },
  { format: "int3-g64", shape: { rows: 5, cols: 128 } },
  { format: "int8-channel", shape: { rows: 7, cols: 33 } },
  { format: "int4-tensor", shape: { rows: 9, cols: 40 } },
  { format: "nf4", shape: { rows: 3, cols: 100 }, tiny: true },
  { format: "nf4-dq", shape: { rows: 20, cols: 300 } },
  { format: "fp4", shape: { rows: 4, cols: 64 } },
  { format: "llm-int8", shape: { rows: 5, cols: 48 }, tiny: true },
  { format: "llm-int8", shape: { rows: 3, cols: 30 } },
  { format: "f16", shape: { rows: 3, cols: 37 } },
  { format: "bf16", shape: { rows: 2, cols: 64 } },
  { format: "fp8-e4m3", shape: { rows: 5, cols: 21 } },
];

function quantizer(id: string): GpuQuantizer {
  const gpu = gpuQuantizerFor(labDevice(), getFormat(id));
  if (!gpu) throw new Error(`no kernel for ${id}`);
  return gpu;
}

describe("roundTrip: encode and decode of weights already on the device", () => {
  for (const c of CASES) {
    const name = `${c.format}${c.imatrix ? "+imatrix" : ""} ${c.shape.rows}x${c.shape.cols}${c.tiny ? " with a subnormal row" : ""}`;
    it(`${name}: decode(encode(x)) bits and encode's bytes, every buffer freed`, async () => {
      const { device } = labDevice();
      const gpu = quantizer(c.format);
      const x = weights(c.shape, c.shape.rows * 1000 + c.shape.cols, c.tiny ?? false);
      const opts: EncodeOptions = c.imatrix ? { imatrix: gaussian(c.shape.cols, 1, 7).map(Math.exp) } : {};
      const cpuBytes = gpu.format.encode(x, c.shape, opts);
      const cpuValues = gpu.format.decode(cpuBytes, c.shape);
      const gpuValues = await gpu.decode(await gpu.encode(x, c.shape, opts), c.shape);
      expect(firstBitsDiff(gpuValues, cpuValues), "the GPU's encode + decode agree with the CPU").toBe(-1);

      const { result, created, destroyed } = await countingBuffers(device, async () => {
        const input = uploadWeights(device, x);
        const trip = await gpu.roundTrip(input, c.shape, { ...opts, bytes: true });
        const decoded = new Float32Array((await readBack(device, trip.decoded, x.length * 4)).buffer);
        input.buffer.destroy();
        trip.decoded.destroy();
        return { decoded, bytes: trip.bytes! };
      });
      expect(firstByteDiff(result.bytes, cpuBytes), "bytes").toBe(-1);
      expect(firstBitsDiff(result.decoded, cpuValues), "decoded bits").toBe(-1);
      expect(destroyed, `${created} buffers made`).toBe(created);
    });
  }

  it("without bytes asked for, returns none and the same decoded bits", async () => {
    const { device } = labDevice();
    for (const id of ["q4_K", "int4-g32", "nf4-dq", "llm-int8", "f16", "q5_1"]) {
      const gpu = quantizer(id);
      const shape = { rows: 4, cols: 256 };
      const x = weights(shape, 5, true);
      const input = uploadWeights(device, x);
      const trip = await gpu.roundTrip(input, shape);
      expect(trip.bytes, id).toBeUndefined();
      const decoded = new Float32Array((await readBack(device, trip.decoded, x.length * 4)).buffer);
      expect(firstBitsDiff(decoded, gpu.format.decode(gpu.format.encode(x, shape), shape)), id).toBe(-1);
      input.buffer.destroy();
      trip.decoded.destroy();
    }
  });

  it("NaN weights: encode's error, and nothing left allocated", async () => {
    const { device } = labDevice();
    for (const id of ["q4_0", "q6_K", "int4-g32", "int4-tensor", "nf4", "llm-int8", "bf16"]) {
      const gpu = quantizer(id);
      const shape = { rows: 3, cols: 256 };
      const x = weights(shape, 9, false);
      x[300] = NaN;
      const expected = (() => {
        try {
          gpu.format.encode(x, shape, { tensorName: "t" });
        } catch (e) {
          return e as Error;
        }
        throw new Error("the CPU reference accepted NaN");
      })();
      const { result, created, destroyed } = await countingBuffers(device, async () => {
        const input = uploadWeights(device, x);
        try {
          await gpu.roundTrip(input, shape, { tensorName: "t" });
          return undefined;
        } catch (e) {
          return e;
        } finally {
          input.buffer.destroy();
        }
      });
      expect(isQuantInputError(result), id).toBe(true);
      expect((result as Error).message, id).toBe(expected.message);
      expect(destroyed, `${id}: ${created} buffers made`).toBe(created);
    }
  });

  it("a cancelled round trip rejects with the abort and leaves nothing allocated", async () => {
    const { device } = labDevice();
    const gpu = quantizer("q4_K");
    const shape = { rows: 8, cols: 256 };
    const x = weights(shape, 3, false);
    const controller = new AbortController();
    const { result, created, destroyed } = await countingBuffers(device, async () => {
      const input = uploadWeights(device, x);
      const trip = gpu.roundTrip(input, shape, { signal: controller.signal, bytes: true });
      controller.abort();
      try {
        await trip;
        return undefined;
      } catch (e) {
        return e;
      } finally {
        input.buffer.destroy();
      }
    });
    expect((result as Error | undefined)?.name).toBe("AbortError");
    expect(destroyed, `${created} buffers made`).toBe(created);
  });

  it("metrics from the round trip's buffers equal metrics from x and y uploaded again (the old path)", async () => {
    const dev = labDevice();
    for (const id of ["q4_0", "q4_K", "int4-g128", "nf4"]) {
      const gpu = quantizer(id);
      const shape = { rows: 16, cols: 512 };
      const x = weights(shape, 21, false);
      const viaRoundTrip = await GpuMetrics.create(dev, shape);
      const input = uploadWeights(dev.device, x);
      const trip = await gpu.roundTrip(input, shape);
      await viaRoundTrip.add(input.buffer, trip.decoded, shape.rows);
      input.buffer.destroy();
      trip.decoded.destroy();

      const viaUpload = await GpuMetrics.create(dev, shape);
      const y = await gpu.decode(await gpu.encode(x, shape), shape);
      const xb = uploadStorage(dev.device, x, "x");
      const yb = uploadStorage(dev.device, y, "y");
      await viaUpload.add(xb, yb, shape.rows);
      xb.destroy();
      yb.destroy();
      expect(await viaRoundTrip.result(), id).toEqual(await viaUpload.result());
    }
  });
});
