/**
 * The heatmap of one tensor through up to a few formats: the view's rows stream through each format (encoded
 * and decoded on the GPU where a kernel exists, else with the CPU reference) and every piece is pooled into
 * the view's grid (src/quant/heatmap.ts; on the GPU with shaders/heatmap.wgsl), with the original weights
 * pooled once more on their own for the "weights" panel.
 *
 * Only the rows the view shows are read, for formats that encode rows independently; the formats that need
 * the whole tensor (bitsandbytes, per-tensor integers) read it whole (up to maxWholeTensorBytes) and pool
 * the view's part. A format that cannot take the tensor (row length, NaN weights, too large) gets a failure
 * that says why and what llama.cpp would use instead; the weights panel still draws, NaN cells marked.
 * A GPU failure moves that format to the CPU reference for the rest of the view (the piece is redone).
 */
import { errorText } from "../common/error-text.ts";
import { readTensorRows, tensorRowLayout, type TensorChunk } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import type { LabDevice } from "../gpu/device.ts";
import { GpuHeatmapPooler } from "../gpu/heatmap.ts";
import { readBack } from "../gpu/buffers.ts";
import { gpuQuantizerFor, maxRowsPerChunk, uploadWeights, type DeviceWeights, type GpuQuantizer } from "../gpu/quantizer.ts";
import { assertFinite, isQuantInputError } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import {
  addToHistogram,
  HeatmapAccumulator,
  heatmapGrid,
  HISTOGRAM_BINS,
  poolPiece,
  ScaleAccumulator,
  type HeatmapCells,
  type HeatmapGrid,
  type HeatmapView,
  type PiecePartials,
} from "../quant/heatmap.ts";
import { weightBlock } from "../quant/block-params.ts";
import { calibratedTensor, type LayerCalibration } from "./calibrated-tensor.ts";
import type { QuantizeLayerOptions } from "./quantize-layer.ts";
import { methodName } from "../quant/calibrated.ts";
import {
  DEFAULT_MAX_WHOLE_TENSOR_BYTES,
  encodesRowsIndependently,
  whyNotGgmlOnGpu,
  type CalibrationKind,
  type FormatFailure,
  type RanOn,
} from "./quantize-tensor.ts";

export type HeatmapPanel =
  | {
      /** A format id, or "weights" for the original values. */
      format: string;
      ok: true;
      ranOn: RanOn;
      /** Why it ran on the CPU, when it did. */
      why?: string;
      /** GPTQ / AWQ: where the activations came from ("model run on calibration.txt, ..." or synthetic). */
      calibration?: { kind: CalibrationKind; tokens: number; label: string };
      cells: HeatmapCells;
      /** The view's weights (weights panel) or errors y - x, on src/quant/heatmap.ts's log-magnitude bins. */
      histogram: Float64Array;
    }
  | { format: string; ok: false; error: FormatFailure };

export interface TensorHeatmap {
  tensor: string;
  shape: MatrixShape;
  grid: HeatmapGrid;
  /** The weights panel first, then one per format in the order asked. */
  panels: HeatmapPanel[];
}

export interface HeatmapOptions {
  device?: LabDevice;
  noDeviceReason?: string;
  imatrix?: Float32Array;
  signal?: AbortSignal;
  /** Fraction of the work done, 0..1. */
  onProgress?: (done: number) => void;
  maxWholeTensorBytes?: number;
  /** Float32 bytes per streamed piece (default 8 MiB). */
  pieceBytes?: number;
  /** The layer's calibration for GPTQ / AWQ panels (else synthetic activations). */
  calibration?: QuantizeLayerOptions["calibration"];
}

const DEFAULT_PIECE_BYTES = 8 * 1024 * 1024;
const MiB = 1024 * 1024;

interface PanelRun {
  format: QuantFormat | undefined; // undefined: the weights, or a GPTQ/AWQ setting
  /** A GPTQ/AWQ setting ("gptq4-g128"). */
  calibratedId?: string;
  acc: HeatmapAccumulator;
  histogram: Float64Array;
  /** Block scales, for formats with blocks. */
  scales?: ScaleAccumulator;
  gpu?: GpuQuantizer;
  why?: string;
  failure?: FormatFailure;
  rowsOnGpu: number;
  calibration?: { kind: CalibrationKind; tokens: number; label: string };
}


