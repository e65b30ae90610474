/**
 * What a quantization format costs and breaks, for one tensor: the error of its dequantized values y against
 * the original x (MSE, RMSE, max |error| and where, SNR, cosine similarity, a per-block error map for the
 * heatmaps) and its size (bits per weight, bytes before and after, share saved).
 *
 * This is the CPU reference, streamed: `new Metrics(shape)`, then `add(xChunk, yChunk)` for consecutive
 * row-major chunks of any length (they need not hold whole rows), then `result()`. Sums are accumulated in
 * f64. The GPU version (src/gpu/metrics.ts, shaders/metrics.wgsl) computes the same fields from GPU buffers
 * and states how far its sums may be from these.
 *
 * Definitions (e = x - y, over the pairs where both x and y are finite):
 *   mse      = sum e^2 / count                      rmse = sqrt(mse)
 *   maxAbsErr = the largest |e| rounded to float32 (fround(x - y): the error as float32 holds it; it equals the
 *              exact difference whenever y is within a factor of two of x), at its first (row-major) position
 *   snrDb    = 10 log10(sum x^2 / sum e^2)          +Infinity when every error is 0, -Infinity when x is all 0
 *   cosine   = sum xy / sqrt(sum x^2 sum y^2)        1 when x and y are both all-zero, 0 when only one is
 * Pairs where x or y is NaN or +-Inf (a NaN weight; an f16 cast overflowing to inf) are left out of those sums
 * and counted in `nonFinite`, with the first one's position: callers must show them. In the block map, a block
 * holding such a pair has MSE and max |error| +Infinity so the heatmap marks it.
 *
 * Block map: each row is cut into ceil(cols / B) blocks of B consecutive weights (the last one shorter when B
 * does not divide cols); per block, the MSE and the max |error| (Float32Array, rows x blocksPerRow,
 * row-major). B is the format's block (metricsBlockSize) or any size the caller wants.
 */
import { bitsPerWeight, type MatrixShape, type QuantFormat } from "./format.ts";

/** Block size of the error map for formats without a block along the row (casts, per-channel, per-tensor). */
export const DEFAULT_METRICS_BLOCK = 32;

/** The block the error map uses for a format: its own block along the row, else DEFAULT_METRICS_BLOCK. */
export function metricsBlockSize(format: QuantFormat): number {
  return format.blockWeights > 1 ? format.blockWeights : DEFAULT_METRICS_BLOCK;
}

export interface Position {
  row: number;
  col: number;
}

export interface ErrorMetrics {
  /** Pairs (x, y) with both finite: the ones every sum below is over. */
  count: number;
  /** Pairs where x or y is NaN or +-Inf, left out of the sums. */
  nonFinite: number;
  /** Where the first of them is (undefined when there is none). */
  firstNonFinite: Position | undefined;
  mse: number;
  rmse: number;
  maxAbsErr: number;
  /** First position of maxAbsErr (undefined when count is 0). */
  maxAbsErrAt: Position | undefined;
  snrDb: number;
  cosine: number;
}

export interface BlockErrors {
  /** Weights per block along the row. */
  blockSize: number;
  rows: number;
  blocksPerRow: number;
  /** Mean squared error of each block, rows x blocksPerRow, row-major. */
  mse: Float32Array;
  /** Max |error| of each block. */
  maxAbs: Float32Array;
}

export interface ErrorMetricsWithBlocks extends ErrorMetrics {
  blocks: BlockErrors;
}

/** The running sums both the CPU reference and the GPU merge fold into (f64). */
export interface ErrorSums {
  count: number;
  nonFinite: number;
  /** Flat (row-major) index of the first non-finite pair; -1 when none. */
  firstNonFinite: number;
  sumXX: number;
  sumYY: number;
  sumXY: number;
  sumEE: number;
  maxAbsErr: number;
  /** Flat index of maxAbsErr's first occurrence; -1 when count is 0. */
  maxAt: number;
}

export function emptyErrorSums(): ErrorSums {
  return { count: 0, nonFinite: 0, firstNonFinite: -1, sumXX: 0, sumYY: 0, sumXY: 0, sumEE: 0, maxAbsErr: 0, maxAt: -1 };
}

