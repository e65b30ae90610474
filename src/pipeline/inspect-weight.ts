/**
 * One weight under a few formats, for the heatmap's hover: its original value, what each format decodes it
 * to, the error, and the block it sits in with that block's scale and minimum (src/quant/block-params.ts).
 * Always the CPU reference (the GPU kernels produce the same bytes), from the weight's row alone for formats
 * that encode rows independently; formats that need the whole tensor encode it once and keep the bytes for
 * the next hovers over the same tensor (a small cache: the last few tensor x format pairs).
 */
import { readTensorRows, tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { weightBlock, type WeightBlock } from "../quant/block-params.ts";
import { assertFinite, isQuantInputError } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { calibratedTensor, type LayerCalibration } from "./calibrated-tensor.ts";
import type { QuantizeLayerOptions } from "./quantize-layer.ts";
import { DEFAULT_MAX_WHOLE_TENSOR_BYTES, encodesRowsIndependently, type FormatFailure } from "./quantize-tensor.ts";

export type WeightUnderFormat =
  | { format: string; ok: true; value: number; error: number; block?: WeightBlock }
  | { format: string; ok: false; error: FormatFailure };

export interface WeightInspection {
  tensor: string;
  row: number;
  col: number;
  /** The original weight (float32, as read). */
  value: number;
  formats: WeightUnderFormat[];
}

const WHOLE_CACHE_ENTRIES = 4;
/** Encoded whole tensors: key tensor identity + format. */
const wholeCache = new Map<string, { q: Uint8Array; y: Float32Array }>();

function tensorKey(t: TensorInfo): string {
  return `${t.name}\u0000${t.offset}\u0000${t.bytes}`;
}

async function readRows(t: TensorInfo, cols: number, firstRow: number, rowCount: number, signal?: AbortSignal): Promise<Float32Array> {
  const x = new Float32Array(rowCount * cols);
  for await (const chunk of readTensorRows(t, { firstRow, rowCount, signal })) x.set(chunk.values, (chunk.firstRow - firstRow) * cols);
  return x;
}

/** The weight at (row, col) of `tensor` and what each format makes of it. */
export async function inspectWeight(
  tensor: TensorInfo,
  /** Registry formats, or GPTQ/AWQ settings by name (src/pipeline/calibrated-tensor.ts). */
  formats: readonly (QuantFormat | string)[],
  row: number,
  col: number,
  opts: { signal?: AbortSignal; imatrix?: Float32Array; maxWholeTensorBytes?: number; calibration?: QuantizeLayerOptions["calibration"] } = {},
): Promise<WeightInspection> {
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  if (!(Number.isInteger(row) && Number.isInteger(col) && row >= 0 && row < rows && col >= 0 && col < cols)) {
    throw new RangeError(`weight (${row}, ${col}) is outside tensor "${tensor.name}" (${rows}x${cols})`);
  }
  const x = await readRows(tensor, cols, row, 1, opts.signal);
  const value = x[col]!;
  const out: WeightUnderFormat[] = [];
  const layerCalibration = formats.some((f) => typeof f === "string") ? await opts.calibration?.(tensor, { rows, cols }) : undefined;
  for (const format of formats) {
    if (typeof format === "string") {
      out.push(await underCalibrated(tensor, format, row, col, cols, value, opts.signal, layerCalibration));
      continue;
    }
    const check = format.checkRowLength(cols);
    if (!check.ok) {
      out.push({ format: format.id, ok: false, error: { problem: "row-length", message: `tensor "${tensor.name}": ${check.reason}`, fallback: check.fallback } });
      continue;
    }
    try {
      out.push(
        encodesRowsIndependently(format)
          ? underRowFormat(format, x, row, col, cols, tensor.name, opts.imatrix)
          : await underWholeFormat(format, tensor, { rows, cols }, row, col, opts),
      );
    } catch (e) {
      if (!isQuantInputError(e)) throw e;
      out.push({ format: format.id, ok: false, error: { problem: e.problem, message: e.withTensor(tensor.name).message, fallback: e.fallback, row: e.row, col: e.col } });
    }
  }
  return { tensor: tensor.name, row, col, value, formats: out };
}

async function underCalibrated(
  tensor: TensorInfo,
  id: string,
  row: number,
  col: number,
  cols: number,
  x: number,
  signal?: AbortSignal,
  calibration?: LayerCalibration,
): Promise<WeightUnderFormat> {
  try {
    const r = await calibratedTensor(tensor, id, signal, calibration);
    const y = r.q[row * cols + col]!;
    const size = r.group > 0 ? r.group : cols;
    const g = Math.floor(col / size);
    const scale = r.scales[row * r.nGroups + g]!;
    const block: WeightBlock = {
      index: row * r.nGroups + g,
      size,
      scale,
      min: Math.fround(-r.zeros[row * r.nGroups + g]! * scale),
      scaleName: r.method.method === "awq" ? "group scale of W·s (AWQ)" : "group scale",
    };
    return { format: id, ok: true, value: y, error: Math.fround(y - x), block };
  } catch (e) {
    if (!isQuantInputError(e)) throw e;
    return { format: id, ok: false, error: { problem: e.problem, message: e.withTensor(tensor.name).message } };
  }
}

function underRowFormat(format: QuantFormat, x: Float32Array, row: number, col: number, cols: number, tensorName: string, imatrix?: Float32Array): WeightUnderFormat {
  const shape = { rows: 1, cols };
  assertFinite(x, shape, tensorName, row);
  const q = format.encode(x, shape, { imatrix, tensorName });
  const y = format.decode(q, shape)[col]!;
  const block = weightBlock(format, q, shape, 0, col);
  // The block was found in a one-row tensor: number it in the whole tensor.
  if (block) block.index += row * Math.ceil(cols / block.size);
  return { format: format.id, ok: true, value: y, error: Math.fround(y - x[col]!), ...(block ? { block } : {}) };
}

async function underWholeFormat(
  format: QuantFormat,
  tensor: TensorInfo,
  shape: MatrixShape,
  row: number,
  col: number,
  opts: { signal?: AbortSignal; imatrix?: Float32Array; maxWholeTensorBytes?: number },
): Promise<WeightUnderFormat> {
  const maxWhole = opts.maxWholeTensorBytes ?? DEFAULT_MAX_WHOLE_TENSOR_BYTES;
  if (shape.rows * shape.cols * 4 > maxWhole) {
    return {
      format: format.id,
      ok: false,
      error: { problem: "too-large", message: `tensor "${tensor.name}": ${format.id} encodes the whole tensor at once, and it is larger than the lab holds in memory` },
    };
  }
  const key = `${tensorKey(tensor)}\u0000${format.id}`;
  let entry = wholeCache.get(key);
  if (!entry) {
    const x = await readRows(tensor, shape.cols, 0, shape.rows, opts.signal);
    assertFinite(x, shape, tensor.name);
    const q = format.encode(x, shape, { imatrix: opts.imatrix, tensorName: tensor.name });
    entry = { q: q.slice(), y: format.decode(q, shape) };
    wholeCache.set(key, entry);
    if (wholeCache.size > WHOLE_CACHE_ENTRIES) wholeCache.delete(wholeCache.keys().next().value!);
  }
  const x = (await readRows(tensor, shape.cols, row, 1, opts.signal))[col]!;
  const y = entry.y[row * shape.cols + col]!;
  const block = weightBlock(format, entry.q, shape, row, col);
  return { format: format.id, ok: true, value: y, error: Math.fround(y - x), ...(block ? { block } : {}) };
}