/** Pools the view of `tensor` for the weights and each format; see the module comment. */
export async function heatmapTensor(
  tensor: TensorInfo,
  /** Registry formats, or GPTQ/AWQ settings by name ("gptq4-g128": src/pipeline/calibrated-tensor.ts). */
  formats: readonly (QuantFormat | string)[],
  view: HeatmapView,
  canvas: { cols: number; rows: number },
  opts: HeatmapOptions = {},
): Promise<TensorHeatmap> {
  const { device, signal } = opts;
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const shape = { rows, cols };
  const grid = heatmapGrid(shape, view, canvas.cols, canvas.rows);
  const maxWhole = opts.maxWholeTensorBytes ?? DEFAULT_MAX_WHOLE_TENSOR_BYTES;
  const ggmlOnCpu = device && formats.some((f) => typeof f !== "string" && f.family === "gguf") ? await whyNotGgmlOnGpu(device) : undefined;
  let pooler: GpuHeatmapPooler | undefined;
  if (device) {
    try {
      pooler = await GpuHeatmapPooler.create(device, grid, cols);
    } catch (e) {
      console.warn("The heatmap kernel is not available, pooling on the CPU:", e);
    }
  }

  const newRun = (format: QuantFormat | undefined): PanelRun => {
    const acc = new HeatmapAccumulator(grid);
    const run: PanelRun = { format, acc, histogram: new Float64Array(HISTOGRAM_BINS), rowsOnGpu: 0 };
    if (format && format.family !== "cast") run.scales = new ScaleAccumulator(acc.cells);
    return run;
  };
  const runs: PanelRun[] = [newRun(undefined)];
  const calibrated: PanelRun[] = [];
  for (const format of formats) {
    if (typeof format === "string") {
      const run: PanelRun = { format: undefined, calibratedId: format, acc: new HeatmapAccumulator(grid), histogram: new Float64Array(HISTOGRAM_BINS), rowsOnGpu: 0 };
      run.scales = new ScaleAccumulator(run.acc.cells);
      runs.push(run);
      calibrated.push(run);
      continue;
    }
    const run = newRun(format);
    const check = format.checkRowLength(cols);
    if (!check.ok) {
      run.failure = { problem: "row-length", message: `tensor "${tensor.name}": ${check.reason}`, fallback: check.fallback };
    } else if (!encodesRowsIndependently(format) && rows * cols * 4 > maxWhole) {
      run.failure = {
        problem: "too-large",
        message: `tensor "${tensor.name}": ${format.id} encodes the whole tensor at once, and its ${((rows * cols * 4) / MiB).toFixed(0)} MiB as float32 are above the ${(maxWhole / MiB).toFixed(0)} MiB the lab holds in memory`,
      };
    } else if (!device) run.why = opts.noDeviceReason ?? "no WebGPU device";
    else if (ggmlOnCpu && format.family === "gguf") run.why = ggmlOnCpu;
    else {
      run.gpu = gpuQuantizerFor(device, format);
      if (!run.gpu) run.why = `no WGSL kernel for ${format.id} yet`;
    }
    runs.push(run);
  }

  const pool: Pool = async (x, y, firstRow, n, buffers) => {
    if (pooler && x.length * 4 <= device!.info.limits.maxStorageBufferBindingSize) {
      try {
        return await (buffers ? pooler.pool(buffers.x, buffers.y, firstRow, n, signal) : pooler.poolArrays(x, y, firstRow, n, signal));
      } catch (e) {
        if (signal?.aborted) throw e;
        pooler = undefined; // the CPU pools from here on
      }
    }
    return poolPiece(x, y, cols, firstRow, n, grid);
  };

  const pieceRows = Math.max(1, Math.floor((opts.pieceBytes ?? DEFAULT_PIECE_BYTES) / (cols * 4)));
  const rowWise = runs.filter((r) => r.format && !r.failure && encodesRowsIndependently(r.format));
  const whole = runs.filter((r) => r.format && !r.failure && !encodesRowsIndependently(r.format));
  const totalWork = view.rows * (1 + rowWise.length) + rows * (whole.length + calibrated.length);
  let done = 0;
  const progress = (work: number) => {
    done += work;
    opts.onProgress?.(Math.min(1, done / totalWork));
  };

  try {
    // The view's rows: the weights and every row-wise format.
    for await (const chunk of readTensorRows(tensor, { chunkBytes: pieceRows * cols * 4, signal, firstRow: view.row0, rowCount: view.rows })) {
      signal?.throwIfAborted();
      // The chunk goes up once, for the weights' cells and every GPU format's round trip (when it fits a binding).
      const input = pooler && chunk.values.length * 4 <= device!.info.limits.maxStorageBufferBindingSize ? uploadWeights(device!.device, chunk.values, "heatmap x") : undefined;
      try {
        const weights = await pool(chunk.values, chunk.values, chunk.firstRow, chunk.rows, input && { x: input.buffer, y: input.buffer });
        if (weights) runs[0]!.acc.add(weights);
        forViewRows(view, chunk.firstRow, chunk.rows, cols, (at, n) => addToHistogram(runs[0]!.histogram, chunk.values.subarray(at, at + n)));
        progress(chunk.rows);
        for (const run of rowWise) {
          if (run.failure) continue;
          await encodePiece(run, chunk, cols, view, tensor.name, opts, pool, input);
          progress(chunk.rows);
        }
      } finally {
        input?.buffer.destroy();
      }
    }
    // Formats that encode the tensor whole.
    if (whole.length > 0) {
      const x = new Float32Array(rows * cols);
      for await (const chunk of readTensorRows(tensor, { signal })) x.set(chunk.values, chunk.firstRow * cols);
      for (const run of whole) {
        await encodePiece(run, { firstRow: 0, rows, values: x }, cols, view, tensor.name, opts, pool);
        progress(rows);
      }
    }
    // GPTQ / AWQ: the whole tensor, on the layer's calibration (else synthetic activations).
    const layerCalibration = calibrated.length > 0 ? await opts.calibration?.(tensor, shape) : undefined;
    for (const run of calibrated) {
      await calibratedPanel(run, tensor, cols, view, pool, signal, layerCalibration);
      progress(rows);
    }
  } finally {
    for (const run of runs) run.gpu?.destroy();
  }

  const panels = runs.map((run): HeatmapPanel => {
    const format = run.format?.id ?? run.calibratedId ?? "weights";
    if (run.failure) return { format, ok: false, error: run.failure };
    const onGpu = run.format || run.calibratedId ? run.rowsOnGpu > 0 && !run.why : pooler !== undefined;
    const panel: HeatmapPanel = { format, ok: true, ranOn: onGpu ? "gpu" : "cpu", cells: run.acc.cells, histogram: run.histogram };
    if (!onGpu && run.why) panel.why = run.why;
    if (run.calibration) panel.calibration = run.calibration;
    return panel;
  });
  return { tensor: tensor.name, shape, grid, panels };
}

