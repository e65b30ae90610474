/**
 * Tensor statistics on the GPU (shaders/stats.wgsl): the same answer as the CPU reference
 * src/quant/stats.ts tensorStats, from a stream of Float32 chunks of any size.
 *
 * Exact: count, nan, inf, zeros, min and max (integer counts and an integer order key; no float
 * arithmetic is involved). Approximate: mean and std, accumulated per thread and per workgroup in f32
 * (Welford, then Chan's pairwise merge) and merged across workgroups and chunks in f64. Error bound,
 * with u = 2^-24 and k = PER_THREAD + log2(WORKGROUP_SIZE) + 2 rounding steps on any value's path:
 *     |mean_gpu - mean| <= 4 k u max|x|        |std_gpu - std| <= 4 k u rms(x)
 * (rms(x) = sqrt(mean^2 + std^2)), plus absolute terms (2^-126 on the mean, 2^-60 on std) for
 * GPUs that flush subnormals to zero. statsTolerance() computes these for a CPU result; the browser tests hold the GPU
 * to them. Finite values past ~2^63 would overflow the f32 M2; a chunk where that happens is
 * recomputed on the CPU in f64 from the same GPU buffer, so the result stays finite and within bound.
 *
 * Streaming: chunks are copied into one of two input buffers of at most maxChunkBytes (and the
 * device's maxStorageBufferBindingSize); while the GPU reduces one, the next is filled. Nothing waits
 * on the GPU except to reuse a buffer, and only the small per-workgroup partials are read back.
 */
import statsShader from "../../shaders/stats.wgsl?raw";
import type { LabDevice } from "./device.ts";
import { FIRST_VALUES, type TensorStatistics } from "../quant/stats.ts";

export const WORKGROUP_SIZE = 256;
/** Values each thread reduces sequentially before the tree; a workgroup's tile is 4096 values. */
export const PER_THREAD = 16;
const TILE = WORKGROUP_SIZE * PER_THREAD;
/** Default size of one GPU input buffer (two are used). */
export const DEFAULT_GPU_BUFFER_BYTES = 32 * 1024 * 1024;

/** The shader's Partial struct, word by word (9 x 4 bytes): FIELD is each field's word index. */
const PARTIAL_WORDS = 9;
const PARTIAL_BYTES = PARTIAL_WORDS * 4;
const FIELD = { finite: 0, nan: 1, posInf: 2, negInf: 3, zeros: 4, minKey: 5, maxKey: 6, mean: 7, m2: 8 } as const;

export interface GpuStatsOptions {
  /** Upper bound of one GPU input buffer (default DEFAULT_GPU_BUFFER_BYTES); tests make it small to force many submissions. */
  maxChunkBytes?: number;
  /** Values the stream will hold, if known: small tensors then get small buffers. */
  expectedValues?: number;
  signal?: AbortSignal;
}

/** Running f64 totals; merges are Chan et al.'s pairwise formula. */
class Totals {
  finite = 0;
  nan = 0;
  posInf = 0;
  negInf = 0;
  zeros = 0;
  minKey = 0xffffffff;
  maxKey = 0;
  mean = 0;
  m2 = 0;

  merge(n: number, mean: number, m2: number): void {
    if (n === 0) return;
    const total = this.finite + n;
    const delta = mean - this.mean;
    this.mean += delta * (n / total);
    this.m2 += m2 + delta * delta * ((this.finite * n) / total);
    this.finite = total;
  }
}

/** Float32 bits <-> a u32 whose unsigned order is the float order; the shader's orderKey(). */
function keyToFloat(key: number): number {
  const bits = key & 0x80000000 ? key & 0x7fffffff : ~key >>> 0;
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

/** One input buffer with its partials, readback and uniform; two of them alternate. */
class Slot {
  readonly input: GPUBuffer;
  readonly partials: GPUBuffer;
  readonly readback: GPUBuffer;
  readonly params: GPUBuffer;
  readonly bindGroup: GPUBindGroup;
  /** Resolves once the last submission's partials are folded into the totals. */
  pending: Promise<void> = Promise.resolve();

  constructor(
    device: GPUDevice,
    pipeline: GPUComputePipeline,
    /** Values the input buffer holds. */
    readonly capacity: number,
  ) {
    const partialBytes = Math.ceil(capacity / TILE) * PARTIAL_BYTES;
    const usage = GPUBufferUsage;
    this.input = device.createBuffer({ label: "stats input", size: capacity * 4, usage: usage.STORAGE | usage.COPY_DST | usage.COPY_SRC });
    this.partials = device.createBuffer({ label: "stats partials", size: partialBytes, usage: usage.STORAGE | usage.COPY_SRC });
    this.readback = device.createBuffer({ label: "stats readback", size: partialBytes, usage: usage.MAP_READ | usage.COPY_DST });
    this.params = device.createBuffer({ label: "stats params", size: 16, usage: usage.UNIFORM | usage.COPY_DST });
    this.bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.input } },
        { binding: 1, resource: { buffer: this.partials } },
        { binding: 2, resource: { buffer: this.params } },
      ],
    });
  }

  destroy(): void {
    for (const b of [this.input, this.partials, this.readback, this.params]) b.destroy();
  }
}

