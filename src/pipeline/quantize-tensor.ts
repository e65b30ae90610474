/**
 * One tensor through a list of formats: the orchestration the quantization worker and the CLI share.
 *
 * The tensor is read once, in chunks of whole rows (readTensorRows), and every chunk goes through every
 * format: encoded and decoded on the GPU when the device has a kernel for the format, and measured there
 * too (src/gpu/metrics.ts); else encoded, decoded and measured with the CPU references (the format's
 * encode/decode, src/quant/metrics.ts). Per format the result is the metrics, the size, optionally the
 * packed bytes (rows back to back, as GGUF stores them), and where it ran and why.
 *
 * What goes wrong for one format stays with that format: a row length it cannot take (with llama.cpp's
 * fallback), a tensor too large to hold whole, a GPU kernel that fails. NaN/Inf weights fail every format,
 * naming the first one's row and column. Only cancelling (the AbortSignal, checked between pieces) ends
 * the whole job.
 *
 * When the GPU fails a format (a kernel error, or the device lost: then every format still on it), the
 * format goes on with the CPU reference. Formats that had finished keep their GPU results. A format
 * caught half-way had part of its metrics on the lost GPU: it runs again over the whole tensor on the CPU
 * (a second read) so its figures are complete; the result says what happened.
 *
 * The ggml kernels give llama.cpp's bytes only where the GPU rounds every f32 operation as the CPU does
 * (src/gpu/ggml-legacy.ts explains): on a device whose float probe (src/gpu/float-probe.ts) finds fused
 * multiply-add or inexact division or square root, the ggml formats run on the CPU reference, and say why.
 *
 * Which formats have kernels is whatever src/gpu/quantizer.ts has registered: the code that creates the
 * device (the quantization worker, the CLI's webgpu backend) imports src/gpu/kernels.ts.
 */
import { errorText } from "../common/error-text.ts";
import { DEFAULT_CHUNK_BYTES, readTensorRows, tensorRowLayout, type TensorChunk } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { storedBytes } from "../formats/tensor-data.ts";
import type { LabDevice } from "../gpu/device.ts";
import { readBack, uploadStorage } from "../gpu/buffers.ts";
import { floatArithmeticOf } from "../gpu/float-probe.ts";
import { GpuMetrics } from "../gpu/metrics.ts";
import { gpuQuantizerFor, maxRowsPerChunk, uploadWeights, type GpuQuantizer, type RoundTripOptions } from "../gpu/quantizer.ts";
import { assertFinite, isQuantInputError, type QuantInputError, type QuantInputProblem } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { sumGramQuadratic } from "../quant/output-error.ts";
import { Metrics, metricsBlockSize, sizeMetrics, type ErrorMetricsWithBlocks, type SizeMetrics } from "../quant/metrics.ts";

export type RanOn = "gpu" | "cpu";

/** Where the activations an output error is measured on came from. */
export type CalibrationKind = "model" | "synthetic" | "file";

/** A layer's output error: ||X W^T - X Q^T||^2 / ||X W^T||^2 (src/quant/output-error.ts). */
export interface OutputError {
  /** On the calibration tokens (what GPTQ/AWQ minimise). */
  calibration: number;
  /** On held-out tokens, when there are any (calibration is not evaluation). */
  heldOut?: number;
  source: CalibrationKind;
}

/** The Gram matrices X^T X (cols x cols) output errors are measured with. */
export interface OutputErrorGrams {
  source: CalibrationKind;
  calibration: Float64Array;
  heldOut?: Float64Array;
}

/** Why a format did not produce numbers. */
export interface FormatFailure {
  /** The QuantInputError's problem, or "too-large" (the format needs the tensor whole, and it is too large). */
  problem: QuantInputProblem | "too-large";
  /** For people, naming the tensor. */
  message: string;
  /** The format llama.cpp would use instead (row-length problems). */
  fallback?: string;
  /** Where the first offending value is (non-finite). */
  row?: number;
  col?: number;
}

