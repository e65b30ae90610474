/**
 * shaders/stats.wgsl on real WebGPU against the CPU reference (src/quant/stats.ts), through the real
 * reading path: safetensors bytes -> BlobSource -> readSafetensors/openModel -> readTensorRows.
 * Counts, min and max must be identical; mean and std within statsTolerance() (stated in stats.ts).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { requestLabDevice, type LabDevice } from "./device.ts";
import { gpuTensorStats, PER_THREAD, statsTolerance, WORKGROUP_SIZE, type GpuStatsOptions } from "./stats.ts";
import { tensorStats, type TensorStatistics } from "../quant/stats.ts";
import { BlobSource } from "../formats/source.ts";
import { readSafetensors, writeSafetensors, type TensorInfo } from "../formats/safetensors.ts";
import { openModel, readTensorRows } from "../formats/model.ts";
import { normal, rng } from "../../test/random.ts";

const TILE = WORKGROUP_SIZE * PER_THREAD;

let dev: LabDevice;

beforeAll(async () => {
  const { status, device } = await requestLabDevice();
  if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
  dev = device;
});

afterAll(() => dev?.device.destroy());


/** Gaussian values with a sprinkling of NaN (two payloads), +/-Inf, +/-0, subnormals and outliers. */
function messyValues(n: number, seed: number, opts: { mean?: number; std?: number } = {}): Float32Array {
  const random = rng(seed);
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const r = random();
    if (r < 0.01) out[i] = NaN;
    else if (r < 0.015) bits[i] = 0xffc00001; // a negative NaN with a payload
    else if (r < 0.02) out[i] = Infinity;
    else if (r < 0.025) out[i] = -Infinity;
    else if (r < 0.04) out[i] = 0;
    else if (r < 0.05) out[i] = -0;
    else if (r < 0.07) bits[i] = (random() < 0.5 ? 0x80000000 : 0) | Math.floor(random() * 0x7fffff) + 1; // subnormal
    else if (r < 0.075) out[i] = normal(random) * 1000; // outlier
    else out[i] = (opts.mean ?? 0) + (opts.std ?? 1) * normal(random);
  }
  return out;
}

/** One F32 tensor of shape [rows, cols] in a safetensors Blob, read back as the reader sees it. */
async function f32Tensor(values: Float32Array, cols: number): Promise<TensorInfo> {
  const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bytes = writeSafetensors([{ name: "t", dtype: "F32", shape: [values.length / cols, cols], data }]);
  const file = await readSafetensors(new BlobSource(new Blob([bytes]), "messy.safetensors"));
  return file.tensors[0]!;
}

async function* rowsOf(t: TensorInfo, chunkBytes?: number): AsyncIterable<Float32Array> {
  for await (const chunk of readTensorRows(t, chunkBytes ? { chunkBytes } : {})) yield chunk.values;
}

function expectSameStats(gpu: TensorStatistics, cpu: TensorStatistics): void {
  expect({ count: gpu.count, nan: gpu.nan, inf: gpu.inf, zeros: gpu.zeros }).toEqual({
    count: cpu.count,
    nan: cpu.nan,
    inf: cpu.inf,
    zeros: cpu.zeros,
  });
  expect(gpu.min).toBe(cpu.min);
  expect(gpu.max).toBe(cpu.max);
  expect(gpu.first).toEqual(cpu.first);
  if (Number.isNaN(cpu.mean)) {
    expect(gpu.mean).toBeNaN();
    expect(gpu.std).toBeNaN();
    return;
  }
  const tol = statsTolerance(cpu);
  expect(Math.abs(gpu.mean - cpu.mean), `mean ${gpu.mean} vs ${cpu.mean}`).toBeLessThanOrEqual(tol.mean);
  expect(Math.abs(gpu.std - cpu.std), `std ${gpu.std} vs ${cpu.std}`).toBeLessThanOrEqual(tol.std);
}

async function compare(values: Float32Array, cols: number, opts: GpuStatsOptions & { chunkBytes?: number } = {}, device = dev) {
  const t = await f32Tensor(values, cols);
  const cpu = await tensorStats(t);
  const gpu = await gpuTensorStats(device, rowsOf(t, opts.chunkBytes), { ...opts, expectedValues: t.params });
  expectSameStats(gpu, cpu);
  return { gpu, cpu };
}