/**
 * Folds `part` into `into`. `offset` is the flat index of part's first value (part's positions are relative
 * to it). The largest error keeps its first position: ties go to the smaller index, whatever the order.
 */
export function mergeErrorSums(into: ErrorSums, part: ErrorSums, offset: number): void {
  into.count += part.count;
  into.nonFinite += part.nonFinite;
  if (part.firstNonFinite >= 0 && (into.firstNonFinite < 0 || offset + part.firstNonFinite < into.firstNonFinite)) {
    into.firstNonFinite = offset + part.firstNonFinite;
  }
  into.sumXX += part.sumXX;
  into.sumYY += part.sumYY;
  into.sumXY += part.sumXY;
  into.sumEE += part.sumEE;
  if (part.maxAt >= 0) {
    const at = offset + part.maxAt;
    if (into.maxAt < 0 || part.maxAbsErr > into.maxAbsErr || (part.maxAbsErr === into.maxAbsErr && at < into.maxAt)) {
      into.maxAbsErr = part.maxAbsErr;
      into.maxAt = at;
    }
  }
}

/** The reported metrics from the sums (shared by the CPU and GPU paths, so both define them the same way). */
export function errorMetricsFromSums(s: ErrorSums, cols: number): ErrorMetrics {
  const at = (flat: number): Position | undefined =>
    flat < 0 ? undefined : { row: Math.floor(flat / cols), col: flat % cols };
  const mse = s.count > 0 ? s.sumEE / s.count : NaN;
  let snrDb: number;
  if (s.count === 0) snrDb = NaN;
  else if (s.sumEE === 0) snrDb = Infinity;
  else snrDb = 10 * Math.log10(s.sumXX / s.sumEE);
  let cosine: number;
  if (s.count === 0) cosine = NaN;
  else if (s.sumXX === 0 || s.sumYY === 0) cosine = s.sumXX === s.sumYY ? 1 : 0;
  else {
    // One sqrt keeps an exact copy at exactly 1; two (below) only when the product overflows f64.
    const product = s.sumXX * s.sumYY;
    const norm = Number.isFinite(product) ? Math.sqrt(product) : Math.sqrt(s.sumXX) * Math.sqrt(s.sumYY);
    cosine = Math.min(1, Math.max(-1, s.sumXY / norm));
  }
  return {
    count: s.count,
    nonFinite: s.nonFinite,
    firstNonFinite: at(s.firstNonFinite),
    mse,
    rmse: Math.sqrt(mse),
    maxAbsErr: s.count > 0 ? s.maxAbsErr : NaN,
    maxAbsErrAt: at(s.maxAt),
    snrDb,
    cosine,
  };
}

/** Blocks per row of the error map. */
export function blocksPerRow(cols: number, blockSize: number): number {
  return Math.ceil(cols / blockSize);
}

const FLT_MAX = 3.4028234663852886e38;
const fr = Math.fround;

/**
 * The streaming CPU reference: feed consecutive chunks of x and of y (same lengths, row-major), then read
 * result(). Chunks may end anywhere, even inside a block.
 */
export class Metrics {
  readonly shape: MatrixShape;
  readonly blockSize: number;
  private readonly sums = emptyErrorSums();
  private readonly blockMse: Float32Array;
  private readonly blockMax: Float32Array;
  private readonly perRow: number;
  /** Flat index of the next value add() will see. */
  private pos = 0;
  /** The block in progress (it may span add() calls). */
  private blockEE = 0;
  private blockMaxAbs = 0;
  private blockBad = false;

