/**
 * Quantization error metrics on the GPU (shaders/metrics.wgsl), from GPU buffers of the original values x and
 * the dequantized values y, so a quantized tensor never comes back to the CPU just to be measured. Same
 * outputs and definitions as the CPU reference src/quant/metrics.ts (Metrics); only the small per-workgroup
 * partials and the per-block error map are read back.
 *
 * Exact (equal to the CPU reference): count, nonFinite and the first non-finite position, max |error| (the
 * float32 |x - y|) and its first position, each block's max |error|, and whether the copy is exact (SNR
 * +Infinity iff every error is 0). Rounded: the sums behind MSE, SNR and cosine, accumulated in f32 per thread
 * (one block of B weights) and per workgroup (a tree of log2(WORKGROUP_SIZE) levels), merged in f64 on the
 * CPU. With u = 2^-24, k = B + log2(WORKGROUP_SIZE) + 3 and gamma = k u / (1 - k u) (Higham's bound for
 * float sums of non-negative terms, each term also carrying its own roundings), for n finite pairs:
 *     |sumEE_gpu - sumEE| <= gamma sumEE + n 2^-126        (likewise sumXX and sumYY)
 *     |sumXY_gpu - sumXY| <= gamma sqrt(sumXX sumYY) + n 2^-126
 * and each block's MSE: |mse_gpu - mse| <= (gamma_B + 2u) mse + 2^-126 with gamma_B for k = B + 4. The
 * 2^-126 terms cover squares and products below the f32 normal range (lost to underflow, or flushed).
 * metricsTolerance() turns these into bounds on mse, snrDb and cosine; the browser tests hold the kernel to
 * them.
 *
 * Subnormals: GPUs may flush them to zero in arithmetic and comparisons (SwiftShader does), which would lose
 * errors below 2^-126. Those need an x or y below 2^-102, which the kernel counts from the bits; a chunk with
 * any is read back and measured on the CPU reference instead, so the exact fields stay exact on every device.
 * Likewise a chunk whose f32 sums overflow (values above ~1.8e19 square past the f32 range): results stay
 * finite and exact.
 */
import metricsShader from "../../shaders/metrics.wgsl?raw";
import type { LabDevice } from "./device.ts";
import { computePipeline, outputStorage, readBack, uniformU32, uploadStorage, workgroupGrid } from "./buffers.ts";
import {
  blocksPerRow,
  DEFAULT_METRICS_BLOCK,
  emptyErrorSums,
  errorMetricsFromSums,
  mergeErrorSums,
  Metrics,
  type ErrorMetricsWithBlocks,
  type ErrorSums,
} from "../quant/metrics.ts";
import type { MatrixShape } from "../quant/format.ts";

export const WORKGROUP_SIZE = 256;

/** The shader's Partial struct, word by word (10 x 4 bytes): FIELD is each field's word index. */
const PARTIAL_WORDS = 10;
const FIELD = { count: 0, nonFinite: 1, firstNonFinite: 2, maxBits: 3, maxAt: 4, sumXX: 5, sumYY: 6, sumXY: 7, sumEE: 8, tiny: 9 } as const;
const NONE = 0xffffffff;

/**
 * The streaming GPU accumulator: `add(x, y, rows)` for consecutive chunks of whole rows held in GPU buffers,
 * then `result()`. The work of add() is submitted before it returns, so the caller may overwrite the buffers
 * right after (the queue runs in order); its promise resolves once the chunk is folded in.
 */
export class GpuMetrics {
  readonly shape: MatrixShape;
  readonly blockSize: number;
  private readonly perRow: number;
  private readonly sums = emptyErrorSums();
  private readonly blockMse: Float32Array;
  private readonly blockMax: Float32Array;
  private rowsAdded = 0;
  private readonly pending: Promise<void>[] = [];

  private constructor(
    private readonly dev: LabDevice,
    private readonly pipeline: GPUComputePipeline,
    shape: MatrixShape,
    blockSize: number,
  ) {
    this.shape = shape;
    this.blockSize = blockSize;
    this.perRow = blocksPerRow(shape.cols, blockSize);
    this.blockMse = new Float32Array(shape.rows * this.perRow);
    this.blockMax = new Float32Array(shape.rows * this.perRow);
  }