export type FormatResult =
  | {
      format: string;
      ok: true;
      ranOn: RanOn;
      /** Why it ran on the CPU (no WebGPU, no kernel yet, device lost...); undefined when it ran on the GPU. */
      why?: string;
      metrics: ErrorMetricsWithBlocks;
      size: SizeMetrics;
      /** The packed blocks, exactly as GGUF (or the format's own layout) stores them; when asked for. */
      bytes?: Uint8Array;
      /** The layer's output error, when calibration activations were given. */
      outputError?: OutputError;
      /** What the method said about its run (GPTQ's dampening retries, too few calibration tokens). */
      warnings?: string[];
    }
  | { format: string; ok: false; error: FormatFailure };

export interface QuantizeProgress {
  /** The format that just finished a piece of the tensor. */
  format: string;
  /** Source bytes processed so far, summed over the formats. */
  doneBytes: number;
  /** The tensor's bytes times the number of formats (plus once more for a format run again on the CPU). */
  totalBytes: number;
}

export interface QuantizeTensorOptions {
  /** The GPU to run kernels on; without one every format runs on the CPU reference. */
  device?: LabDevice;
  /** Why there is no device, reported as the reason formats ran on the CPU. */
  noDeviceReason?: string;
  /** llama.cpp importance matrix (one weight per column), for the formats that use one. */
  imatrix?: Float32Array;
  signal?: AbortSignal;
  onProgress?: (progress: QuantizeProgress) => void;
  /** Keep every format's packed bytes in the result (default false: metrics only). */
  keepBytes?: boolean;
  /** Largest tensor (as float32 bytes) held whole for the formats that need the whole tensor (default 256 MiB). */
  maxWholeTensorBytes?: number;
  /** Float32 bytes per streamed chunk (default DEFAULT_CHUNK_BYTES); at least one row. */
  chunkBytes?: number;
  /** Also measure every format's output error with these Gram matrices (O(rows x cols^2) per format). */
  outputError?: OutputErrorGrams;
}

export interface TensorQuantization {
  tensor: string;
  shape: MatrixShape;
  /** One entry per requested format, in the order asked. */
  results: FormatResult[];
}

export const DEFAULT_MAX_WHOLE_TENSOR_BYTES = 256 * 1024 * 1024;

/** Float32 bytes the CPU reference encodes between two looks at the AbortSignal (a fraction of a second). */
const CPU_PIECE_BYTES = 1024 * 1024;

/**
 * Whether a format encodes each row on its own and stores the rows' bytes back to back, so a tensor can
 * stream through it in chunks of rows: the ggml block formats, per-group and per-channel integers, casts.
 * Not the per-tensor integers (one scale for the whole tensor, stored once ahead of the codes) nor the
 * bitsandbytes formats (their absmax arrays come before all codes, NF4/FP4 blocks run over the flattened
 * tensor, and -dq needs the mean of every absmax): those get the whole tensor at once.
 */
export function encodesRowsIndependently(format: QuantFormat): boolean {
  if (format.family === "bnb") return false;
  if (format.family === "int") return !format.id.endsWith("-tensor");
  return true;
}

/** One format's state while the tensor streams through it. */
interface Run {
  format: QuantFormat;
  /** Needs the whole tensor in one piece. */
  whole: boolean;
  gpu?: GpuQuantizer;
  /** Why it runs (or finished) on the CPU. */
  why?: string;
  /** Rows done so far, and how many of them on the GPU. */
  rowsDone: number;
  rowsOnGpu: number;
  /** Where the error is measured: on the GPU while the format runs there, else on the CPU. */
  gpuMetrics?: GpuMetrics;
  metrics?: Metrics;
  /** Set when the GPU failed after measuring part of the tensor: the format runs again on the CPU. */
  rerun?: boolean;
  result?: ErrorMetricsWithBlocks;
  bytes?: Uint8Array;
  /** CPU reference output buffers, reused from piece to piece. */
  scratchQ?: Uint8Array;
  scratchY?: Float32Array;
  failure?: FormatFailure;
  /** Output error sums: sum d^T G d and sum w^T G w over the rows, for the calibration and held-out G. */
  outputSums?: Float64Array;
}

/** What a pass over the tensor needs besides the runs. */
interface PassContext {
  tensor: TensorInfo;
  shape: MatrixShape;
  opts: QuantizeTensorOptions;
  lost: () => string | undefined;
  progress: { doneBytes: number; totalBytes: number };
}

const MiB = 1024 * 1024;


