/**
 * shaders/metrics.wgsl on real WebGPU against the CPU reference src/quant/metrics.ts: counts, max |error|,
 * its position and every block's max |error| identical; the sums within metricsTolerance() (stated in
 * src/gpu/metrics.ts). On random data and on stories260K tensors quantized with several formats.
 */
import { describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import type { LabDevice } from "./device.ts";
import { gpuErrorMetrics, metricsTolerance } from "./metrics.ts";
import { Metrics, metricsBlockSize, type ErrorMetricsWithBlocks } from "../quant/metrics.ts";
import type { MatrixShape } from "../quant/format.ts";
import { getFormat } from "../quant/registry.ts";
import { storiesTensors } from "../../test/gpu-quantizer-compare.ts";
import { normal, rng } from "../../test/random.ts";

const labDevice = useLabDevice();

/** Runs both paths and holds the GPU to the CPU: exact fields equal, sums within the stated bound. */
async function compare(
  x: Float32Array,
  y: Float32Array,
  shape: MatrixShape,
  blockSize: number,
  opts: { maxChunkBytes?: number; device?: LabDevice } = {},
): Promise<{ gpu: ErrorMetricsWithBlocks; cpu: ErrorMetricsWithBlocks }> {
  const reference = new Metrics(shape, { blockSize });
  reference.add(x, y);
  const cpu = reference.result();
  const gpu = await gpuErrorMetrics(opts.device ?? labDevice(), x, y, shape, { blockSize, maxChunkBytes: opts.maxChunkBytes });
  const tol = metricsTolerance(reference.errorSums(), blockSize);

  expect({ count: gpu.count, nonFinite: gpu.nonFinite, firstNonFinite: gpu.firstNonFinite }).toEqual({
    count: cpu.count,
    nonFinite: cpu.nonFinite,
    firstNonFinite: cpu.firstNonFinite,
  });
  expect(gpu.maxAbsErr).toBe(cpu.maxAbsErr);
  expect(gpu.maxAbsErrAt).toEqual(cpu.maxAbsErrAt);
  expect(gpu.blocks.maxAbs).toEqual(cpu.blocks.maxAbs);
  expect({ ...gpu.blocks, mse: undefined, maxAbs: undefined }).toEqual({ ...cpu.blocks, mse: undefined, maxAbs: undefined });
  if (!Number.isFinite(cpu.snrDb)) {
    // +Infinity: an exact copy (decided exactly, from max |error|); -Infinity: x is all zeros.
    expect(gpu.snrDb).toBe(cpu.snrDb);
    if (cpu.snrDb > 0) expect(gpu.mse).toBe(0);
  } else {
    expect(Math.abs(gpu.mse - cpu.mse), `mse ${gpu.mse} vs ${cpu.mse}`).toBeLessThanOrEqual(tol.mse);
    expect(Math.abs(gpu.snrDb - cpu.snrDb), `snr ${gpu.snrDb} vs ${cpu.snrDb}`).toBeLessThanOrEqual(tol.snrDb);
  }
  expect(Math.abs(gpu.cosine - cpu.cosine), `cosine ${gpu.cosine} vs ${cpu.cosine}`).toBeLessThanOrEqual(tol.cosine);
  for (let b = 0; b < cpu.blocks.mse.length; b++) {
    const want = cpu.blocks.mse[b]!;
    const got = gpu.blocks.mse[b]!;
    if (want === Infinity || want === 0) expect(got, `block ${b}`).toBe(want);
    else expect(Math.abs(got - want), `block ${b}: ${got} vs ${want}`).toBeLessThanOrEqual(tol.blockMse(want));
  }
  return { gpu, cpu };
}

/** Gaussian weights and a coarse rounding of them (an error of up to 1/16), with a few exact blocks. */
function pair(n: number, seed: number): { x: Float32Array; y: Float32Array } {
  const random = rng(seed);
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = normal(random) * (random() < 0.002 ? 50 : 1);
    y[i] = i % 1000 < 40 ? x[i]! : Math.round(x[i]! * 8) / 8;
  }
  return { x, y };
}

