/**
 * safetensors: read (header only, validated) and write.
 *
 * Layout: 8-byte little-endian header length n, n bytes of UTF-8 JSON (padded with spaces),
 * then the data section. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the data section) plus an optional "__metadata__" map of strings.
 *
 * Validation follows the official reader (huggingface/safetensors, Metadata::validate): every size is
 * computed with checked arithmetic, byte size = product(shape) x dtype size, and the tensors, sorted
 * by offset, must cover the data section exactly: no overlap, no gap, nothing after the last one
 * (the official reader's MetadataIncompleteBuffer). Stricter than it on purpose: a tensor name that
 * appears twice is an error (JSON.parse, like serde's map, would silently keep one).
 * The header length is checked against the 100 MB cap and the file size before anything is
 * allocated or read, so a file that merely claims a huge header costs nothing.
 */
import { DTYPE_BYTES, isDType, type DType, type TensorDType } from "./dtypes.ts";
import { FormatError } from "./errors.ts";
import { scanJsonKeys } from "./json-keys.ts";
import type { ByteSource } from "./source.ts";

/** One tensor of an opened file (safetensors, or GGUF through src/formats/gguf.ts readGguf). */
export interface TensorInfo {
  name: string;
  /** A safetensors DType, or a GGUF tensor's ggml type name (see TensorDType). */
  dtype: TensorDType;
  /** Row-major, the row last ([rows, cols] for a matrix; GGUF's ne[] reversed). */
  shape: number[];
  /** product(shape) */
  params: number;
  /** The bytes in the file (params * DTYPE_BYTES[dtype]; for a ggml type, its whole blocks). */
  bytes: number;
  /** Absolute byte offset in its file (safetensors: 8 + headerLength + data_offsets[0]). */
  offset: number;
  /** source.name */
  file: string;
  /** Where the bytes are. */
  source: ByteSource;
}

/** A safetensors tensor: its dtype is one of safetensors' own. */
export interface SafetensorsTensorInfo extends TensorInfo {
  dtype: DType;
}

export interface SafetensorsFile {
  name: string;
  size: number;
  /** n, the JSON header's length in bytes (padding included). */
  headerLength: number;
  /** 8 + n: where the data section starts. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In file order (by offset). */
  tensors: SafetensorsTensorInfo[];
  source: ByteSource;
}

/** The official reader's cap on the JSON header. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = "__metadata__";

/** A tensor entry of a parsed header, offsets relative to the data section. */
export interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  params: number;
  bytes: number;
  begin: number;
  end: number;
}

export interface ParsedHeader {
  metadata: Record<string, string>;
  /** Sorted by offset (file order). */
  entries: HeaderEntry[];
}

/** A name or value as it appears in a message: quoted, and cut short if someone made it huge. */
function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
}

function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parse and validate a header's JSON bytes for a data section of `dataBytes` bytes.
 * Throws FormatError (naming `file`) for anything the official reader would refuse.
 */
