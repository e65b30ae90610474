/**
 * A quantization format is one record: everything else (CLI `formats`, UI pickers, the memory
 * estimator's bits per weight, the GGUF writer's type ids, the GPU kernels' dispatch) reads it from
 * the registry and never keeps a second table.
 *
 * Tensors are handled as 2-D: `rows` output channels of `cols` weights each (a 1-D tensor is one row).
 * Block formats quantize each row independently in blocks of `blockWeights` consecutive weights.
 */
import { QuantInputError } from "./errors.ts";

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
  /**
   * Where to write the encoded bytes, to reuse one buffer across calls (a fresh 64 MiB array costs more in
   * page faults than some formats cost to compute). It must hold at least encodedBytes(shape) bytes; encode
   * returns its first encodedBytes(shape) bytes (a view, not a copy). Whatever it held before is ignored.
   */
  out?: Uint8Array;
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
  /**
   * Dequantize what encode produced, into `out` when given (at least rows*cols values; the result is its
   * first rows*cols values, a view) or a new array.
   */
  decode(q: Uint8Array, shape: MatrixShape, out?: Float32Array): Float32Array;
}

/**
 * The array an encoder writes `bytes` bytes to: the caller's EncodeOptions.out (checked to be large enough)
 * or a new zero-filled array. `clear` zero-fills a caller's buffer first, for encoders that OR bits into
 * place; encoders that store every byte pass false.
 */
export function encodeOutput(out: Uint8Array | undefined, bytes: number, clear: boolean, tensor?: string): Uint8Array {
  if (!out) return new Uint8Array(bytes);
  if (out.length < bytes) {
    throw new QuantInputError("shape", `the output buffer holds ${out.length} bytes; ${bytes} are needed`, { tensor });
  }
  const target = out.length === bytes ? out : out.subarray(0, bytes);
  if (clear) target.fill(0);
  return target;
}

/** The array a decoder writes `values` floats to: the caller's `out` (checked to be large enough) or a new one. */
export function decodeOutput(out: Float32Array | undefined, values: number): Float32Array {
  if (!out) return new Float32Array(values);
  if (out.length < values) {
    throw new QuantInputError("shape", `the output buffer holds ${out.length} values; ${values} are needed`);
  }
  return out.length === values ? out : out.subarray(0, values);
}

/** Exact bits per weight of a format on a given shape (scales and zero points included). */
export function bitsPerWeight(format: QuantFormat, shape: MatrixShape): number {
  return (format.encodedBytes(shape) * 8) / (shape.rows * shape.cols);
}
