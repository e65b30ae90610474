/**
 * A whole model through a list of formats, tensor by tensor: the orchestration the quantization worker's
 * whole-model run and the CLI's `quantize` share, over quantizeTensor (which streams each tensor in chunks
 * through the GPU or the CPU reference).
 *
 * Each tensor's results are handed to `onTensor` as soon as the tensor is done, so a table can fill as the
 * run goes; `onProgress` hears how far the run is over all tensors, with an estimate of the time left.
 * Results kept from an earlier run (`cached`, per tensor and format) are handed over at once and not
 * computed again; newly computed ones go to `save` (a cache that fails does not stop the run).
 *
 * What a format would really store for each tensor (storedSize), which the model totals add up:
 * - the format's own bytes when it took the tensor;
 * - a row length the format cannot take: llama.cpp's fallback format (q5_0 for q4_K on rows of 64, f16
 *   when the row is not a multiple of 32 either; per-channel for a group that does not divide the row),
 *   or the tensor as stored when the fallback cannot take the row either;
 * - a tensor too large to measure for a format that needs it whole: the format's own bytes (the size does
 *   not depend on the values; only the error is missing);
 * - NaN/Inf weights or an empty tensor: the tensor as stored (llama.cpp refuses to quantize such data).
 */
import { groupOf } from "../formats/catalog.ts";
import { isDType, type DType, type TensorDType } from "../formats/dtypes.ts";
import { tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { isDecodable } from "../formats/tensor-data.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import type { ErrorMetrics } from "../quant/metrics.ts";
import { findFormat } from "../quant/registry.ts";
import { isCalibrated, quantizeLayer, type LabFormat, type QuantizeLayerOptions } from "./quantize-layer.ts";
import { MAX_CALIBRATED_WORK } from "./calibrated-tensor.ts";
import type { FormatFailure, FormatResult, OutputError, RanOn } from "./quantize-tensor.ts";

/** The dtypes holding weights worth quantizing; integer and boolean tensors (ids, masks) are left out. */
export const QUANTIZABLE_DTYPES: ReadonlySet<DType> = new Set<DType>(["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"]);

/**
 * Float tensors, and GGUF tensors in a ggml block type the lab decodes (re-quantized from their decoded
 * values). GGUF types the lab cannot decode (IQ*, TQ*...) are left out like integer tensors.
 */
export function isQuantizable(t: Pick<TensorInfo, "dtype">): boolean {
  return isDType(t.dtype) ? QUANTIZABLE_DTYPES.has(t.dtype) : isDecodable(t);
}

export function quantizableTensors(tensors: readonly TensorInfo[]): TensorInfo[] {
  return tensors.filter(isQuantizable);
}

/** What a format would store for one tensor; see the module comment. */
export interface StoredSize {
  bytes: number;
  /** The format id the bytes are in, or the source dtype when the tensor stays as stored. */
  as: string;
  /** "format": the format itself; "fallback": llama.cpp's fallback format; "unmeasured": the format's size, no error measured; "source": kept as stored. */
  kind: "format" | "fallback" | "unmeasured" | "source";
}

/** One tensor in one format, without the per-block error maps and bytes (a table needs neither). */
export type ModelCell =
  | { format: string; ok: true; ranOn: RanOn; why?: string; metrics: ErrorMetrics; bitsPerWeight: number; stored: StoredSize; outputError?: OutputError }
  | { format: string; ok: false; error: FormatFailure; stored: StoredSize };

/** One tensor's row of the results table. */
export interface TensorResults {
  tensor: string;
  dtype: TensorDType;
  shape: MatrixShape;
  params: number;
  /** As stored in the file. */
  bytes: number;
  /** Its layer (groupOf: "model.layers.3"), or the group of everything outside the numbered layers. */
  group: string;
  /**
   * Sum of the squared finite weights, derived from a measured cell (sum e^2 x 10^(SNR/10)); undefined when
   * no cell measured a non-zero error. Layer sensitivity adds it up.
   */
  signalEnergy: number | undefined;
  /** One per format of the run, in its order. */
  cells: ModelCell[];
  /** How many of the cells came from the cache. */
  cachedCells: number;
}

export interface ModelProgress {
  /** The tensor being computed (or the last one). */
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  /** Source bytes processed so far, summed over the formats still to compute (cached cells not counted). */
  doneBytes: number;
  totalBytes: number;
  elapsedMs: number;
  /** Time left at the rate so far; undefined before the first bytes are done. */
  etaMs: number | undefined;
}

/** Cells kept from earlier runs: tensor name -> format id -> cell. */
export type CachedCells = ReadonlyMap<string, ReadonlyMap<string, ModelCell>>;

export interface QuantizeModelOptions extends Pick<QuantizeLayerOptions, "device" | "noDeviceReason" | "signal" | "chunkBytes" | "maxWholeTensorBytes" | "calibration" | "syntheticWhy"> {
  cached?: CachedCells;
  /** Keeps a tensor's newly computed cells; its failure is reported to onCacheError and the run goes on. */
  save?: (tensor: string, cells: ModelCell[]) => Promise<void>;
  onCacheError?: (e: unknown) => void;
  onTensor?: (row: TensorResults) => void;
  onProgress?: (progress: ModelProgress) => void;
  /** Clock in ms (default performance.now). */
  now?: () => number;
}

export interface ModelRun {
  formats: string[];
  rows: TensorResults[];
  computedCells: number;
  cachedCells: number;
}

/** The size `result` stands for; `shape` is the tensor's 2-D layout. */
export function storedSize(tensor: Pick<TensorInfo, "bytes" | "dtype">, shape: MatrixShape, result: FormatResult): StoredSize {
  if (result.ok) return { bytes: result.size.bytesAfter, as: result.format, kind: "format" };
  const { error } = result;
  if (error.problem === "row-length") {
    const fallback = error.fallback ? findFormat(error.fallback) : undefined;
    if (fallback && fallback.checkRowLength(shape.cols).ok) return { bytes: fallback.encodedBytes(shape), as: fallback.id, kind: "fallback" };
  }
  if (error.problem === "too-large") {
    const format = findFormat(result.format);
    if (format) return { bytes: format.encodedBytes(shape), as: format.id, kind: "unmeasured" };
  }
  return { bytes: tensor.bytes, as: tensor.dtype, kind: "source" };
}

/** A pipeline result as a table cell. */
export function modelCell(tensor: Pick<TensorInfo, "bytes" | "dtype">, shape: MatrixShape, result: FormatResult): ModelCell {
  const stored = storedSize(tensor, shape, result);
  if (!result.ok) return { format: result.format, ok: false, error: result.error, stored };
  const { blocks: _blocks, ...metrics } = result.metrics;
  const cell: ModelCell = { format: result.format, ok: true, ranOn: result.ranOn, metrics, bitsPerWeight: result.size.bitsPerWeight, stored };
  if (result.why !== undefined) cell.why = result.why;
  if (result.outputError !== undefined) cell.outputError = result.outputError;
  return cell;
}

/** Sum of x^2 as a measured cell implies it (see TensorResults.signalEnergy). */
export function signalEnergyOf(cells: readonly ModelCell[]): number | undefined {
  for (const c of cells) {
    if (!c.ok) continue;
    const errorEnergy = c.metrics.mse * c.metrics.count;
    if (errorEnergy > 0 && Number.isFinite(c.metrics.snrDb)) return errorEnergy * 10 ** (c.metrics.snrDb / 10);
  }
  return undefined;
}

/** A tensor's table row from its cells (in the run's format order). */
export function tensorResults(tensor: TensorInfo, cells: ModelCell[], cachedCells: number): TensorResults {
  const { rows, rowLength } = tensorRowLayout(tensor);
  return {
    tensor: tensor.name,
    dtype: tensor.dtype,
    shape: { rows, cols: rowLength },
    params: tensor.params,
    bytes: tensor.bytes,
    group: groupOf(tensor.name),
    signalEnergy: signalEnergyOf(cells),
    cells,
    cachedCells,
  };
}

/** Time left at the rate so far. */
export function estimateRemainingMs(elapsedMs: number, doneBytes: number, totalBytes: number): number | undefined {
  if (doneBytes <= 0) return undefined;
  return Math.max(0, (elapsedMs * (totalBytes - doneBytes)) / doneBytes);
}

/**
 * Every tensor through every format (see the module comment). Throws only when cancelled (an AbortError
 * from `signal`) or when a source fails; what goes wrong for one tensor and format stays in its cell.
 */
export async function quantizeModel(tensors: readonly TensorInfo[], formats: readonly LabFormat[], opts: QuantizeModelOptions = {}): Promise<ModelRun> {
  const { signal, cached } = opts;
  const now = opts.now ?? (() => performance.now());
  signal?.throwIfAborted();
  const ids = formats.map((f) => f.id);
  // A run with GPTQ / AWQ settings measures output errors: kept cells from runs without them are computed again.
  const wantsOutputError = formats.some(isCalibrated);
  const plans = tensors.map((tensor) => {
    const kept = cached?.get(tensor.name);
    const { rows, rowLength: cols } = tensorRowLayout(tensor);
    const measurable = wantsOutputError && rows >= 2 && rows * cols * cols <= MAX_CALIBRATED_WORK;
    const missing = formats.filter((f) => {
      const cell = kept?.get(f.id);
      return !cell || (measurable && cell.ok && cell.outputError === undefined);
    });
    return { tensor, kept, missing };
  });
  const totalBytes = plans.reduce((sum, p) => sum + p.tensor.bytes * p.missing.length, 0);
  const start = now();
  let doneBytes = 0;
  const report = (tensor: string, tensorsDone: number, extra: number) => {
    const elapsedMs = now() - start;
    const done = Math.min(totalBytes, doneBytes + extra);
    opts.onProgress?.({ tensor, tensorsDone, tensorsTotal: tensors.length, doneBytes: done, totalBytes, elapsedMs, etaMs: estimateRemainingMs(elapsedMs, done, totalBytes) });
  };

  const rows: TensorResults[] = [];
  let computedCells = 0;
  let cachedCells = 0;
  for (const [i, { tensor, kept, missing }] of plans.entries()) {
    const fresh = new Map<string, ModelCell>();
    if (missing.length > 0) {
      const share = tensor.bytes * missing.length;
      const run = await quantizeLayer(tensor, missing, {
        calibration: opts.calibration,
        syntheticWhy: opts.syntheticWhy,
        device: opts.device,
        noDeviceReason: opts.noDeviceReason,
        signal,
        chunkBytes: opts.chunkBytes,
        maxWholeTensorBytes: opts.maxWholeTensorBytes,
        // A format rerun on the CPU makes the tensor's total grow: count its share of the tensor's bytes.
        onProgress: (p) => report(tensor.name, i, p.totalBytes > 0 ? (share * p.doneBytes) / p.totalBytes : 0),
      });
      for (const r of run.results) fresh.set(r.format, modelCell(tensor, run.shape, r));
      doneBytes += share;
      if (opts.save) {
        try {
          await opts.save(tensor.name, [...fresh.values()]);
        } catch (e) {
          opts.onCacheError?.(e);
        }
      }
    }
    const cells = ids.map((id) => fresh.get(id) ?? kept!.get(id)!);
    const fromCache = ids.length - missing.length;
    computedCells += missing.length;
    cachedCells += fromCache;
    const row = tensorResults(tensor, cells, fromCache);
    rows.push(row);
    opts.onTensor?.(row);
    report(tensor.name, i + 1, 0);
  }
  return { formats: ids, rows, computedCells, cachedCells };
}
