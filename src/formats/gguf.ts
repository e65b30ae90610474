/**
 * GGUF reader (pure): the header (key-values and tensor infos, validated against the file's size), and
 * the file as the lab's model abstraction (TensorInfo rows like a safetensors shard's, see readGguf).
 * It reads only the header; tensor data is read later, in rows, by readTensorRows.
 *
 * Byte layout (GGUF v2/v3, little-endian; ggml/docs/gguf.md):
 *   magic "GGUF" (4 bytes) | version u32 | n_tensors u64 | n_kv u64
 *   n_kv key-values:   key (string) | value type u32 | value
 *   n_tensors infos:   name (string) | n_dims u32 | dims u64 x n_dims (ne0 first) | ggml type u32 | offset u64
 *   padding to `general.alignment` (default 32), then the data section; a tensor's bytes start at
 *   data_start + offset and are ne0 / block_weights * block_bytes * ne1 * ne2 ... long.
 * A string is a u64 byte length and UTF-8 bytes (no terminator). Value types: 0 u8, 1 i8, 2 u16, 3 i16,
 * 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string, 9 array (element type u32, count u64, elements),
 * 10 u64, 11 i64, 12 f64.
 *
 * A hostile header costs nothing: every count is checked against the bytes the file has left before
 * anything is allocated or looped over, the header itself is capped (MAX_HEADER_BYTES, as safetensors),
 * and every tensor must lie inside the file.
 *
 * Why this module imports src/quant/registry.ts: the ggml block encodings are defined once, in the
 * registry (encoder and decoder together, bit-exact with ggml); a GGUF file is those blocks. The reader
 * takes block sizes and decoders from there rather than keep a second copy, and both sides are pure
 * (no DOM, no Node), so formats stays "file readers" with no platform dependency. Injecting a decoder
 * table into openModel instead would make every caller (CLI, three workers, tests) wire the same table.
 */
import { isDType, type DType } from "./dtypes.ts";
import { FORMATS } from "../quant/registry.ts";
import { FormatError } from "./errors.ts";
import { MAX_HEADER_BYTES, type TensorInfo } from "./safetensors.ts";
import type { ByteSource } from "./source.ts";

/** A ggml tensor type: its GGUF id, ggml's name, and its block (weights and bytes). */
export interface GgmlType {
  id: number;
  /** ggml_type_name: "F32", "Q4_K", ... */
  name: string;
  blockWeights: number;
  blockBytes: number;
  /** The registry format with the same encoding, when the lab has one (its decode reads these blocks). */
  formatId?: string;
  /** The safetensors element type with the same bytes (F32, F16, BF16, F64, I8..I64): decoded like one. */
  dtype?: DType;
}

/**
 * The ggml types the registry has no format for (ggml.c type_traits: weights and bytes per block). The
 * lab lists tensors of these types; it decodes the plain element types (F32, F64, I8..I64) and reports
 * the others (IQ*, TQ*, MXFP4, ...) as not decodable.
 */
const GGUF_ONLY_TYPES: [id: number, name: string, blockWeights: number, blockBytes: number][] = [
  [0, "F32", 1, 4],
  [9, "Q8_1", 32, 36],
  [16, "IQ2_XXS", 256, 66],
  [17, "IQ2_XS", 256, 74],
  [18, "IQ3_XXS", 256, 98],
  [19, "IQ1_S", 256, 50],
  [20, "IQ4_NL", 32, 18],
  [21, "IQ3_S", 256, 110],
  [22, "IQ2_S", 256, 82],
  [23, "IQ4_XS", 256, 136],
  [24, "I8", 1, 1],
  [25, "I16", 1, 2],
  [26, "I32", 1, 4],
  [27, "I64", 1, 8],
  [28, "F64", 1, 8],
  [29, "IQ1_M", 256, 56],
  [34, "TQ1_0", 256, 54],
  [35, "TQ2_0", 256, 66],
  [39, "MXFP4", 32, 17],
  [40, "NVFP4", 64, 36],
  [41, "Q1_0", 128, 18],
  [42, "Q2_0", 64, 18],
];

const withDType = (t: GgmlType): GgmlType => (isDType(t.name) ? { ...t, dtype: t.name } : t);

/** Every ggml type: the registry's formats that carry a ggmlType (their blocks are the registry's numbers), and the rest. */
export const GGML_TYPES: readonly GgmlType[] = [
  ...GGUF_ONLY_TYPES.map(([id, name, blockWeights, blockBytes]) => ({ id, name, blockWeights, blockBytes })),
  ...FORMATS.filter((f) => f.ggmlType !== undefined).map((f) => ({
    id: f.ggmlType!,
    name: f.id.toUpperCase(),
    blockWeights: f.blockWeights,
    blockBytes: f.blockBytes,
    formatId: f.id,
  })),
]
  .map(withDType)
  .sort((a, b) => a.id - b.id);