function failureOf(e: QuantInputError, tensor: string): FormatFailure {
  return { problem: e.problem, message: e.withTensor(tensor).message, fallback: e.fallback, row: e.row, col: e.col };
}

/** Why each lost device was lost (one handler per device, however many jobs run on it). */
const lostDevices = new WeakMap<LabDevice, string>();
const watchedDevices = new WeakSet<LabDevice>();

function watchLoss(device: LabDevice): void {
  if (watchedDevices.has(device)) return;
  watchedDevices.add(device);
  void device.lost.then((info) => lostDevices.set(device, info.message || info.reason || "no reason given"));
}

/** `buffer` if it holds `length` elements, else a new array of that length. */
function grown<T extends Uint8Array | Float32Array>(buffer: T | undefined, length: number, make: new (n: number) => T): T {
  return buffer && buffer.length >= length ? buffer : new make(length);
}

/** Lets messages (a cancel) reach the worker between long synchronous CPU steps. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Quantizes one tensor with each format; see the module comment. Throws only when cancelled (or the source fails). */
export async function quantizeTensor(
  tensor: TensorInfo,
  formats: readonly QuantFormat[],
  opts: QuantizeTensorOptions = {},
): Promise<TensorQuantization> {
  const { signal, device } = opts;
  signal?.throwIfAborted();
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const shape: MatrixShape = { rows, cols };
  if (device) watchLoss(device);
  const lost = () => (device ? lostDevices.get(device) : undefined);
  const ggmlOnCpu = device && formats.some((f) => f.family === "gguf") ? await whyNotGgmlOnGpu(device) : undefined;
  const runs = formats.map((format) => planRun(format, tensor, shape, opts, ggmlOnCpu));
  const ctx: PassContext = { tensor, shape, opts, lost, progress: { doneBytes: 0, totalBytes: tensor.bytes * formats.length } };

  try {
    // Formats that cannot start count as done, so the progress ends at the total.
    for (const run of runs) if (run.failure) countDone(ctx, run, rows);
    await pass(ctx, runs.filter((r) => !r.failure));
    for (const run of runs) {
      if (run.failure || run.rerun) continue;
      try {
        run.result = run.gpuMetrics ? await run.gpuMetrics.result() : run.metrics!.result();
      } catch (e) {
        // The device went away with the last measurements.
        markRerun(run, ctx, `the GPU failed while measuring (${errorText(e)})`);
      }
    }
    const again = runs.filter((r) => r.rerun && !r.failure);
    if (again.length > 0) {
      ctx.progress.totalBytes += tensor.bytes * again.length;
      for (const run of again) run.rerun = false;
      await pass(ctx, again);
      for (const run of again) if (!run.failure) run.result = run.metrics!.result();
    }
  } finally {
    for (const run of runs) run.gpu?.destroy();
  }

  const results = runs.map((run): FormatResult => {
    const format = run.format.id;
    if (run.failure) return { format, ok: false, error: run.failure };
    const result: FormatResult = {
      format,
      ok: true,
      ranOn: run.rowsOnGpu === rows ? "gpu" : "cpu",
      metrics: run.result!,
      size: sizeMetrics(run.format, shape, tensor.bytes),
    };
    if (run.rowsOnGpu !== rows) result.why = run.why;
    if (run.bytes) result.bytes = run.bytes;
    const grams = opts.outputError;
    if (grams && run.outputSums) {
      const o = run.outputSums;
      result.outputError = { calibration: o[0]! / o[1]!, source: grams.source };
      if (grams.heldOut) result.outputError.heldOut = o[2]! / o[3]!;
    }
    return result;
  });
  return { tensor: tensor.name, shape, results };
}

/** Why the device cannot give ggml's bytes (its f32 arithmetic is not the CPU's), or undefined when it can. */
export async function whyNotGgmlOnGpu(device: LabDevice): Promise<string | undefined> {
  try {
    const a = await floatArithmeticOf(device);
    const differences = [
      a.fusedMultiplyAdd ? "fuses multiply-add" : "",
      a.exactDivision ? "" : "divides inexactly",
      a.exactSqrt ? "" : "takes inexact square roots",
    ].filter((d) => d !== "");
    if (differences.length === 0) return undefined;
    return `this GPU ${differences.join(" and ")} (src/gpu/float-probe.ts), so its ggml blocks could differ from llama.cpp's: ran on the CPU reference`;
  } catch (e) {
    return `the GPU's float arithmetic could not be probed (${errorText(e)}): ran on the CPU reference`;
  }
}