describe("GPU metrics on random data", () => {
  const cases: [rows: number, cols: number, blockSize: number][] = [
    [1, 1, 32],
    [1, 31, 32],
    [3, 100, 32],
    [17, 64, 64],
    [5, 300, 256],
    [64, 257, 1],
    [300, 1000, 32], // 9,400 blocks: 37 workgroups
    [1, 70_000, 128],
  ];
  for (const [rows, cols, B] of cases) {
    it(`matches the CPU on ${rows} x ${cols}, blocks of ${B}`, async () => {
      const { x, y } = pair(rows * cols, rows * 31 + cols);
      const { cpu } = await compare(x, y, { rows, cols }, B, { maxChunkBytes: 4096 * 4 });
      expect(cpu.count).toBe(rows * cols);
    });
  }

  it("reports an exact copy as exact, and all-zero rows as zeros", async () => {
    const { x } = pair(4 * 96, 3);
    const { gpu } = await compare(x, x.slice(), { rows: 4, cols: 96 }, 32);
    expect(gpu).toMatchObject({ mse: 0, maxAbsErr: 0, maxAbsErrAt: { row: 0, col: 0 }, snrDb: Infinity, cosine: 1 });
    const zeros = await compare(new Float32Array(3 * 64), new Float32Array(3 * 64), { rows: 3, cols: 64 }, 32);
    expect(zeros.gpu).toMatchObject({ mse: 0, snrDb: Infinity, cosine: 1 });
  });

  it("counts NaN and Inf pairs, marks their blocks, and keeps them out of the sums", async () => {
    const { x, y } = pair(8 * 64, 5);
    x[70] = NaN;
    y[300] = Infinity; // an f16 cast overflowing
    y[301] = -Infinity;
    const { gpu } = await compare(x, y, { rows: 8, cols: 64 }, 32);
    expect(gpu).toMatchObject({ nonFinite: 3, firstNonFinite: { row: 1, col: 6 } });
    expect(gpu.blocks.mse[2]).toBe(Infinity);
    expect(Number.isFinite(gpu.mse)).toBe(true);
  });

  it("keeps the first of equal largest errors, across workgroups and chunks", async () => {
    const x = new Float32Array(600 * 64);
    const y = new Float32Array(600 * 64);
    for (const at of [38_000, 20_001, 20_000, 9_000]) y[at] = 1;
    const { gpu } = await compare(x, y, { rows: 600, cols: 64 }, 32, { maxChunkBytes: 64 * 4 * 100 });
    expect(gpu.maxAbsErrAt).toEqual({ row: 140, col: 40 }); // 9000 = 140 * 64 + 40
  });

  it("stays exact when f32 squares overflow (values near 1e20: measured on the CPU)", async () => {
    const { x, y } = pair(2 * 64, 9);
    x[5] = 1e20;
    y[5] = 1.5e20;
    const { gpu } = await compare(x, y, { rows: 2, cols: 64 }, 32);
    expect(Number.isFinite(gpu.mse)).toBe(true);
    expect(gpu.maxAbsErrAt).toEqual({ row: 0, col: 5 });
  });

  it("stays exact on subnormal and tiny values (a device that flushes them hands the chunk to the CPU)", async () => {
    const { x, y } = pair(6 * 64, 12);
    const bits = new Uint32Array(x.buffer);
    // Row 1: subnormal weights quantized to 0; row 3: weights near 2^-110 whose errors are subnormal.
    for (let c = 0; c < 64; c++) {
      bits[64 + c] = 1 + c * 1000;
      y[64 + c] = 0;
      x[192 + c] = (1 + c / 64) * 2 ** -110;
      y[192 + c] = 2 ** -110;
    }
    for (let i = 0; i < x.length; i++) if (i < 64 || (i >= 128 && i < 192) || i >= 256) y[i] = x[i]!; // exact elsewhere
    const { gpu } = await compare(x, y, { rows: 6, cols: 64 }, 32);
    expect(gpu.maxAbsErr).toBeLessThan(2 ** -100);
    expect(gpu.blocks.maxAbs[2]).toBeGreaterThan(0);
  });

  it("uses a 2-D grid when the workgroups exceed the per-dimension limit", async () => {
    const dev = labDevice();
    const narrow: LabDevice = { ...dev, info: { ...dev.info, limits: { ...dev.info.limits, maxComputeWorkgroupsPerDimension: 3 } } };
    const narrowDevice = new Proxy(dev.device, {
      get: (target, key) => {
        if (key === "limits") return { maxComputeWorkgroupsPerDimension: 3 };
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { x, y } = pair(40 * 256 * 32 - 32, 4);
    await compare(x, y, { rows: 40 * 256 - 1, cols: 32 }, 32, { device: { ...narrow, device: narrowDevice } });
  });
});

describe("GPU metrics on stories260K quantized with several formats", () => {
  it("matches the CPU on every 2-D tensor for q8_0, q4_0, int4-g32, nf4 and fp8-e4m3", async () => {
    const matrices = (await storiesTensors(inject("sharedDir"))).filter((t) => t.shape.rows > 1);
    expect(matrices).toHaveLength(36);
    let measured = 0;
    let expected = 0;
    for (const id of ["q8_0", "q4_0", "int4-g32", "nf4", "fp8-e4m3"]) {
      const format = getFormat(id);
      for (const { shape, values: x } of matrices) {
        if (!format.checkRowLength(shape.cols).ok) continue;
        expected++;
        const y = format.decode(format.encode(x, shape), shape);
        const { gpu } = await compare(x, y, shape, metricsBlockSize(format), { maxChunkBytes: 16 * 1024 });
        expect(gpu.snrDb).toBeGreaterThan(10);
        measured++;
      }
    }
    // The block formats skip the down projections (rows of 172); nf4 and fp8 take every matrix.
    expect(measured).toBe(expected);
    expect(measured).toBeGreaterThan(3 * matrices.length);
  });
});
