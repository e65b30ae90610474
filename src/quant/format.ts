/**
 * A quantization format is one record: everything else (CLI `formats`, UI pickers, the memory
 * estimator's bits per weight, the GGUF writer's type ids, the GPU kernels' dispatch) reads it from
 * the registry and never keeps a second table.
 *
 * Tensors are handled as 2-D: `rows` output channels of `cols` weights each (a 1-D tensor is one row).
 * Block formats quantize each row independently in blocks of `blockWeights` consecutive weights.
 */

export interface MatrixShape {
  rows: number;
  cols: number;
}

export interface EncodeOptions {
  /** llama.cpp importance matrix: one positive weight per column (length cols). Formats without an
   *  importance-weighted encoder ignore it. */
  imatrix?: Float32Array;
  /** Tensor name, used only to make error messages (QuantInputError) name the tensor. */
  tensorName?: string;
}

export type RowLengthCheck =
  | { ok: true }
  | {
      ok: false;
      /** Why this row length does not fit, e.g. "rows of 172 weights are not a multiple of 256". */
      reason: string;
      /** The format id llama.cpp would fall back to for such a tensor, if any. */
      fallback?: string;
    };

export type FormatFamily = "gguf" | "int" | "bnb" | "cast";

export interface QuantFormat {
  /** Stable id used by the CLI and in URLs, e.g. "q4_K", "int4-g128", "nf4". */
  readonly id: string;
  readonly family: FormatFamily;
  /** One line for people: "4-bit K-quant, super-blocks of 256 with 6-bit scales and mins". */
  readonly description: string;
  /** Weights per block along a row (1 for element-wise casts; cols for per-channel formats). */
  readonly blockWeights: number;
  /** Bytes per block (for formats with a fixed block). */
  readonly blockBytes: number;
  /** GGML type id (ggml.h enum ggml_type) for formats GGUF can store. */
  readonly ggmlType?: number;
  /** Whether rows of this length can be encoded, and the llama.cpp fallback when not. */
  checkRowLength(cols: number): RowLengthCheck;
  /** Exact size of the encoded tensor in bytes, counting every scale, minimum and zero point. */
  encodedBytes(shape: MatrixShape): number;
  /** Quantize `rows x cols` float32 values (row-major). Throws on a row length checkRowLength rejects. */
  encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Uint8Array;
  /** Dequantize what encode produced. */
  decode(q: Uint8Array, shape: MatrixShape): Float32Array;
}

/** Exact bits per weight of a format on a given shape (scales and zero points included). */
export function bitsPerWeight(format: QuantFormat, shape: MatrixShape): number {
  return (format.encodedBytes(shape) * 8) / (shape.rows * shape.cols);
}