export function parseSafetensorsHeader(json: Uint8Array, file: string, dataBytes: number): ParsedHeader {
  const fail = (code: ConstructorParameters<typeof FormatError>[0], detail: string): never => {
    throw new FormatError(code, file, detail);
  };

  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    fail("bad-json", "the header is not valid UTF-8 text");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/\s+/g, " ").slice(0, 160) : "";
    fail("bad-json", text.trim() === "" ? "the header is empty" : `the header is not valid JSON (${why})`);
  }
  if (!isPlainObject(parsed)) fail("bad-json", `the header is JSON but not an object (it is ${Array.isArray(parsed) ? "an array" : show(parsed)})`);
  const header = parsed as Record<string, unknown>;

  const scanned = scanJsonKeys(text);
  const dup = scanned.duplicate;
  if (dup) {
    if (dup.depth === 1) {
      fail(dup.key === METADATA_KEY ? "bad-header" : "duplicate-name", dup.key === METADATA_KEY ? "the header has two __metadata__ entries" : `the tensor name ${quote(dup.key)} appears twice in the header`);
    }
    const where = dup.topLevelKey === undefined ? "an entry" : dup.topLevelKey === METADATA_KEY ? "__metadata__" : `tensor ${quote(dup.topLevelKey)}`;
    fail("bad-header", `${where} has the key ${quote(dup.key)} twice`);
  }

  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const name of scanned.topLevelKeys) {
    const value = header[name];
    if (name === METADATA_KEY) {
      if (!isPlainObject(value)) fail("bad-header", `__metadata__ must be an object of strings, not ${show(value)}`);
      const meta = value as Record<string, unknown>;
      for (const [k, v] of Object.entries(meta)) {
        if (typeof v !== "string") fail("bad-header", `__metadata__ must map strings to strings, but ${quote(k)} is ${show(v)}`);
      }
      metadata = Object.fromEntries(Object.entries(meta)) as Record<string, string>; // own keys only, even "__proto__"
      continue;
    }
    entries.push(parseEntry(name, value, fail));
  }

  // File order: by offset, then (zero-size tensors sharing an offset) by header order. Stable sort.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);

  let pos = 0;
  let previous: HeaderEntry | undefined;
  const at = (e: HeaderEntry) => `tensor ${quote(e.name)} (data_offsets [${e.begin}, ${e.end}])`;
  for (const e of entries) {
    if (e.begin < pos && previous) {
      fail("bad-offsets", `${at(previous)} and ${at(e)} overlap`);
    }
    if (e.begin > pos) {
      if (e.end > dataBytes) {
        fail("bad-offsets", `${at(e)} lies outside the data section, which holds ${dataBytes} bytes`);
      }
      fail(
        "bad-offsets",
        `bytes ${pos}..${e.begin} of the data section belong to no tensor (${previous ? `between ${at(previous)} and` : "before"} ${at(e)})`,
      );
    }
    pos = e.end;
    previous = e;
  }
  if (pos > dataBytes && previous) {
    fail(
      "truncated",
      `${at(previous)} ends past the data section, which holds ${dataBytes} bytes: the file is truncated (or its offsets are out of range)`,
    );
  }
  if (pos < dataBytes) {
    fail(
      "bad-offsets",
      `the last ${dataBytes - pos} bytes of the data section belong to no tensor (tensors end at ${pos}, the data section holds ${dataBytes})`,
    );
  }
  return { metadata, entries };
}