/** Where a format will run, or why it cannot. `ggmlOnCpu`: why the ggml formats must run on the CPU, if they must. */
function planRun(format: QuantFormat, tensor: TensorInfo, shape: MatrixShape, opts: QuantizeTensorOptions, ggmlOnCpu?: string): Run {
  const { rows, cols } = shape;
  const { device } = opts;
  const run: Run = { format, whole: !encodesRowsIndependently(format), rowsDone: 0, rowsOnGpu: 0 };
  const f32Bytes = rows * cols * 4;
  const maxWhole = opts.maxWholeTensorBytes ?? DEFAULT_MAX_WHOLE_TENSOR_BYTES;
  const check = format.checkRowLength(cols);
  if (!check.ok) {
    run.failure = { problem: "row-length", message: `tensor "${tensor.name}": ${check.reason}`, fallback: check.fallback };
  } else if (rows * cols === 0) {
    run.failure = { problem: "shape", message: `tensor "${tensor.name}" holds no weights` };
  } else if (run.whole && f32Bytes > maxWhole) {
    run.failure = {
      problem: "too-large",
      message:
        `tensor "${tensor.name}": ${format.id} encodes the whole tensor at once, and its ${(f32Bytes / MiB).toFixed(0)} MiB ` +
        `as float32 are above the ${(maxWhole / MiB).toFixed(0)} MiB the lab holds in memory`,
    };
  } else if (!device) {
    run.why = opts.noDeviceReason ?? "no WebGPU device";
  } else if (ggmlOnCpu && format.family === "gguf") {
    run.why = ggmlOnCpu;
  } else {
    const gpu = gpuQuantizerFor(device, format);
    if (!gpu) {
      run.why = `no WGSL kernel for ${format.id} yet`;
    } else if (run.whole && rows > maxRowsPerChunk(device, format, cols)) {
      gpu.destroy();
      run.why = `the whole tensor does not fit in one GPU buffer binding (${(f32Bytes / MiB).toFixed(0)} MiB as float32)`;
    } else {
      run.gpu = gpu;
    }
  }
  return run;
}

function countDone(ctx: PassContext, run: Run, rows: number): void {
  const p = ctx.progress;
  p.doneBytes += rows * storedBytes(ctx.tensor.dtype, ctx.shape.cols);
  ctx.opts.onProgress?.({ format: run.format.id, doneBytes: p.doneBytes, totalBytes: p.totalBytes });
}

/**
 * The format leaves the GPU and goes on with the CPU reference. If the GPU had measured part of the tensor
 * (those sums may be lost with it), the format runs again over the whole tensor on the CPU instead.
 */
function leaveGpu(run: Run, ctx: PassContext, why: string): void {
  run.gpu?.destroy();
  run.gpu = undefined;
  if (run.gpuMetrics && run.rowsDone > 0) {
    markRerun(run, ctx, why);
    return;
  }
  if (run.gpuMetrics) {
    run.gpuMetrics = undefined;
    run.metrics = new Metrics(ctx.shape, { blockSize: metricsBlockSize(run.format) });
  }
  run.why = `${why} after ${run.rowsDone} of ${ctx.shape.rows} rows on the GPU; the rest ran on the CPU reference`;
}

function markRerun(run: Run, ctx: PassContext, why: string): void {
  run.why = `${why} after ${run.rowsDone} of ${ctx.shape.rows} rows; the whole tensor ran again on the CPU reference`;
  run.rerun = true;
  run.gpu?.destroy();
  run.gpu = undefined;
  run.gpuMetrics = undefined;
  run.metrics = undefined;
  run.rowsDone = 0;
  run.rowsOnGpu = 0;
}