const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
const TYPE_BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlType | undefined {
  return TYPE_BY_ID.get(id);
}

/** By ggml name ("Q4_K") or registry id ("q4_K", "f16"). */
export function ggmlTypeByName(name: string): GgmlType | undefined {
  return TYPE_BY_NAME.get(name.toUpperCase());
}

/** Whether the lab can turn this type's blocks into float32 values. */
export function isDecodableType(type: GgmlType): boolean {
  return type.dtype !== undefined || type.formatId !== undefined;
}

/** ggml_nbytes: whole blocks along ne0, times the other dimensions. */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number {
  const [ne0 = 1, ...rest] = dims;
  return (ne0 / type.blockWeights) * type.blockBytes * rest.reduce((a, b) => a * b, 1);
}

/** llama.h's llama_ftype (general.file_type), by llama-quantize's name for the type. */
export const LLAMA_FTYPE = {
  f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q5_1: 9, q2_K: 10, q3_K_S: 11, q3_K_M: 12, q3_K_L: 13,
  q4_K_S: 14, q4_K_M: 15, q5_K_S: 16, q5_K_M: 17, q6_K: 18, iq2_XXS: 19, iq2_XS: 20, q2_K_S: 21, iq3_XS: 22,
  iq3_XXS: 23, iq1_S: 24, iq4_NL: 25, iq3_S: 26, iq3_M: 27, iq2_S: 28, iq2_M: 29, iq4_XS: 30, iq1_M: 31,
  bf16: 32, tq1_0: 36, tq2_0: 37, mxfp4_MOE: 38,
} as const;

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne0 (the row length) first. */
  dims: number[];
  type: GgmlType;
  /** Relative to the data section. */
  offset: number;
  nbytes: number;
}

export interface GgufHeader {
  version: number;
  kv: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section (the header's size including its padding). */
  dataOffset: number;
}

/** Thrown internally when the prefix ends mid-header: readGgufHeader then reads a longer prefix. */
class NeedMoreBytes extends Error {}

const TEXT = new TextDecoder("utf-8");

/** The fewest bytes each thing can take, to check a count against the bytes left before looping over it. */
const MIN_KV_BYTES = 8 + 4 + 1; // empty key, value type, a 1-byte value
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8; // empty name, no dims, type, offset
const VALUE_BYTES: Readonly<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 10: 8, 11: 8, 12: 8 };

/** Parses the header from the file's first bytes (all of the header must be in `bytes`); `fileSize` is the whole file's. */
export function parseGgufHeader(bytes: Uint8Array, name: string, fileSize = bytes.length): GgufHeader {
  try {
    return parse(bytes, name, fileSize);
  } catch (e) {
    if (e instanceof NeedMoreBytes) {
      throw new FormatError("truncated", name, `the GGUF header runs past ${bytes.length >= fileSize ? "the end of the file" : `the first ${bytes.length} bytes`}`);
    }
    throw e;
  }
}

/** The first read of a GGUF header: most headers fit (a 150k-token vocabulary takes a few MB and two more reads). */
const FIRST_HEADER_READ = 256 * 1024;

/**
 * Reads the header of a GGUF file: a first slice, then the next slices appended (each four times the
 * prefix so far) until the whole header is in it, at most MAX_HEADER_BYTES: a header that claims more is
 * refused, not read. Nothing is fetched twice.
 */
export async function readGgufHeader(source: ByteSource, signal?: AbortSignal): Promise<GgufHeader> {
  const limit = Math.min(source.size, MAX_HEADER_BYTES);
  let bytes = await source.read(0, Math.min(limit, FIRST_HEADER_READ), signal);
  for (;;) {
    try {
      return parse(bytes, source.name, source.size);
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (bytes.length >= source.size) throw new FormatError("truncated", source.name, "the GGUF header runs past the end of the file");
      if (bytes.length >= limit) throw new FormatError("header-too-large", source.name, `the GGUF header is larger than the ${MAX_HEADER_BYTES}-byte limit`);
      const next = Math.min(limit, bytes.length * 4);
      const longer = new Uint8Array(next);
      longer.set(bytes);
      longer.set(await source.read(bytes.length, next - bytes.length, signal), bytes.length);
      bytes = longer;
    }
  }
}