const pipelines = new WeakMap<GPUDevice, GPUComputePipeline>();

function statsPipeline(device: GPUDevice): GPUComputePipeline {
  let pipeline = pipelines.get(device);
  if (!pipeline) {
    const module = device.createShaderModule({ label: "stats.wgsl", code: statsShader });
    pipeline = device.createComputePipeline({
      label: "partialStats",
      layout: "auto",
      compute: { module, entryPoint: "partialStats", constants: { WORKGROUP_SIZE } },
    });
    pipelines.set(device, pipeline);
  }
  return pipeline;
}

/** The most values one input buffer may hold: the caller's cap and the device's limits, in whole tiles. */
export function maxChunkValues(dev: LabDevice, maxChunkBytes = DEFAULT_GPU_BUFFER_BYTES): number {
  const limits = dev.info.limits;
  const values = Math.floor(Math.min(maxChunkBytes, limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 4);
  if (values < 1) throw new RangeError(`maxChunkBytes ${maxChunkBytes} holds no float32 value`);
  return values >= TILE ? values - (values % TILE) : values;
}

/** A 2-D grid when the workgroups exceed the per-dimension limit (65,535 on most devices). */
function grid(groups: number, maxPerDimension: number): [number, number] {
  if (groups <= maxPerDimension) return [groups, 1];
  const y = Math.ceil(groups / maxPerDimension);
  return [Math.ceil(groups / y), y];
}

const wholeTiles = (values: number) => Math.max(TILE, Math.ceil(values / TILE) * TILE);

export async function gpuTensorStats(
  dev: LabDevice,
  chunks: AsyncIterable<Float32Array>,
  opts: GpuStatsOptions = {},
): Promise<TensorStatistics> {
  const { device } = dev;
  const pipeline = statsPipeline(device);
  const maxValues = maxChunkValues(dev, opts.maxChunkBytes);
  // Buffers start at the expected size (or the first chunk's) and grow 4x per filled buffer, so a
  // small tensor never pays for a 32 MiB allocation and a large one soon streams in big submissions.
  let target = opts.expectedValues !== undefined ? Math.min(maxValues, wholeTiles(opts.expectedValues)) : 0;
  const totals = new Totals();
  const first: number[] = [];
  let count = 0;
  const slots: (Slot | undefined)[] = [undefined, undefined];

  /** Slot i, once its previous reduction is folded (its buffers are reused), at least `target` big. */
  const slotAt = async (i: number): Promise<Slot> => {
    let slot = slots[i];
    if (slot) await slot.pending;
    if (!slot || slot.capacity < target) {
      slot?.destroy();
      slot = slots[i] = new Slot(device, pipeline, target);
    }
    return slot;
  };

  /** Reduces the first `n` values of the slot's input; the result is folded when `pending` resolves. */
  const submit = (slot: Slot, n: number) => {
    const groups = Math.ceil(n / TILE);
    const partialBytes = groups * PARTIAL_BYTES;
    device.queue.writeBuffer(slot.params, 0, new Uint32Array([n, PER_THREAD, 0, 0]));
    const encoder = device.createCommandEncoder({ label: "stats" });
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, slot.bindGroup);
    pass.dispatchWorkgroups(...grid(groups, dev.info.limits.maxComputeWorkgroupsPerDimension));
    pass.end();
    encoder.copyBufferToBuffer(slot.partials, 0, slot.readback, 0, partialBytes);
    device.queue.submit([encoder.finish()]);
    slot.pending = slot.readback.mapAsync(GPUMapMode.READ, 0, partialBytes).then(async () => {
      const words = new Uint32Array(slot.readback.getMappedRange(0, partialBytes).slice(0));
      slot.readback.unmap();
      await foldPartials(words, groups, () => f64Moments(slot.input, n));
    });
  };

  const foldPartials = async (words: Uint32Array, groups: number, recompute: () => Promise<Totals>) => {
    const floats = new Float32Array(words.buffer);
    let overflowed = false;
    for (let g = 0; g < groups; g++) {
      const p = g * PARTIAL_WORDS;
      totals.nan += words[p + FIELD.nan]!;
      totals.posInf += words[p + FIELD.posInf]!;
      totals.negInf += words[p + FIELD.negInf]!;
      totals.zeros += words[p + FIELD.zeros]!;
      if (words[p + FIELD.finite]! > 0) {
        totals.minKey = Math.min(totals.minKey, words[p + FIELD.minKey]!);
        totals.maxKey = Math.max(totals.maxKey, words[p + FIELD.maxKey]!);
      }
      if (!Number.isFinite(floats[p + FIELD.mean]!) || !Number.isFinite(floats[p + FIELD.m2]!)) overflowed = true;
    }
    if (overflowed) {
      const exact = await recompute();
      totals.merge(exact.finite, exact.mean, exact.m2);
      return;
    }
    for (let g = 0; g < groups; g++) {
      const p = g * PARTIAL_WORDS;
      totals.merge(words[p + FIELD.finite]!, floats[p + FIELD.mean]!, floats[p + FIELD.m2]!);
    }
  };

  /** The CPU path for a submission whose f32 moments overflowed: read its values back, Welford in f64. */
  const f64Moments = async (input: GPUBuffer, n: number): Promise<Totals> => {
    const copy = device.createBuffer({ label: "stats overflow readback", size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(input, 0, copy, 0, n * 4);
      device.queue.submit([encoder.finish()]);
      await copy.mapAsync(GPUMapMode.READ);
      const local = new Totals();
      for (const x of new Float32Array(copy.getMappedRange())) if (Number.isFinite(x)) local.merge(1, x, 0);
      return local;
    } finally {
      copy.destroy();
    }
  };

  try {
    let slotIndex = 0;
    let slot: Slot | undefined;
    let filled = 0;
    for await (const chunk of chunks) {
      opts.signal?.throwIfAborted();
      for (let i = 0; first.length < FIRST_VALUES && i < chunk.length; i++) first.push(chunk[i]!);
      count += chunk.length;
      let pos = 0;
      while (pos < chunk.length) {
        if (!slot) {
          if (target === 0) target = Math.min(maxValues, wholeTiles(chunk.length));
          slot = await slotAt(slotIndex);
        }
        const take = Math.min(slot.capacity - filled, chunk.length - pos);
        // writeBuffer copies at once, from any buffer (shared ones too; the typings only list ArrayBuffer views).
        device.queue.writeBuffer(slot.input, filled * 4, chunk as Float32Array<ArrayBuffer>, pos, take);
        filled += take;
        pos += take;
        if (filled === slot.capacity) {
          submit(slot, filled);
          filled = 0;
          if (opts.expectedValues === undefined) target = Math.min(maxValues, target * 4);
          slotIndex = 1 - slotIndex;
          slot = undefined;
        }
      }
    }
    if (slot && filled > 0) submit(slot, filled);
    await Promise.all(slots.map((s) => s?.pending));
  } finally {
    for (const s of slots) {
      await s?.pending.catch(() => undefined);
      s?.destroy();
    }
  }

  const hasFinite = totals.finite > 0;
  return {
    count,
    min: hasFinite ? keyToFloat(totals.minKey) : NaN,
    max: hasFinite ? keyToFloat(totals.maxKey) : NaN,
    mean: hasFinite ? totals.mean : NaN,
    std: hasFinite ? Math.sqrt(totals.m2 / totals.finite) : NaN,
    nan: totals.nan,
    inf: totals.posInf + totals.negInf,
    zeros: totals.zeros,
    first,
  };
}

const U = 2 ** -24;
const ROUNDING_STEPS = PER_THREAD + Math.log2(WORKGROUP_SIZE) + 2;

/** The stated bound (see the top of this file) around an exact (f64 CPU) result. */
export function statsTolerance(exact: Pick<TensorStatistics, "min" | "max" | "mean" | "std">): { mean: number; std: number } {
  const maxAbs = Math.max(Math.abs(exact.min), Math.abs(exact.max));
  const rms = Math.hypot(exact.mean, exact.std);
  return { mean: 4 * ROUNDING_STEPS * U * maxAbs + 2 ** -126, std: 4 * ROUNDING_STEPS * U * rms + 2 ** -60 };
}
