/**
 * Problems with what a quantizer is asked to encode (as opposed to FormatError, which is about files).
 * One class so the CLI and UI can branch on `problem` and show `message` as is.
 */
import type { MatrixShape } from "./format.ts";

export type QuantInputProblem =
  | "non-finite" // NaN or ±Inf among the weights: ggml would spread them into whole blocks
  | "row-length" // the format's block does not divide the row length
  | "shape" // the buffer does not hold rows x cols values, or the encoded bytes do not fit the shape
  | "imatrix" // the importance vector has the wrong length or a non-positive / non-finite entry
  | "calibration" // calibration activations that cannot be used (wrong width, none at all, NaN/±Inf)
  | "settings"; // a method's settings it cannot run with (bits, group size)

export interface QuantInputDetails {
  /** Tensor name, when the caller knows it (EncodeOptions.tensorName). */
  tensor?: string;
  /** Row and column of the first offending value (non-finite, imatrix). */
  row?: number;
  col?: number;
  /** How many values are bad in total. */
  count?: number;
  /** The format llama.cpp would use instead (row-length). */
  fallback?: string;
}

export class QuantInputError extends Error {
  override readonly name = "QuantInputError";
  readonly tensor: string | undefined;
  readonly row: number | undefined;
  readonly col: number | undefined;
  readonly count: number | undefined;
  readonly fallback: string | undefined;
  constructor(
    readonly problem: QuantInputProblem,
    /** What is wrong, without the tensor name. */
    readonly detail: string,
    details: QuantInputDetails = {},
  ) {
    super(details.tensor ? `tensor "${details.tensor}": ${detail}` : detail);
    this.tensor = details.tensor;
    this.row = details.row;
    this.col = details.col;
    this.count = details.count;
    this.fallback = details.fallback;
  }

  /** The same error naming a tensor (for callers that learn the name only after catching it). */
  withTensor(tensor: string): QuantInputError {
    return new QuantInputError(this.problem, this.detail, {
      tensor,
      row: this.row,
      col: this.col,
      count: this.count,
      fallback: this.fallback,
    });
  }
}

export function isQuantInputError(e: unknown): e is QuantInputError {
  return e instanceof Error && (e as { name?: string }).name === "QuantInputError" && "problem" in e;
}

/** Throws "shape" unless x holds exactly rows*cols values. */
export function assertShape(x: ArrayLike<number>, shape: MatrixShape, tensor?: string): void {
  const { rows, cols } = shape;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new QuantInputError("shape", `bad shape ${rows}x${cols}`, { tensor });
  }
  if (x.length !== rows * cols) {
    throw new QuantInputError("shape", `${x.length} values do not make a ${rows}x${cols} matrix`, { tensor });
  }
}

/**
 * Throws "non-finite" naming the first NaN/±Inf (row, column) and how many there are. One pass that only
 * compares, so it costs little next to any quantizer. For a chunk of a tensor streamed in rows, `firstRow` is
 * the tensor row of x's first row, so the reported row is the tensor's (the count is the chunk's).
 */
export function assertFinite(x: Float32Array, shape: MatrixShape, tensor?: string, firstRow = 0): void {
  const n = x.length;
  let i = 0;
  // |v| <= FLT_MAX is false for NaN and ±Inf.
  while (i < n && Math.abs(x[i]!) <= 3.4028234663852886e38) i++;
  if (i === n) return;
  const first = i;
  let count = 0;
  let nan = 0;
  for (; i < n; i++) {
    const v = x[i]!;
    if (!(Math.abs(v) <= 3.4028234663852886e38)) {
      count++;
      if (v !== v) nan++;
    }
  }
  const chunkRow = Math.floor(first / shape.cols);
  const col = first - chunkRow * shape.cols;
  const row = firstRow + chunkRow;
  const kinds = nan === count ? "NaN" : nan === 0 ? "infinite" : "NaN or infinite";
  throw new QuantInputError(
    "non-finite",
    `${count} ${kinds} value${count === 1 ? "" : "s"}, the first at row ${row}, column ${col} (${x[first]}); ` +
      `quantizing would spread ${count === 1 ? "it" : "them"} over whole blocks`,
    { tensor, row, col, count },
  );
}

/**
 * Throws "imatrix" unless the importance vector has one finite, non-negative weight per column. (llama.cpp's
 * imatrix files can hold zeros for columns no calibration token reached; ggml's encoders accept them.)
 */
export function assertImatrix(imatrix: Float32Array, cols: number, tensor?: string): void {
  if (imatrix.length !== cols) {
    throw new QuantInputError("imatrix", `the importance matrix has ${imatrix.length} entries for rows of ${cols}`, {
      tensor,
    });
  }
  for (let c = 0; c < cols; c++) {
    const w = imatrix[c]!;
    if (!(w >= 0 && w <= 3.4028234663852886e38)) {
      throw new QuantInputError("imatrix", `importance weight ${w} at column ${c} is not a finite number >= 0`, {
        tensor,
        col: c,
      });
    }
  }
}