/**
 * Pools a piece: x and y on the CPU, and, when they are on the device already, their buffers (read in place).
 * Undefined when the piece misses the view.
 */
type Pool = (x: Float32Array, y: Float32Array, firstRow: number, n: number, buffers?: { x: GPUBuffer; y: GPUBuffer }) => Promise<PiecePartials | undefined>;

/**
 * Encodes and decodes one piece with one format (GPU, else CPU), pooling the result. With the piece on the
 * device (`input`), the GPU's round trip leaves the decoded values there for the pooling kernel; they come
 * back to the CPU once, for the histogram, and the bytes only for the scales.
 */
async function encodePiece(
  run: PanelRun,
  chunk: Pick<TensorChunk, "firstRow" | "rows" | "values">,
  cols: number,
  view: HeatmapView,
  tensorName: string,
  opts: HeatmapOptions,
  pool: Pool,
  input?: DeviceWeights,
): Promise<void> {
  const format = run.format!;
  const shape = { rows: chunk.rows, cols };
  const encodeOpts = { imatrix: opts.imatrix, tensorName };
  let y: Float32Array | undefined;
  let q: Uint8Array | undefined;
  let partials: PiecePartials | undefined;
  try {
    // Checked here so the failure names the tensor's row, not the piece's.
    assertFinite(chunk.values, shape, tensorName, chunk.firstRow);
    if (run.gpu) {
      try {
        if (input && opts.device && chunk.rows <= maxRowsPerChunk(opts.device, format, cols)) {
          const trip = await run.gpu.roundTrip(input, shape, { ...encodeOpts, signal: opts.signal, bytes: run.scales !== undefined });
          try {
            q = trip.bytes;
            y = new Float32Array((await readBack(opts.device.device, trip.decoded, chunk.values.length * 4, opts.signal)).buffer);
            partials = await pool(chunk.values, y, chunk.firstRow, chunk.rows, { x: input.buffer, y: trip.decoded });
          } finally {
            trip.decoded.destroy();
          }
        } else {
          q = await run.gpu.encode(chunk.values, shape, { ...encodeOpts, signal: opts.signal });
          y = await run.gpu.decode(q, shape, { signal: opts.signal });
        }
        run.rowsOnGpu += chunk.rows;
      } catch (e) {
        if (opts.signal?.aborted || isQuantInputError(e)) throw e;
        run.gpu.destroy();
        run.gpu = undefined;
        run.why = `the GPU kernel failed (${errorText(e)}); the CPU reference took over`;
      }
    }
    if (!y) {
      q = format.encode(chunk.values, shape, encodeOpts);
      y = format.decode(q, shape);
    }
  } catch (e) {
    if (!isQuantInputError(e)) throw e;
    const named = e.withTensor(tensorName);
    run.failure = { problem: e.problem, message: named.message, fallback: e.fallback, row: e.row, col: e.col };
    return;
  }
  partials ??= await pool(chunk.values, y, chunk.firstRow, chunk.rows);
  if (partials) run.acc.add(partials);
  const scratch = new Float32Array(Math.min(cols, view.cols));
  forViewRows(view, chunk.firstRow, chunk.rows, cols, (at, n) => addToHistogram(run.histogram, chunk.values.subarray(at, at + n), y!.subarray(at, at + n), scratch));
  if (run.scales && q) {
    const bytes = q;
    for (let r = Math.max(chunk.firstRow, view.row0); r < Math.min(chunk.firstRow + chunk.rows, view.row0 + view.rows); r++) {
      const first = weightBlock(format, bytes, shape, r - chunk.firstRow, view.col0)!;
      const along = Math.min(first.subSize ?? first.size, cols);
      run.scales.addRow(r, along, (c) => weightBlock(format, bytes, shape, r - chunk.firstRow, c)!.scale);
    }
  }
}

