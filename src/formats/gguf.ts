/**
 * GGUF header reader (pure): the key-values and the tensor infos, and the byte size of each tensor.
 * It reads only the header; tensor data is not touched.
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
 */
import { FORMATS } from "../quant/registry.ts";
import { FormatError } from "./errors.ts";
import type { ByteSource } from "./source.ts";

/** A ggml tensor type: its GGUF id, ggml's name, and its block (weights and bytes). */
export interface GgmlType {
  id: number;
  /** ggml_type_name: "F32", "Q4_K", ... */
  name: string;
  blockWeights: number;
  blockBytes: number;
  /** The registry format with the same encoding, when the lab has a quantizer for it. */
  formatId?: string;
}

/**
 * Every ggml type GGUF files hold that the lab knows: the registry's formats that carry a ggmlType (their
 * blocks are the registry's numbers, not a second copy), plus the two types the lab has no quantizer for.
 */
const GGUF_ONLY_TYPES: GgmlType[] = [
  { id: 0, name: "F32", blockWeights: 1, blockBytes: 4 },
  // IQ4_NL: 32 weights, an fp16 scale and 16 bytes of 4-bit indices into a non-linear table (ggml-common.h block_iq4_nl).
  { id: 20, name: "IQ4_NL", blockWeights: 32, blockBytes: 18 },
];

export const GGML_TYPES: readonly GgmlType[] = [
  ...GGUF_ONLY_TYPES,
  ...FORMATS.filter((f) => f.ggmlType !== undefined).map((f) => ({
    id: f.ggmlType!,
    name: f.id.toUpperCase(),
    blockWeights: f.blockWeights,
    blockBytes: f.blockBytes,
    formatId: f.id,
  })),
].sort((a, b) => a.id - b.id);

const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
const TYPE_BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlType | undefined {
  return TYPE_BY_ID.get(id);
}

/** By ggml name ("Q4_K") or registry id ("q4_K", "f16"). */
export function ggmlTypeByName(name: string): GgmlType | undefined {
  return TYPE_BY_NAME.get(name.toUpperCase());
}

/** ggml_nbytes: whole blocks along ne0, times the other dimensions. */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number {
  const [ne0 = 1, ...rest] = dims;
  return (ne0 / type.blockWeights) * type.blockBytes * rest.reduce((a, b) => a * b, 1);
}

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

/** Parses the header from the file's first bytes (all of the header must be in `bytes`). */
export function parseGgufHeader(bytes: Uint8Array, name: string, fileSize = bytes.length): GgufHeader {
  try {
    return parse(bytes, name);
  } catch (e) {
    if (e instanceof NeedMoreBytes) {
      throw new FormatError("truncated", name, `the GGUF header runs past ${bytes.length === fileSize ? "the end of the file" : `the first ${bytes.length} bytes`}`);
    }
    throw e;
  }
}

/** Reads the header of a GGUF file, asking for a longer prefix until the whole header is in it. */
export async function readGgufHeader(source: ByteSource, signal?: AbortSignal): Promise<GgufHeader> {
  let length = Math.min(source.size, 1 << 20);
  for (;;) {
    const bytes = await source.read(0, length, signal);
    try {
      return parse(bytes, source.name);
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (length >= source.size) throw new FormatError("truncated", source.name, "the GGUF header runs past the end of the file");
      length = Math.min(source.size, length * 4);
    }
  }
}

function parse(bytes: Uint8Array, name: string): GgufHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const bad = (detail: string): never => {
    throw new FormatError("bad-header", name, detail);
  };
  const need = (n: number) => {
    if (pos + n > bytes.length) throw new NeedMoreBytes();
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
    need(n);
    pos += n;
    return TEXT.decode(bytes.subarray(pos - n, pos));
  };
  const value = (type: number): GgufValue => {
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
        const elem = u32();
        const count = u64();
        const out: GgufValue[] = [];
        for (let i = 0; i < count; i++) out.push(value(elem));
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
  const kv = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    kv.set(key, value(u32()));
  }
  const alignmentValue = kv.get("general.alignment");
  const alignment = alignmentValue === undefined ? 32 : Number(alignmentValue);
  if (!Number.isInteger(alignment) || alignment <= 0) bad(`general.alignment ${String(alignmentValue)} is not a positive integer`);
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const tensorName = str();
    const nDims = u32();
    if (nDims > 4) bad(`tensor "${tensorName}" has ${nDims} dimensions (ggml allows at most 4)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64());
    const typeId = u32();
    const offset = u64();
    const type = ggmlTypeById(typeId);
    if (!type) throw new FormatError("unknown-dtype", name, `tensor "${tensorName}" has ggml type ${typeId}, which the lab does not know`);
    if ((dims[0] ?? 1) % type.blockWeights !== 0) {
      bad(`tensor "${tensorName}": ne0 ${dims[0]} is not a multiple of the ${type.name} block of ${type.blockWeights}`);
    }
    tensors.push({ name: tensorName, dims, type, offset, nbytes: ggmlTensorBytes(type, dims) });
  }
  const dataOffset = Math.ceil(pos / alignment) * alignment;
  return { version, kv, tensors, alignment, dataOffset };
}