/** Reads the tensor once and feeds every chunk to every run still going. */
async function pass(ctx: PassContext, runs: Run[]): Promise<void> {
  const { tensor, shape, opts } = ctx;
  const { rows, cols } = shape;
  const { signal, device } = opts;
  const going = () => runs.filter((r) => !r.failure && !r.rerun);
  if (going().length === 0) return;
  for (const run of runs) {
    run.rowsDone = 0;
    if (opts.outputError) run.outputSums = new Float64Array(4);
    if (opts.keepBytes) run.bytes ??= new Uint8Array(run.format.encodedBytes(shape));
    const blockSize = metricsBlockSize(run.format);
    if (run.gpu && device) {
      try {
        run.gpuMetrics = await GpuMetrics.create(device, shape, { blockSize });
        continue;
      } catch (e) {
        // The format's kernels may still work: its error is then measured on the CPU.
        console.warn("The GPU metrics kernel is not available, measuring on the CPU:", e);
      }
    }
    run.metrics = new Metrics(shape, { blockSize });
  }
  // Whole when some format needs the whole tensor, else in chunks of streamRows.
  const streamRows = Math.max(1, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / (cols * 4)));
  const chunkRows = going().some((r) => r.whole) ? rows : streamRows;
  const cpuPieceRows = Math.max(1, Math.min(streamRows, Math.floor(CPU_PIECE_BYTES / (cols * 4))));
  const sourceRowBytes = storedBytes(tensor.dtype, cols);

  for await (const chunk of readTensorRows(tensor, { chunkBytes: chunkRows * sourceRowBytes, signal, reuseBuffers: true })) {
    signal?.throwIfAborted();
    try {
      assertFinite(chunk.values, { rows: chunk.rows, cols }, tensor.name, chunk.firstRow);
    } catch (e) {
      if (!isQuantInputError(e)) throw e;
      const failure: FormatFailure = { problem: e.problem, message: e.message, row: e.row, col: e.col };
      for (const run of going()) {
        run.failure = failure;
        countDone(ctx, run, rows - run.rowsDone);
      }
      return;
    }
    for (const run of going()) {
      await encodeChunk(run, chunk, ctx, cpuPieceRows);
      // A format that failed or left for a rerun half-way counts its remaining rows as done.
      if (run.failure || run.rerun) countDone(ctx, run, rows - run.rowsDone);
    }
  }
}

/**
 * Encodes, decodes and measures one chunk with one format, in pieces (what one GPU binding holds; on the
 * CPU, pieces of the streaming chunk size so a cancel is seen between them), keeping the bytes if asked.
 */
async function encodeChunk(run: Run, chunk: TensorChunk, ctx: PassContext, cpuPieceRows: number): Promise<void> {
  const { format } = run;
  const { cols } = ctx.shape;
  const { device, signal, imatrix } = ctx.opts;
  const tensorName = ctx.tensor.name;
  const encodeOpts = { imatrix, tensorName };

  for (let first = 0; first < chunk.rows; ) {
    const lost = ctx.lost();
    if (run.gpu && lost) leaveGpu(run, ctx, `the GPU device was lost (${lost})`);
    if (run.rerun) return;
    const pieceRows = run.whole ? chunk.rows : run.gpu && device ? maxRowsPerChunk(device, format, cols) : cpuPieceRows;
    const rows = Math.min(pieceRows, chunk.rows - first);
    const x = chunk.values.subarray(first * cols, (first + rows) * cols);
    const pieceShape = { rows, cols };
    const offset = run.whole ? 0 : format.encodedBytes({ rows: chunk.firstRow + first, cols });
    if (run.gpu && device) {
      try {
        if (run.gpuMetrics && rows <= maxRowsPerChunk(device, format, cols)) {
          await roundTripOnGpu(run, run.gpu, run.gpuMetrics, device, x, pieceShape, offset, { ...encodeOpts, signal }, ctx.opts.outputError);
        } else {
          const q = await run.gpu.encode(x, pieceShape, { ...encodeOpts, signal });
          const y = await run.gpu.decode(q, pieceShape, { signal });
          if (run.gpuMetrics) await measureOnGpu(run.gpuMetrics, device, x, y, rows, signal);
          else run.metrics!.add(x, y);
          addOutputError(run, x, y, pieceShape, ctx.opts.outputError);
          run.bytes?.set(q, offset);
        }
        run.rowsOnGpu += rows;
      } catch (e) {
        // A lost device also rejects with an AbortError (mapAsync): only our own signal means cancelled.
        if (signal?.aborted) throw e;
        if (isQuantInputError(e)) {
          run.failure = failureOf(e, tensorName);
          return;
        }
        // A device loss behind the failure is reported by device.lost a moment later: let it arrive.
        await yieldToEventLoop();
        const lostNow = ctx.lost();
        leaveGpu(run, ctx, lostNow ? `the GPU device was lost (${lostNow})` : `the GPU kernel failed (${errorText(e)})`);
        if (run.rerun) return;
        continue; // the same piece, on the CPU
      }
    } else {
      // The CPU reference writes straight into the kept bytes, or into scratch reused piece after piece.
      const out = run.bytes?.subarray(offset) ?? (run.scratchQ = grown(run.scratchQ, format.encodedBytes(pieceShape), Uint8Array));
      run.scratchY = grown(run.scratchY, rows * cols, Float32Array);
      try {
        const q = format.encode(x, pieceShape, { ...encodeOpts, out });
        const y = format.decode(q, pieceShape, run.scratchY);
        run.metrics!.add(x, y);
        addOutputError(run, x, y, pieceShape, ctx.opts.outputError);
      } catch (e) {
        if (!isQuantInputError(e)) throw e;
        run.failure = failureOf(e, tensorName);
        return;
      }
    }
    run.rowsDone += rows;
    first += rows;
    countDone(ctx, run, rows);
    await yieldToEventLoop();
    signal?.throwIfAborted();
  }
}