describe("gpuTensorStats on random data with NaN, Inf, zeros and subnormals", () => {
  // Sizes around the workgroup (256) and tile (4096) boundaries, and a million-value tensor.
  const shapes: [rows: number, cols: number][] = [
    [1, 1],
    [1, 255],
    [1, 257],
    [3, 1365], // 4095
    [17, 241], // 4097
    [1, 65_537],
    [1_009, 991], // 999,919 values
  ];
  for (const [rows, cols] of shapes) {
    it(`matches the CPU on ${rows} x ${cols}`, async () => {
      const { cpu } = await compare(messyValues(rows * cols, rows * 7919 + cols), cols, { chunkBytes: 64 * 1024 });
      expect(cpu.count).toBe(rows * cols);
    });
  }

  it("merges many small GPU chunks: buffers of 3 tiles, and of less than one tile", async () => {
    const values = messyValues(50_021 * 3, 11);
    await compare(values, 3, { chunkBytes: 10_000, maxChunkBytes: 3 * TILE * 4 });
    await compare(values, 3, { chunkBytes: 10_000, maxChunkBytes: 1_000 * 4 });
    // Chunks larger than the GPU buffer are split across submissions.
    await compare(values, 3, { chunkBytes: 1 << 20, maxChunkBytes: 5 * TILE * 4 + 44 });
  });

  it("uses a 2-D grid when the workgroups exceed the per-dimension limit", async () => {
    const narrow: LabDevice = { ...dev, info: { ...dev.info, limits: { ...dev.info.limits, maxComputeWorkgroupsPerDimension: 3 } } };
    // 40 tiles in one submission: a 3 x 14 grid with 2 idle groups.
    await compare(messyValues(40 * TILE - 5, 5), 1, {}, narrow);
  });

  it("keeps std accurate when |mean| >> std (a LayerNorm-like tensor)", async () => {
    const values = new Float32Array(200_000);
    const random = rng(3);
    for (let i = 0; i < values.length; i++) values[i] = 1000 + 0.01 * normal(random);
    const { gpu, cpu } = await compare(values, 1000);
    // Far tighter than sum(x^2) - n*mean^2 in f32 could be: that formula loses every digit here.
    expect(Math.abs(gpu.std - cpu.std) / cpu.std).toBeLessThan(1e-3);
  });

  it("stays finite when f32 moments would overflow (values near 1e30)", async () => {
    const values = messyValues(30_011, 9, { std: 1e30 });
    const { gpu } = await compare(values, 1);
    expect(Number.isFinite(gpu.std)).toBe(true);
  });

  it("reports NaN moments for a tensor without finite values", async () => {
    const values = new Float32Array([NaN, Infinity, -Infinity, NaN, NaN]);
    const { gpu } = await compare(values, 5);
    expect(gpu).toMatchObject({ count: 5, nan: 3, inf: 2, zeros: 0 });
    expect(gpu.min).toBeNaN();
  });

  it("returns exact subnormal extremes", async () => {
    const values = new Float32Array(new Uint32Array([0x00000001, 0x80000003, 0x007fffff, 0x00000000]).buffer);
    const { gpu } = await compare(values, 4);
    expect(gpu.min).toBe(values[1]);
    expect(gpu.max).toBe(values[2]);
    expect(gpu.zeros).toBe(1);
  });
});

describe("gpuTensorStats on stories260K", () => {
  const shared = inject("sharedDir");
  const fetchBlob = async (relative: string) => {
    const response = await fetch(`/@fs${shared}/models/${relative}`);
    if (!response.ok) throw new Error(`fetching ${relative} from the test server: HTTP ${response.status}`);
    return new BlobSource(await response.blob(), relative);
  };

  it("matches the CPU on every tensor of the F32 model", async () => {
    const model = await openModel([await fetchBlob("stories260K/model.safetensors")]);
    expect(model.tensors).toHaveLength(47);
    for (const t of model.tensors) {
      const cpu = await tensorStats(t);
      const gpu = await gpuTensorStats(dev, rowsOf(t), { expectedValues: t.params });
      expectSameStats(gpu, cpu);
    }
    const embed = model.tensors.find((t) => t.name === "model.embed_tokens.weight")!;
    const stats = await gpuTensorStats(dev, rowsOf(embed, 4096));
    expect(stats.count).toBe(512 * 64);
    expect(stats.first[0]).toBe(Math.fround(-0.294748783)); // stories260K-sharded README, embed_tokens[0, 0]
  });

  it("matches the CPU on the BF16 shards opened through their index", async () => {
    const model = await openModel([
      await fetchBlob("stories260K-sharded/model.safetensors.index.json"),
      await fetchBlob("stories260K-sharded/model-00001-of-00002.safetensors"),
      await fetchBlob("stories260K-sharded/model-00002-of-00002.safetensors"),
    ]);
    expect(model.totalBytes).toBe(520_064);
    for (const t of model.tensors) expectSameStats(await gpuTensorStats(dev, rowsOf(t, 1024)), await tensorStats(t));
  });
});
