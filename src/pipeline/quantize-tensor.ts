/**
 * One tensor through a list of formats: the orchestration the quantization worker and the CLI share.
 *
 * The tensor is read once, in chunks of whole rows (readTensorRows), and every chunk goes through every
 * format: encoded (on the GPU when the device has a kernel for the format, else with the CPU reference),
 * decoded, and compared with the original (src/quant/metrics.ts). Per format the result is the metrics, the
 * size, optionally the packed bytes (rows back to back, as GGUF stores them), and where it ran and why.
 *
 * What goes wrong for one format stays with that format: a row length it cannot take (with llama.cpp's
 * fallback), a tensor too large to hold whole, a GPU kernel that fails (the format finishes on the CPU).
 * NaN/Inf weights fail every format, naming the first one's row and column. A lost device moves every
 * format still running to the CPU reference; since GPU and CPU produce the same bytes, what the GPU had
 * finished is kept and the result says where the switch happened. Only cancelling (the AbortSignal,
 * checked between chunks) ends the whole job.
 *
 * Which formats have kernels is whatever src/gpu/quantizer.ts has registered: the code that creates the
 * device (the quantization worker, the CLI's webgpu backend) imports src/gpu/kernels.ts. This module does
 * not, so it stays loadable where WGSL imports are not (plain Node tools, the e2e tests' expectations).
 */
import { DTYPE_BYTES } from "../formats/dtypes.ts";
import { DEFAULT_CHUNK_BYTES, readTensorRows, tensorRowLayout, type TensorChunk } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import type { LabDevice } from "../gpu/device.ts";
import { gpuQuantizerFor, maxRowsPerChunk, type GpuQuantizer } from "../gpu/quantizer.ts";
import { assertFinite, isQuantInputError, type QuantInputError, type QuantInputProblem } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { Metrics, metricsBlockSize, sizeMetrics, type ErrorMetricsWithBlocks, type SizeMetrics } from "../quant/metrics.ts";

export type RanOn = "gpu" | "cpu";

/** Why a format did not produce numbers. */
export interface FormatFailure {
  /** The QuantInputError's problem, "too-large" (the tensor cannot be held whole), or "failed" (anything else). */
  problem: QuantInputProblem | "too-large" | "failed";
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
    }
  | { format: string; ok: false; error: FormatFailure };

export interface QuantizeProgress {
  /** The format that just finished a piece of the tensor. */
  format: string;
  /** Source bytes processed so far, summed over the formats. */
  doneBytes: number;
  /** The tensor's bytes times the number of formats. */
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
}

export interface TensorQuantization {
  tensor: string;
  shape: MatrixShape;
  /** One entry per requested format, in the order asked. */
  results: FormatResult[];
}

export const DEFAULT_MAX_WHOLE_TENSOR_BYTES = 256 * 1024 * 1024;

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
  metrics?: Metrics;
  bytes?: Uint8Array;
  /** CPU reference output buffers, reused from piece to piece. */
  scratchQ?: Uint8Array;
  scratchY?: Float32Array;
  failure?: FormatFailure;
}

const MiB = 1024 * 1024;

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && e.name === "AbortError";
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
  const f32Bytes = rows * cols * 4;
  const maxWhole = opts.maxWholeTensorBytes ?? DEFAULT_MAX_WHOLE_TENSOR_BYTES;

  if (device) watchLoss(device);
  const lost = () => (device ? lostDevices.get(device) : undefined);

  const runs = formats.map((format): Run => {
    const run: Run = { format, whole: !encodesRowsIndependently(format), rowsDone: 0, rowsOnGpu: 0 };
    const fail = (failure: FormatFailure): Run => ({ ...run, failure });
    const check = format.checkRowLength(cols);
    if (!check.ok) {
      return fail({ problem: "row-length", message: `tensor "${tensor.name}": ${check.reason}`, fallback: check.fallback });
    }
    if (rows * cols === 0) return fail({ problem: "shape", message: `tensor "${tensor.name}" holds no weights` });
    if (run.whole && f32Bytes > maxWhole) {
      return fail({
        problem: "too-large",
        message:
          `tensor "${tensor.name}": ${format.id} encodes the whole tensor at once, and its ${(f32Bytes / MiB).toFixed(0)} MiB ` +
          `as float32 are above the ${(maxWhole / MiB).toFixed(0)} MiB the lab holds in memory`,
      });
    }
    if (!device) {
      run.why = opts.noDeviceReason ?? "no WebGPU device";
      return run;
    }
    const gpu = gpuQuantizerFor(device, format);
    if (!gpu) {
      run.why = `no WGSL kernel for ${format.id} yet`;
    } else if (run.whole && rows > maxRowsPerChunk(device, format, cols)) {
      gpu.destroy();
      run.why = `the whole tensor does not fit in one GPU buffer binding (${(f32Bytes / MiB).toFixed(0)} MiB as float32)`;
    } else {
      run.gpu = gpu;
    }
    return run;
  });

  const active = () => runs.filter((r) => !r.failure);
  try {
    if (active().length > 0) await streamThrough(tensor, shape, runs, active, { ...opts, lost });
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
      metrics: run.metrics!.result(),
      size: sizeMetrics(run.format, shape, tensor.dtype),
    };
    if (run.rowsOnGpu !== rows) result.why = run.why;
    if (run.bytes) result.bytes = run.bytes;
    return result;
  });
  return { tensor: tensor.name, shape, results };
}