function parseEntry(name: string, value: unknown, fail: (code: "bad-header" | "unknown-dtype" | "bad-offsets" | "size-mismatch", detail: string) => never): HeaderEntry {
  if (!isPlainObject(value)) return fail("bad-header", `tensor ${quote(name)}: expected an object with dtype, shape and data_offsets, got ${show(value)}`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string") return fail("bad-header", `tensor ${quote(name)}: dtype is ${dtype === undefined ? "missing" : `${show(dtype)}, not a string`}`);
  if (!isDType(dtype)) return fail("unknown-dtype", `tensor ${quote(name)}: unknown dtype ${quote(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    return fail("bad-header", `tensor ${quote(name)}: shape must be a list of non-negative integers, got ${show(shape)}`);
  }
  const dims = shape as number[];
  let params = 1;
  if (dims.includes(0)) params = 0;
  else {
    for (const d of dims) {
      if (params > Number.MAX_SAFE_INTEGER / d) return fail("bad-header", `tensor ${quote(name)}: shape ${show(dims)} has more than 2^53 elements`);
      params *= d;
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    return fail("bad-offsets", `tensor ${quote(name)}: data_offsets must be two non-negative integers, got ${show(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) return fail("bad-offsets", `tensor ${quote(name)}: data_offsets [${begin}, ${end}] end before they begin`);
  const bytes = params * DTYPE_BYTES[dtype];
  if (end - begin !== bytes) {
    const needs = Number.isSafeInteger(bytes) ? `${bytes}` : "more than 2^53";
    return fail("size-mismatch", `tensor ${quote(name)}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ${show(dims)} of ${dtype} needs ${needs}`);
  }
  return { name, dtype, shape: dims, params, bytes, begin, end };
}

/**
 * Read and validate a safetensors header. Reads 8 bytes, then the header (after checking its length
 * against the file and the 100 MB cap); never touches the data section.
 */
export async function readSafetensors(source: ByteSource, signal?: AbortSignal): Promise<SafetensorsFile> {
  const { name, size } = source;
  if (size < 8) {
    throw new FormatError("truncated", name, `the file is ${size} bytes long; a safetensors file starts with an 8-byte header length`);
  }
  const prefix = await source.read(0, 8, signal);
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    const claimed = ((BigInt(hi) << 32n) | BigInt(lo)).toString();
    throw new FormatError("header-too-large", name, `the header length field says ${claimed} bytes, above the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const headerLength = lo;
  if (headerLength > size - 8) {
    throw new FormatError(
      "header-too-large",
      name,
      `the header length field says ${headerLength} bytes but only ${size - 8} bytes follow it (the file is truncated or not safetensors)`,
    );
  }
  const json = await source.read(8, headerLength, signal);
  signal?.throwIfAborted();
  const dataStart = 8 + headerLength;
  const { metadata, entries } = parseSafetensorsHeader(json, name, size - dataStart);
  const tensors = entries.map(
    (e): SafetensorsTensorInfo => ({
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      params: e.params,
      bytes: e.bytes,
      offset: dataStart + e.begin,
      file: name,
      source,
    }),
  );
  return { name, size, headerLength, dataStart, metadata, tensors, source };
}

/** A tensor's place in a file to be written: its data is supplied separately. */
export interface TensorLayout {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** Little-endian element bytes (encodeFromF32 makes them). */
  data: Uint8Array;
}

/**
 * The first bytes of a safetensors file: the 8-byte length, then the compact JSON header padded
 * with spaces to a multiple of 8 (as the official writer does). Tensors are laid out contiguously in
 * the order given; follow it with their data in that order (e.g. `new Blob([header, ...datas])`
 * writes a file without holding it in one buffer). Throws on inconsistent input (a programming error).
 */
export function safetensorsHeader(tensors: readonly TensorLayout[], metadata?: Record<string, string>): Uint8Array<ArrayBuffer> {
  const parts: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata ${quote(k)} is not a string`);
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === METADATA_KEY) throw new Error(`${METADATA_KEY} cannot be a tensor name`);
    if (seen.has(t.name)) throw new Error(`tensor ${quote(t.name)} is given twice`);
    seen.add(t.name);
    if (!isDType(t.dtype)) throw new Error(`tensor ${quote(t.name)}: unknown dtype ${quote(String(t.dtype))}`);
    if (!t.shape.every(isCount)) throw new Error(`tensor ${quote(t.name)}: bad shape ${show(t.shape)}`);
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (t.byteLength !== expected) {
      throw new Error(`tensor ${quote(t.name)}: ${t.byteLength} bytes given, shape ${show(t.shape)} of ${t.dtype} needs ${expected}`);
    }
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + t.byteLength}]}`);
    offset += t.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new Error(`the header would be ${padded} bytes, above the ${MAX_HEADER_BYTES}-byte limit`);
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setUint32(0, padded, true); // the high 32 bits stay 0: padded <= 100 MB
  out.set(json, 8);
  return out;
}

/** A whole safetensors file in memory (tests, small exports). Round trip with readSafetensors is exact. */
export function writeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array<ArrayBuffer> {
  const header = safetensorsHeader(
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
    metadata,
  );
  const total = tensors.reduce((sum, t) => sum + t.data.byteLength, header.length);
  const out = new Uint8Array(total);
  out.set(header);
  let pos = header.length;
  for (const t of tensors) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}
