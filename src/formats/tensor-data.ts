/**
 * A tensor's stored bytes, whatever file they came from: how many bytes a run of values takes, and their
 * decoding to float32. Safetensors dtypes decode through dtypes.ts; ggml types (GGUF tensors) through the
 * format registry's block decoders (bit-exact with ggml; see gguf.ts for why formats reads them there).
 */
import { findFormat } from "../quant/registry.ts";
import { DTYPE_BYTES, decodeToF32, isDType, type TensorDType } from "./dtypes.ts";
import { FormatError } from "./errors.ts";
import { ggmlTypeByName, isDecodableType } from "./gguf.ts";
import type { TensorInfo } from "./safetensors.ts";

/** Values are stored in blocks of `blockWeights` values taking `blockBytes` bytes (1 value for a plain dtype). */
export interface StoredBlock {
  blockWeights: number;
  blockBytes: number;
}

export function storedBlock(dtype: TensorDType): StoredBlock {
  if (isDType(dtype)) return { blockWeights: 1, blockBytes: DTYPE_BYTES[dtype] };
  const type = ggmlTypeByName(dtype);
  if (!type) throw new RangeError(`unknown tensor type "${dtype}"`);
  return type;
}

/** Bytes of `values` consecutive values (a whole number of blocks: a ggml row always is). */
export function storedBytes(dtype: TensorDType, values: number): number {
  const { blockWeights, blockBytes } = storedBlock(dtype);
  return (values / blockWeights) * blockBytes;
}

/** Why the lab cannot read this tensor's values, or undefined when it can. */
export function undecodableReason(t: Pick<TensorInfo, "dtype">): string | undefined {
  if (isDType(t.dtype)) return undefined;
  const type = ggmlTypeByName(t.dtype);
  if (type && isDecodableType(type)) return undefined;
  return `${t.dtype} is a ggml type the lab can list but not decode (it decodes F32, F16, BF16, Q4_0..Q8_0 and Q2_K..Q8_K)`;
}

export function isDecodable(t: Pick<TensorInfo, "dtype">): boolean {
  return undecodableReason(t) === undefined;
}

/** The error for using a tensor whose values the lab cannot decode. */
export function undecodableError(t: Pick<TensorInfo, "dtype" | "name" | "file">): FormatError | undefined {
  const why = undecodableReason(t);
  return why === undefined ? undefined : new FormatError("undecodable", t.file, `tensor "${t.name}": ${why}`);
}

/**
 * The float32 values of `bytes` (whole blocks of `dtype`), into `out` when given (the result is then a
 * view of its first values) or a new array.
 */
export function decodeStored<B extends ArrayBufferLike = ArrayBuffer>(dtype: TensorDType, bytes: Uint8Array, out?: Float32Array<B>): Float32Array<B> {
  // GGUF's plain types (F32, F16, BF16, F64, I8..I64) have DType names: they take this path too.
  if (isDType(dtype)) return (out ? decodeToF32(dtype, bytes, out) : decodeToF32(dtype, bytes)) as Float32Array<B>;
  const type = ggmlTypeByName(dtype);
  const format = type?.formatId === undefined ? undefined : findFormat(type.formatId);
  if (!type || !format) throw new RangeError(`tensor type "${dtype}" cannot be decoded`);
  if (bytes.byteLength % type.blockBytes !== 0) throw new RangeError(`${bytes.byteLength} bytes are not a whole number of ${type.name} blocks (${type.blockBytes} bytes each)`);
  const blocks = bytes.byteLength / type.blockBytes;
  // Blocks are independent: decode them as rows of one block, whatever the tensor's rows are.
  return format.decode(bytes, { rows: blocks, cols: type.blockWeights }, out) as Float32Array<B>;
}

/**
 * The decodable ggml block types (Q4_K, Q8_0...) these tensors are stored in, each once, in id order: re-quantizing
 * such a tensor measures the error against its decoded values, which already carry the file's own
 * quantization error, not against the original float32 weights. The UI and CLI say so.
 */
export function quantizedSourceTypes(tensors: readonly Pick<TensorInfo, "dtype">[]): string[] {
  const types = new Set(tensors.filter((t) => !isDType(t.dtype) && isDecodable(t)).map((t) => t.dtype));
  return [...types].sort((a, b) => (ggmlTypeByName(a)?.id ?? 0) - (ggmlTypeByName(b)?.id ?? 0));
}