/** Reads the tensor once and feeds every chunk to every format still running. */
async function streamThrough(
  tensor: TensorInfo,
  shape: MatrixShape,
  runs: Run[],
  active: () => Run[],
  opts: QuantizeTensorOptions & { lost: () => string | undefined },
): Promise<void> {
  const { rows, cols } = shape;
  const { signal } = opts;
  for (const run of active()) {
    run.metrics = new Metrics(shape, { blockSize: metricsBlockSize(run.format) });
    if (opts.keepBytes) run.bytes = new Uint8Array(run.format.encodedBytes(shape));
  }
  // Whole when some format needs the whole tensor, else in chunks of streamRows.
  const streamRows = Math.max(1, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / (cols * 4)));
  const chunkRows = active().some((r) => r.whole) ? rows : streamRows;
  const sourceRowBytes = cols * DTYPE_BYTES[tensor.dtype];
  const totalBytes = tensor.bytes * runs.length;
  let doneBytes = 0;
  const countDone = (run: Run, pieceRows: number) => {
    doneBytes += pieceRows * sourceRowBytes;
    opts.onProgress?.({ format: run.format.id, doneBytes, totalBytes });
  };
  // Formats that failed before starting count as done, so the progress ends at the total.
  for (const run of runs) if (run.failure) countDone(run, rows);

  for await (const chunk of readTensorRows(tensor, { chunkBytes: chunkRows * sourceRowBytes, signal, reuseBuffers: true })) {
    signal?.throwIfAborted();
    try {
      assertFinite(chunk.values, { rows: chunk.rows, cols }, tensor.name, chunk.firstRow);
    } catch (e) {
      if (!isQuantInputError(e)) throw e;
      const failure: FormatFailure = { problem: e.problem, message: e.message, row: e.row, col: e.col };
      for (const run of active()) run.failure = failure;
      return;
    }
    for (const run of active()) {
      await encodeChunk(run, chunk, shape, {
        device: opts.device,
        signal,
        imatrix: opts.imatrix,
        tensorName: tensor.name,
        cpuPieceRows: streamRows,
        lost: opts.lost,
        piecesDone: (pieceRows) => countDone(run, pieceRows),
      });
      // A format that failed half-way counts its remaining rows as done.
      if (run.failure) countDone(run, rows - run.rowsDone);
    }
  }
}

/**
 * Encodes and decodes one chunk with one format, in pieces (what one GPU binding holds; on the CPU, pieces of
 * the streaming chunk size so a cancel is seen between them), and adds them to the format's metrics and
 * bytes. A GPU failure moves the format to the CPU for the rest of the tensor.
 */
async function encodeChunk(
  run: Run,
  chunk: TensorChunk,
  shape: MatrixShape,
  ctx: {
    device?: LabDevice;
    signal?: AbortSignal;
    imatrix?: Float32Array;
    tensorName: string;
    cpuPieceRows: number;
    lost: () => string | undefined;
    piecesDone: (rows: number) => void;
  },
): Promise<void> {
  const { format } = run;
  const { cols } = shape;
  const { device, signal, tensorName } = ctx;
  const encodeOpts = { imatrix: ctx.imatrix, tensorName };
  const fail = (e: QuantInputError) => {
    run.failure = { problem: e.problem, message: e.withTensor(tensorName).message, fallback: e.fallback, row: e.row, col: e.col };
  };
  const toCpu = (why: string) => {
    const at = `after ${run.rowsDone} of ${shape.rows} rows on the GPU`;
    run.why = `${why} ${at}; the rest ran on the CPU reference`;
    run.gpu?.destroy();
    run.gpu = undefined;
  };

  for (let first = 0; first < chunk.rows; ) {
    const lost = ctx.lost();
    if (run.gpu && lost) toCpu(`the GPU device was lost (${lost})`);
    const pieceRows = run.whole ? chunk.rows : run.gpu && device ? maxRowsPerChunk(device, format, cols) : ctx.cpuPieceRows;
    const rows = Math.min(pieceRows, chunk.rows - first);
    const x = chunk.values.subarray(first * cols, (first + rows) * cols);
    const pieceShape = { rows, cols };
    let encoded: { q: Uint8Array; y: Float32Array } | undefined;
    if (run.gpu) {
      try {
        const q = await run.gpu.encode(x, pieceShape, { ...encodeOpts, signal });
        encoded = { q, y: await run.gpu.decode(q, pieceShape, { signal }) };
        run.rowsOnGpu += rows;
      } catch (e) {
        if (isAbort(e) || signal?.aborted) throw e;
        if (isQuantInputError(e)) return fail(e);
        // A device loss behind the failure is reported by device.lost a moment later: let it arrive.
        await yieldToEventLoop();
        const lostNow = ctx.lost();
        toCpu(lostNow ? `the GPU device was lost (${lostNow})` : `the GPU kernel failed (${describeError(e)})`);
      }
    }
    const offset = run.whole ? 0 : format.encodedBytes({ rows: chunk.firstRow + first, cols });
    if (encoded) {
      run.bytes?.set(encoded.q, offset);
    } else {
      // The CPU reference writes straight into the kept bytes, or into scratch reused piece after piece.
      const out = run.bytes?.subarray(offset) ?? (run.scratchQ = grown(run.scratchQ, format.encodedBytes(pieceShape), Uint8Array));
      run.scratchY = grown(run.scratchY, rows * cols, Float32Array);
      try {
        const q = format.encode(x, pieceShape, { ...encodeOpts, out });
        encoded = { q, y: format.decode(q, pieceShape, run.scratchY) };
      } catch (e) {
        if (isQuantInputError(e)) return fail(e);
        throw e;
      }
    }
    run.metrics!.add(x, encoded.y);
    run.rowsDone += rows;
    first += rows;
    ctx.piecesDone(rows);
    await yieldToEventLoop();
    signal?.throwIfAborted();
  }
}