  constructor(shape: MatrixShape, opts: { blockSize?: number } = {}) {
    const blockSize = opts.blockSize ?? DEFAULT_METRICS_BLOCK;
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`block size ${blockSize} is not a positive integer`);
    this.shape = shape;
    this.blockSize = blockSize;
    this.perRow = blocksPerRow(shape.cols, blockSize);
    this.blockMse = new Float32Array(shape.rows * this.perRow);
    this.blockMax = new Float32Array(shape.rows * this.perRow);
  }

  /** The next x.length values of the tensor and their dequantized values. */
  add(x: Float32Array, y: Float32Array): void {
    if (x.length !== y.length) throw new RangeError(`${x.length} original values but ${y.length} dequantized ones`);
    const { rows, cols } = this.shape;
    if (this.pos + x.length > rows * cols) {
      throw new RangeError(`${this.pos + x.length} values passed for a ${rows}x${cols} tensor`);
    }
    const B = this.blockSize;
    const s = this.sums;
    let i = 0;
    while (i < x.length) {
      // One run: from pos to the end of its block (or of this chunk), all in one block.
      const col = this.pos % cols;
      const blockEnd = Math.min(cols, (Math.floor(col / B) + 1) * B);
      const runEnd = Math.min(x.length, i + (blockEnd - col));
      let ee = 0;
      let xx = 0;
      let yy = 0;
      let xy = 0;
      let n = 0;
      for (let k = i; k < runEnd; k++) {
        const a = x[k]!;
        const b = y[k]!;
        // |v| <= FLT_MAX is false for NaN and +-Inf.
        if (!(Math.abs(a) <= FLT_MAX && Math.abs(b) <= FLT_MAX)) {
          s.nonFinite++;
          if (s.firstNonFinite < 0) s.firstNonFinite = this.pos + (k - i);
          this.blockBad = true;
          continue;
        }
        const e = a - b;
        ee += e * e;
        xx += a * a;
        yy += b * b;
        xy += a * b;
        n++;
        const m = Math.abs(fr(e));
        if (m > s.maxAbsErr || s.maxAt < 0) {
          s.maxAbsErr = m;
          s.maxAt = this.pos + (k - i);
        }
        if (m > this.blockMaxAbs) this.blockMaxAbs = m;
      }
      s.count += n;
      s.sumEE += ee;
      s.sumXX += xx;
      s.sumYY += yy;
      s.sumXY += xy;
      this.blockEE += ee;
      const row = Math.floor(this.pos / cols);
      const endCol = col + (runEnd - i);
      this.pos += runEnd - i;
      i = runEnd;
      if (endCol === blockEnd) {
        const block = Math.floor(col / B);
        this.finishBlock(row, block, blockEnd - block * B);
      }
    }
  }

  private finishBlock(row: number, block: number, length: number): void {
    const at = row * this.perRow + block;
    if (this.blockBad) {
      this.blockMse[at] = Infinity;
      this.blockMax[at] = Infinity;
    } else {
      this.blockMse[at] = this.blockEE / length;
      this.blockMax[at] = this.blockMaxAbs;
    }
    this.blockEE = 0;
    this.blockMaxAbs = 0;
    this.blockBad = false;
  }

  /** A copy of the running sums (flat positions from the tensor's first value). */
  errorSums(): ErrorSums {
    return { ...this.sums };
  }

  /** The metrics of everything added so far (normally the whole tensor). */
  result(): ErrorMetricsWithBlocks {
    return {
      ...errorMetricsFromSums(this.sums, this.shape.cols),
      blocks: { blockSize: this.blockSize, rows: this.shape.rows, blocksPerRow: this.perRow, mse: this.blockMse, maxAbs: this.blockMax },
    };
  }
}

/** The error metrics of a whole tensor held in memory. */
export function errorMetrics(x: Float32Array, y: Float32Array, shape: MatrixShape, blockSize?: number): ErrorMetricsWithBlocks {
  const m = new Metrics(shape, { blockSize });
  m.add(x, y);
  return m.result();
}

export interface SizeMetrics {
  /** Exact bits per weight of the encoded tensor (scales, minimums and zero points counted). */
  bitsPerWeight: number;
  /** The tensor's bytes in its file (TensorInfo.bytes: params x the dtype's size, or a GGUF tensor's blocks). */
  bytesBefore: number;
  /** format.encodedBytes(shape). */
  bytesAfter: number;
  /** 1 - bytesAfter / bytesBefore (negative when the format is larger than the source, e.g. f16 of an F8 tensor). */
  shareSaved: number;
}

/** What encoding a tensor stored in `bytesBefore` bytes in `format` costs in memory. */
export function sizeMetrics(format: QuantFormat, shape: MatrixShape, bytesBefore: number): SizeMetrics {
  const bytesAfter = format.encodedBytes(shape);
  return {
    bitsPerWeight: bitsPerWeight(format, shape),
    bytesBefore,
    bytesAfter,
    shareSaved: bytesBefore > 0 ? 1 - bytesAfter / bytesBefore : 0,
  };
}