function parse(bytes: Uint8Array, name: string, fileSize: number): GgufHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const bad = (detail: string): never => {
    throw new FormatError("bad-header", name, detail);
  };
  const need = (n: number) => {
    if (pos + n > bytes.length) throw new NeedMoreBytes();
  };
  /** A count of things of at least `each` bytes must fit in what is left of the file. */
  const fits = (count: number, each: number, what: string) => {
    if (count * each > fileSize - pos) {
      throw new FormatError("truncated", name, `the header claims ${count} ${what}, more than the ${fileSize - pos} bytes left in the file can hold`);
    }
  };
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const u64 = () => {
    need(8);
    pos += 8;
    const v = view.getBigUint64(pos - 8, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`a count or size of ${v} is beyond what the reader handles`);
    return Number(v);
  };
  const str = () => {
    const n = u64();
    if (n > fileSize - pos) throw new FormatError("truncated", name, `a string claims ${n} bytes, more than the file has left`);
    need(n);
    pos += n;
    return TEXT.decode(bytes.subarray(pos - n, pos));
  };
  const value = (type: number, inArray = false): GgufValue => {
    switch (type) {
      case 0: return (need(1), (pos += 1), view.getUint8(pos - 1));
      case 1: return (need(1), (pos += 1), view.getInt8(pos - 1));
      case 2: return (need(2), (pos += 2), view.getUint16(pos - 2, true));
      case 3: return (need(2), (pos += 2), view.getInt16(pos - 2, true));
      case 4: return u32();
      case 5: return (need(4), (pos += 4), view.getInt32(pos - 4, true));
      case 6: return (need(4), (pos += 4), view.getFloat32(pos - 4, true));
      case 7: return (need(1), (pos += 1), view.getUint8(pos - 1) !== 0);
      case 8: return str();
      case 9: {
        // llama.cpp's reader refuses nested arrays too; refusing them also bounds the recursion.
        if (inArray) bad("an array of arrays (GGUF readers do not take nested arrays)");
        const elem = u32();
        const size = VALUE_BYTES[elem];
        if (size === undefined) bad(elem === 9 ? "an array of arrays (GGUF readers do not take nested arrays)" : `unknown GGUF value type ${elem}`);
        const count = u64();
        fits(count, size!, "array elements");
        const out: GgufValue[] = [];
        for (let i = 0; i < count; i++) out.push(value(elem, true));
        return out;
      }
      case 10: return (need(8), (pos += 8), view.getBigUint64(pos - 8, true));
      case 11: return (need(8), (pos += 8), view.getBigInt64(pos - 8, true));
      case 12: return (need(8), (pos += 8), view.getFloat64(pos - 8, true));
      default: return bad(`unknown GGUF value type ${type}`);
    }
  };

  need(4);
  if (TEXT.decode(bytes.subarray(0, 4)) !== "GGUF") bad("not a GGUF file (no GGUF magic)");
  pos = 4;
  const version = u32();
  if (version < 2 || version > 3) bad(`GGUF version ${version} is not supported (2 and 3 are)`);
  const nTensors = u64();
  const nKv = u64();
  fits(nKv, MIN_KV_BYTES, "key-values");
  const kv = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const v = value(u32());
    if (kv.has(key)) bad(`the key ${JSON.stringify(key)} appears twice`);
    kv.set(key, v);
  }
  const alignmentValue = kv.get("general.alignment");
  const alignment = alignmentValue === undefined ? 32 : Number(alignmentValue);
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    bad(`general.alignment ${String(alignmentValue)} is not a power of two`);
  }
  fits(nTensors, MIN_TENSOR_INFO_BYTES, "tensors");
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const tensorName = str();
    const nDims = u32();
    if (nDims > 4) bad(`tensor "${tensorName}" has ${nDims} dimensions (ggml allows at most 4)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64());
    const typeId = u32();
    const offset = u64();
    const type = ggmlTypeById(typeId);
    if (!type) throw new FormatError("unknown-dtype", name, `tensor "${tensorName}" has ggml type ${typeId}, which is not a ggml type this reader knows`);
    if (names.has(tensorName)) throw new FormatError("duplicate-name", name, `tensor "${tensorName}" appears twice`);
    names.add(tensorName);
    if ((dims[0] ?? 1) % type.blockWeights !== 0) {
      bad(`tensor "${tensorName}": ne0 ${dims[0]} is not a multiple of the ${type.name} block of ${type.blockWeights}`);
    }
    // Checked before multiplying: a product of hostile dims must not lose precision or overflow. No
    // ggml type takes less than a bit per weight, so a file holds at most 8 weights per byte.
    let values = 1;
    for (const d of dims) {
      if (d !== 0 && values > (fileSize * 8) / d) {
        throw new FormatError("size-mismatch", name, `tensor "${tensorName}" claims dims ${JSON.stringify(dims)}, more than the ${fileSize}-byte file can hold`);
      }
      values *= d;
    }
    tensors.push({ name: tensorName, dims, type, offset, nbytes: ggmlTensorBytes(type, dims) });
  }
  const dataOffset = Math.ceil(pos / alignment) * alignment;
  checkTensorData(tensors, dataOffset, alignment, fileSize, name);
  return { version, kv, tensors, alignment, dataOffset };
}

/** Every tensor's data aligned, inside the file, and apart from the others (what llama.cpp's loader requires). */
function checkTensorData(tensors: readonly GgufTensorInfo[], dataOffset: number, alignment: number, fileSize: number, file: string): void {
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  let previous = "";
  for (const t of byOffset) {
    if (t.offset % alignment !== 0) throw new FormatError("bad-offsets", file, `tensor "${t.name}" starts at offset ${t.offset}, not a multiple of the alignment ${alignment}`);
    if (t.offset < end) throw new FormatError("bad-offsets", file, `tensor "${t.name}" overlaps tensor "${previous}"`);
    if (dataOffset + t.offset + t.nbytes > fileSize) {
      throw new FormatError(
        "truncated",
        file,
        `tensor "${t.name}" needs bytes ${dataOffset + t.offset}..${dataOffset + t.offset + t.nbytes} but the file ends at byte ${fileSize}`,
      );
    }
    end = t.offset + t.nbytes;
    previous = t.name;
  }
}

/** A GGUF file as the lab's model abstraction: its tensors as TensorInfo, its key-values as text. */
export interface GgufFile {
  name: string;
  header: GgufHeader;
  /** Every key-value as one line of text (long arrays summarized), plus "gguf.version". */
  metadata: Record<string, string>;
  /** In file order. */
  tensors: TensorInfo[];
}

/**
 * A GGUF tensor as the lab sees tensors: shape in the usual order ([rows, cols]: ggml's ne[] reversed),
 * dtype the ggml type's name ("Q4_K", or "F32" / "F16" / "BF16" like safetensors' dtypes).
 */
export function ggufTensorInfo(t: GgufTensorInfo, dataOffset: number, source: ByteSource): TensorInfo {
  return {
    name: t.name,
    dtype: t.type.name,
    shape: [...t.dims].reverse(),
    params: t.dims.reduce((a, b) => a * b, 1),
    bytes: t.nbytes,
    offset: dataOffset + t.offset,
    file: source.name,
    source,
  };
}

/** Reads and validates a GGUF header; the data section is not touched. */
export async function readGguf(source: ByteSource, signal?: AbortSignal): Promise<GgufFile> {
  const header = await readGgufHeader(source, signal);
  return {
    name: source.name,
    header,
    metadata: ggufMetadataText(header),
    tensors: header.tensors.map((t) => ggufTensorInfo(t, header.dataOffset, source)),
  };
}

/** Whether the bytes start with GGUF's magic. */
export function hasGgufMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46;
}

const ARRAY_PREVIEW = 8;

/** A float32 key (most GGUF floats are) as its shortest text that reads back as the same float32: 1e-5, not 0.000009999999747. */
function numberText(v: number): string {
  if (Number.isInteger(v) || Math.fround(v) !== v) return String(v);
  for (let digits = 1; digits < 17; digits++) {
    const short = Number(v.toPrecision(digits));
    if (Math.fround(short) === v) return String(short);
  }
  return String(v);
}

function valueText(v: GgufValue): string {
  if (typeof v === "string") return v;
  if (typeof v === "number") return numberText(v);
  if (typeof v === "bigint" || typeof v === "boolean") return String(v);
  const items = v.slice(0, ARRAY_PREVIEW).map((x) => (typeof x === "string" ? JSON.stringify(x) : valueText(x)));
  if (v.length <= ARRAY_PREVIEW) return `[${items.join(", ")}]`;
  const kind = typeof v[0] === "string" ? "strings" : "values";
  return `${v.length} ${kind}: [${items.join(", ")}, …]`;
}

const FTYPE_NAMES = new Map<number, string>(Object.entries(LLAMA_FTYPE).map(([k, id]) => [id, k.toUpperCase()]));

/** The key-values for people: arrays as their length and first items, general.file_type with its name. */
function ggufMetadataText(header: GgufHeader): Record<string, string> {
  const out: Record<string, string> = { "gguf.version": String(header.version) };
  for (const [key, v] of header.kv) {
    const fileType = key === "general.file_type" ? FTYPE_NAMES.get(Number(v)) : undefined;
    Object.defineProperty(out, key, { value: fileType ? `${String(v)} (${fileType})` : valueText(v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