/** Adds a piece's rows to the run's output-error sums (sum_r d_r^T G d_r and w_r^T G w_r, src/quant/output-error.ts). */
function addOutputError(run: Run, x: Float32Array, y: Float32Array, shape: MatrixShape, grams: OutputErrorGrams | undefined): void {
  const sums = run.outputSums;
  if (!grams || !sums) return;
  const { rows, cols } = shape;
  const w = Float64Array.from(x.subarray(0, rows * cols));
  const d = new Float64Array(rows * cols);
  for (let i = 0; i < d.length; i++) d[i] = x[i]! - y[i]!;
  const all = grams.heldOut ? [grams.calibration, grams.heldOut] : [grams.calibration];
  all.forEach((g, k) => {
    sums[2 * k] = sums[2 * k]! + sumGramQuadratic(g, d, rows, cols);
    sums[2 * k + 1] = sums[2 * k + 1]! + sumGramQuadratic(g, w, rows, cols);
  });
}

/**
 * One piece on the GPU with x uploaded once: the quantizer's roundTrip leaves the decoded values on the
 * device, where the metrics kernel reads them next to x. The bytes come back only when they are kept, the
 * decoded values only for an output error (measured on the CPU).
 */
async function roundTripOnGpu(
  run: Run,
  gpu: GpuQuantizer,
  metrics: GpuMetrics,
  dev: LabDevice,
  x: Float32Array,
  shape: MatrixShape,
  offset: number,
  opts: RoundTripOptions,
  grams: OutputErrorGrams | undefined,
): Promise<void> {
  const input = uploadWeights(dev.device, x, "pipeline x");
  try {
    const trip = await gpu.roundTrip(input, shape, { ...opts, bytes: run.bytes !== undefined });
    try {
      await metrics.add(input.buffer, trip.decoded, shape.rows, opts.signal);
      if (grams && run.outputSums) {
        const y = new Float32Array((await readBack(dev.device, trip.decoded, x.length * 4, opts.signal)).buffer);
        addOutputError(run, x, y, shape, grams);
      }
    } finally {
      trip.decoded.destroy();
    }
    if (trip.bytes) run.bytes!.set(trip.bytes, offset);
  } finally {
    input.buffer.destroy();
  }
}

/**
 * The error of one piece decoded on the CPU side (a whole-tensor format larger than one binding), measured on
 * the GPU: x and y go up here.
 */
async function measureOnGpu(metrics: GpuMetrics, dev: LabDevice, x: Float32Array, y: Float32Array, rows: number, signal?: AbortSignal): Promise<void> {
  const xb = uploadStorage(dev.device, x, "pipeline x");
  const yb = uploadStorage(dev.device, y, "pipeline y");
  try {
    await metrics.add(xb, yb, rows, signal);
  } finally {
    xb.destroy();
    yb.destroy();
  }
}