  static async create(dev: LabDevice, shape: MatrixShape, opts: { blockSize?: number } = {}): Promise<GpuMetrics> {
    const blockSize = opts.blockSize ?? DEFAULT_METRICS_BLOCK;
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`block size ${blockSize} is not a positive integer`);
    const pipeline = await computePipeline(dev.device, metricsShader, "blockErrors", "metrics.wgsl");
    return new GpuMetrics(dev, pipeline, shape, blockSize);
  }

  /** The next `rows` rows: x and y hold them from byte 0 (float32, row-major). */
  add(x: GPUBuffer, y: GPUBuffer, rows: number, signal?: AbortSignal): Promise<void> {
    const { cols } = this.shape;
    if (this.rowsAdded + rows > this.shape.rows) {
      throw new RangeError(`${this.rowsAdded + rows} rows passed for a ${this.shape.rows}x${cols} tensor`);
    }
    const firstRow = this.rowsAdded;
    this.rowsAdded += rows;
    if (rows === 0 || cols === 0) return Promise.resolve();
    const { device } = this.dev;
    const blocks = rows * this.perRow;
    const groups = Math.ceil(blocks / WORKGROUP_SIZE);
    const params = uniformU32(device, [rows, cols, this.blockSize, this.perRow], "metrics params");
    const partials = outputStorage(device, groups * PARTIAL_WORDS * 4, "metrics partials");
    const mse = outputStorage(device, blocks * 4, "metrics block mse");
    const max = outputStorage(device, blocks * 4, "metrics block max");
    const bindGroup = device.createBindGroup({
      label: "metrics",
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [x, y, partials, mse, max, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const encoder = device.createCommandEncoder({ label: "metrics" });
    const pass = encoder.beginComputePass({ label: "metrics" });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...workgroupGrid(device, groups));
    pass.end();
    device.queue.submit([encoder.finish()]);

    const fold = (async () => {
      try {
        const [partialBytes, mseBytes, maxBytes] = await Promise.all([
          readBack(device, partials, groups * PARTIAL_WORDS * 4, signal),
          readBack(device, mse, blocks * 4, signal),
          readBack(device, max, blocks * 4, signal),
        ]);
        const chunk = this.foldPartials(new Uint32Array(partialBytes.buffer), groups);
        const at = firstRow * this.perRow;
        if (chunk) {
          mergeErrorSums(this.sums, chunk, firstRow * cols);
          this.blockMse.set(new Float32Array(mseBytes.buffer), at);
          this.blockMax.set(new Float32Array(maxBytes.buffer), at);
          return;
        }
        // An f32 sum overflowed, or values below 2^-102 met a GPU that may flush subnormals: measure this
        // chunk on the CPU reference, from the same buffers.
        const [xs, ys] = await Promise.all([readBack(device, x, rows * cols * 4, signal), readBack(device, y, rows * cols * 4, signal)]);
        const cpu = new Metrics({ rows, cols }, { blockSize: this.blockSize });
        cpu.add(new Float32Array(xs.buffer), new Float32Array(ys.buffer));
        mergeErrorSums(this.sums, cpu.errorSums(), firstRow * cols);
        const { blocks: b } = cpu.result();
        this.blockMse.set(b.mse, at);
        this.blockMax.set(b.maxAbs, at);
      } finally {
        for (const buffer of [params, partials, mse, max]) buffer.destroy();
      }
    })();
    this.pending.push(fold);
    return fold;
  }

  /**
   * The chunk's partials folded in f64 (positions relative to the chunk), or undefined when the chunk needs
   * the CPU: a sum overflowed f32, or some value was tiny.
   */
  private foldPartials(words: Uint32Array, groups: number): ErrorSums | undefined {
    const floats = new Float32Array(words.buffer, words.byteOffset, words.length);
    const chunk = emptyErrorSums();
    for (let g = 0; g < groups; g++) {
      const p = g * PARTIAL_WORDS;
      const sumXX = floats[p + FIELD.sumXX]!;
      const sumYY = floats[p + FIELD.sumYY]!;
      const sumXY = floats[p + FIELD.sumXY]!;
      const sumEE = floats[p + FIELD.sumEE]!;
      if (!Number.isFinite(sumXX + sumYY + sumXY + sumEE) || words[p + FIELD.tiny]! > 0) return undefined;
      const maxAt = words[p + FIELD.maxAt]!;
      const firstNonFinite = words[p + FIELD.firstNonFinite]!;
      mergeErrorSums(
        chunk,
        {
          count: words[p + FIELD.count]!,
          nonFinite: words[p + FIELD.nonFinite]!,
          firstNonFinite: firstNonFinite === NONE ? -1 : firstNonFinite,
          sumXX,
          sumYY,
          sumXY,
          sumEE,
          maxAbsErr: floats[p + FIELD.maxBits]!,
          maxAt: maxAt === NONE ? -1 : maxAt,
        },
        0,
      );
    }
    return chunk;
  }

  /** The metrics of every chunk added (waits for the ones still on the GPU). */
  async result(): Promise<ErrorMetricsWithBlocks> {
    await Promise.all(this.pending);
    // The true sum of squared errors is at least the largest squared error: a floor that also keeps an
    // inexact copy from looking exact when all its squared errors underflowed f32.
    const sums = { ...this.sums, sumEE: Math.max(this.sums.sumEE, this.sums.maxAbsErr * this.sums.maxAbsErr) };
    return {
      ...errorMetricsFromSums(sums, this.shape.cols),
      blocks: { blockSize: this.blockSize, rows: this.shape.rows, blocksPerRow: this.perRow, mse: this.blockMse, maxAbs: this.blockMax },
    };
  }
}

/**
 * The metrics of x against y held on the CPU: uploaded in chunks of whole rows that fit the device's binding
 * limit (or `maxChunkBytes`), measured on the GPU. For tests and callers whose data is not on the GPU yet.
 */
export async function gpuErrorMetrics(
  dev: LabDevice,
  x: Float32Array,
  y: Float32Array,
  shape: MatrixShape,
  opts: { blockSize?: number; maxChunkBytes?: number; signal?: AbortSignal } = {},
): Promise<ErrorMetricsWithBlocks> {
  const { rows, cols } = shape;
  if (x.length !== rows * cols || y.length !== rows * cols) {
    throw new RangeError(`${x.length} and ${y.length} values do not make two ${rows}x${cols} tensors`);
  }
  const metrics = await GpuMetrics.create(dev, shape, opts);
  const limits = dev.info.limits;
  const bytes = Math.min(opts.maxChunkBytes ?? Infinity, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const rowsPerChunk = Math.max(1, Math.floor(bytes / (Math.max(1, cols) * 4)));
  // At most two chunks on the GPU: the next is uploaded while the previous one is measured.
  let previous: Promise<void> = Promise.resolve();
  for (let r = 0; r < rows; r += rowsPerChunk) {
    opts.signal?.throwIfAborted();
    const n = Math.min(rowsPerChunk, rows - r);
    const xb = uploadStorage(dev.device, x.subarray(r * cols, (r + n) * cols), "metrics x");
    const yb = uploadStorage(dev.device, y.subarray(r * cols, (r + n) * cols), "metrics y");
    const current = metrics.add(xb, yb, n, opts.signal).finally(() => {
      xb.destroy();
      yb.destroy();
    });
    current.catch(() => undefined); // a failure is thrown by the await below or by result(), not left unhandled
    await previous;
    previous = current;
  }
  await previous;
  return metrics.result();
}

const U = 2 ** -24;
const TINY = 2 ** -126;
const gamma = (k: number) => (k * U) / (1 - k * U);

export interface MetricsTolerance {
  mse: number;
  snrDb: number;
  cosine: number;
  /** The bound on one block's MSE whose exact value is `mse`. */
  blockMse(mse: number): number;
}

/** The stated bound (see the top of this file) around the CPU reference's sums. */
export function metricsTolerance(exact: ErrorSums, blockSize: number): MetricsTolerance {
  const n = exact.count;
  const g = gamma(blockSize + Math.log2(WORKGROUP_SIZE) + 3);
  const dEE = g * exact.sumEE + n * TINY;
  const dXX = g * exact.sumXX + n * TINY;
  const dYY = g * exact.sumYY + n * TINY;
  const dXY = g * Math.sqrt(exact.sumXX * exact.sumYY) + n * TINY;
  const snr = (xx: number, ee: number) => 10 * Math.log10(xx / ee);
  const snrExact = snr(exact.sumXX, exact.sumEE);
  const snrDb =
    exact.sumEE === 0
      ? 0 // exactness is decided exactly (max |error| = 0)
      : exact.sumEE - dEE <= 0
        ? Infinity
        : Math.max(Math.abs(snr(exact.sumXX + dXX, exact.sumEE - dEE) - snrExact), Math.abs(snr(Math.max(0, exact.sumXX - dXX), exact.sumEE + dEE) - snrExact));
  const cos = (xy: number, xx: number, yy: number) => xy / Math.sqrt(xx * yy);
  const cosExact = cos(exact.sumXY, exact.sumXX, exact.sumYY);
  const cosine =
    exact.sumXX - dXX <= 0 || exact.sumYY - dYY <= 0
      ? 2
      : Math.max(
          Math.abs(cos(exact.sumXY + dXY, exact.sumXX - dXX, exact.sumYY - dYY) - cosExact),
          Math.abs(cos(exact.sumXY - dXY, exact.sumXX - dXX, exact.sumYY - dYY) - cosExact),
          Math.abs(cos(exact.sumXY + dXY, exact.sumXX + dXX, exact.sumYY + dYY) - cosExact),
          Math.abs(cos(exact.sumXY - dXY, exact.sumXX + dXX, exact.sumYY + dYY) - cosExact),
        );
  const gBlock = gamma(blockSize + 4) + 2 * U;
  return {
    mse: n > 0 ? dEE / n : 0,
    snrDb,
    cosine,
    blockMse: (mse) => gBlock * mse + TINY,
  };
}