/** A GPTQ/AWQ panel: the method on the whole tensor (CPU reference, synthetic calibration), pooled against the weights. */
async function calibratedPanel(
  run: PanelRun,
  tensor: TensorInfo,
  cols: number,
  view: HeatmapView,
  pool: Pool,
  signal?: AbortSignal,
  calibration?: LayerCalibration,
): Promise<void> {
  let result;
  try {
    result = await calibratedTensor(tensor, run.calibratedId!, signal, calibration);
    run.calibration = { kind: result.calibration.kind, tokens: result.calibration.tokens, label: result.calibration.label };
  } catch (e) {
    if (!isQuantInputError(e)) throw e;
    run.failure = { problem: e.problem, message: e.withTensor(tensor.name).message };
    return;
  }
  const rows = result.q.length / cols;
  const x = new Float32Array(rows * cols);
  for await (const c of readTensorRows(tensor, { signal })) x.set(c.values, c.firstRow * cols);
  const partials = await pool(x, result.q, 0, rows);
  if (partials) run.acc.add(partials);
  forViewRows(view, 0, rows, cols, (at, n) => addToHistogram(run.histogram, x.subarray(at, at + n), result.q.subarray(at, at + n)));
  const size = result.group > 0 ? result.group : cols;
  for (let r = view.row0; r < view.row0 + view.rows; r++) {
    run.scales!.addRow(r, size, (c) => result.scales[r * result.nGroups + Math.floor(c / size)]!);
  }
  const name = methodName(result.method.method);
  run.why =
    result.calibration.kind === "synthetic"
      ? `${name} ran on the CPU reference with synthetic calibration (${result.calibration.tokens} tokens of random activations with outlier channels, not the model's)`
      : `${name} ran on the CPU reference, calibrated on the ${result.calibration.label}`;
}

/** Calls fn(offset, length) for each row of a piece inside the view: the view's columns of that row. */
function forViewRows(view: HeatmapView, firstRow: number, rows: number, cols: number, fn: (at: number, n: number) => void): void {
  const a = Math.max(firstRow, view.row0);
  const b = Math.min(firstRow + rows, view.row0 + view.rows);
  for (let r = a; r < b; r++) fn((r - firstRow) * cols + view.col0, view.cols);
}
