/**
 * One model from whatever the user picked: one .safetensors, several shards, or a
 * model.safetensors.index.json with its shards (from files, a folder, or URLs); or a .gguf file (or the
 * shards of a split GGUF); and the streaming reads of its tensors, decoded to float32 whatever they are
 * stored as (safetensors dtypes, ggml blocks).
 *
 * Which sources count: an index (name ending in ".index.json"), files ending in ".safetensors", and
 * files ending in ".gguf". Other files dropped along (config.json, tokenizer files, README) are ignored,
 * unless nothing is recognizable by name, in which case every source is read as what its first bytes say
 * (GGUF's magic) or else as safetensors (a URL or a renamed file without the extension still opens, and
 * anything else is reported as the format error it is).
 */
import { naturalCompare } from "./catalog.ts";
import { f32View } from "./dtypes.ts";
import { FormatError } from "./errors.ts";
import { hasGgufMagic, readGguf } from "./gguf.ts";
import { scanJsonKeys } from "./json-keys.ts";
import { MAX_HEADER_BYTES, readSafetensors, type TensorInfo } from "./safetensors.ts";
import { HttpRangeSource, type ByteSource, type HttpRangeOptions } from "./source.ts";
import { decodeStored, storedBlock, storedBytes, undecodableError } from "./tensor-data.ts";

export interface OpenedModel {
  /** For people: the index's or the single file's name, or "first + N more". */
  name: string;
  /** What the files are. */
  format: "safetensors" | "gguf";
  /** The files holding the tensors (source names), in natural order. */
  files: string[];
  /** The index file's name when the model came with one. */
  index?: string;
  /**
   * The shards' __metadata__ (the first file that sets a key wins), then the index's "metadata" over it;
   * for GGUF, its key-values as text (gguf.ts readGguf).
   */
  metadata: Record<string, string>;
  /** Shard by shard (natural order of file names), each in file order. catalog.ts sorts for display. */
  tensors: TensorInfo[];
  totalParams: number;
  totalBytes: number;
}

export interface SafetensorsIndex {
  name: string;
  /** The index's "metadata", values as strings (total_size is a number in the file). */
  metadata: Record<string, string>;
  /** tensor name -> shard file name */
  weightMap: Map<string, string>;
  /** Shard file names, each once, in order of first appearance. */
  shards: string[];
}

const INDEX_SUFFIX = ".index.json";
const SAFETENSORS_SUFFIX = ".safetensors";
const GGUF_SUFFIX = ".gguf";

/** The file name part of a path or URL ("a/b/model.safetensors?download=true" -> "model.safetensors"). */
export function baseName(name: string): string {
  const withoutQuery = /^[a-z][a-z0-9+.-]*:\/\//i.test(name) ? name.replace(/[?#].*$/s, "") : name;
  const last = withoutQuery.slice(Math.max(withoutQuery.lastIndexOf("/"), withoutQuery.lastIndexOf("\\")) + 1);
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

export function isIndexName(name: string): boolean {
  return baseName(name).toLowerCase().endsWith(INDEX_SUFFIX);
}

function isSafetensorsName(name: string): boolean {
  return baseName(name).toLowerCase().endsWith(SAFETENSORS_SUFFIX);
}

export function isGgufName(name: string): boolean {
  return baseName(name).toLowerCase().endsWith(GGUF_SUFFIX);
}

/** A file read as part of a model: its tensors and metadata. */
interface ModelFile {
  name: string;
  metadata: Record<string, string>;
  tensors: TensorInfo[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parse a model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}}. */
export function parseIndex(bytes: Uint8Array, name: string): SafetensorsIndex {
  const fail = (detail: string): never => {
    throw new FormatError("bad-index", name, detail);
  };
  let text = "";
  let parsed: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    parsed = JSON.parse(text);
  } catch {
    fail("the index is not valid JSON");
  }
  if (!isPlainObject(parsed) || !isPlainObject(parsed["weight_map"])) fail('the index has no "weight_map" object');
  const index = parsed as { weight_map: Record<string, unknown>; metadata?: unknown };
  const dup = scanJsonKeys(text).duplicate;
  if (dup) fail(`${dup.topLevelKey === undefined ? "the index" : `"${dup.topLevelKey}"`} has the key ${JSON.stringify(dup.key)} twice`);

  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [tensor, shard] of Object.entries(index.weight_map)) {
    if (typeof shard !== "string" || shard === "") fail(`weight_map[${JSON.stringify(tensor)}] is not a file name`);
    weightMap.set(tensor, shard as string);
    if (!shards.includes(shard as string)) shards.push(shard as string);
  }
  let metadata: Record<string, string> = {};
  if (index.metadata !== undefined && index.metadata !== null) {
    if (!isPlainObject(index.metadata)) fail('the index\'s "metadata" is not an object');
    const entries = Object.entries(index.metadata as Record<string, unknown>);
    metadata = Object.fromEntries(entries.map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  }
  return { name, metadata, weightMap, shards };
}

/** Read and parse an index file (refusing absurd sizes before reading). */
export async function readIndex(source: ByteSource, signal?: AbortSignal): Promise<SafetensorsIndex> {
  if (source.size > MAX_HEADER_BYTES) {
    throw new FormatError("bad-index", source.name, `the index is ${source.size} bytes, above the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return parseIndex(await source.read(0, source.size, signal), source.name);
}

/** Opens the sources (see the module comment for which count) as one model. */
export async function openModel(sources: ByteSource[], signal?: AbortSignal): Promise<OpenedModel> {
  signal?.throwIfAborted();
  if (sources.length === 0) throw new FormatError("io", "(nothing)", "no file to open: pick a .safetensors or .gguf file, or an index with its shards");
  const indexes = sources.filter((s) => isIndexName(s.name));
  const named = sources.filter((s) => isSafetensorsName(s.name));
  const gguf = sources.filter((s) => isGgufName(s.name));
  const recognized = named.length > 0 || indexes.length > 0 || gguf.length > 0;
  if (gguf.length > 0 && (named.length > 0 || indexes.length > 0)) {
    throw new FormatError("io", gguf[0]!.name, "both GGUF and safetensors files were given; open one model at a time");
  }
  if (gguf.length > 0) return openGguf(gguf, signal);
  if (!recognized && (await Promise.all(sources.map((s) => startsWithGgufMagic(s, signal)))).every(Boolean)) return openGguf(sources, signal);
  const candidates = recognized ? named : sources;
  if (indexes.length > 1) {
    throw new FormatError("bad-index", indexes[0]!.name, `${indexes.length} index files were given (${indexes.map((s) => baseName(s.name)).join(", ")}); open one model at a time`);
  }
  const indexSource = indexes[0];
  const index = indexSource ? await readIndex(indexSource, signal) : undefined;

  const shardSources = sortByName(candidates);
  if (index) {
    const given = new Set(shardSources.map((s) => baseName(s.name)));
    const missing = index.shards.filter((s) => !given.has(baseName(s)));
    if (missing.length > 0) {
      throw new FormatError(
        "bad-index",
        index.name,
        `the index lists ${missing.length === 1 ? "a shard" : "shards"} that ${missing.length === 1 ? "was" : "were"} not opened: ${missing.join(", ")}; pick (or drop) the index and all its shards together`,
      );
    }
  }
  if (shardSources.length === 0) {
    throw new FormatError("bad-index", indexSource?.name ?? "(nothing)", "no .safetensors file to read");
  }

  const files = await Promise.all(shardSources.map((s) => readSafetensors(s, signal)));
  const model = assemble("safetensors", files, index);
  if (index) model.index = index.name;
  return model;
}

/** One GGUF, or the shards of a split GGUF (llama.cpp's "-00001-of-00003.gguf"): their tensors as one model. */
async function openGguf(sources: ByteSource[], signal?: AbortSignal): Promise<OpenedModel> {
  const files = await Promise.all(sortByName(sources).map((s) => readGguf(s, signal)));
  return assemble("gguf", files, undefined);
}

async function startsWithGgufMagic(source: ByteSource, signal?: AbortSignal): Promise<boolean> {
  return source.size >= 4 && hasGgufMagic(await source.read(0, 4, signal));
}

function sortByName(sources: readonly ByteSource[]): ByteSource[] {
  return [...sources].sort((a, b) => naturalCompare(baseName(a.name), baseName(b.name)) || naturalCompare(a.name, b.name));
}

/** The files' tensors and metadata as one model (the first file that sets a metadata key wins, then the index's). */
function assemble(format: OpenedModel["format"], files: ModelFile[], index: SafetensorsIndex | undefined): OpenedModel {
  const tensors = mergeTensors(files, index);
  const meta = new Map<string, string>();
  for (const f of files) for (const [k, v] of Object.entries(f.metadata)) if (!meta.has(k)) meta.set(k, v);
  if (index) for (const [k, v] of Object.entries(index.metadata)) meta.set(k, v);
  const metadata = Object.fromEntries(meta); // own keys only, even "__proto__"

  let totalParams = 0;
  let totalBytes = 0;
  for (const t of tensors) {
    totalParams += t.params;
    totalBytes += t.bytes;
  }
  const first = files[0]!;
  const name = index ? baseName(index.name) : files.length === 1 ? baseName(first.name) : `${baseName(first.name)} + ${files.length - 1} more`;
  return { name, format, files: files.map((f) => f.name), metadata, tensors, totalParams, totalBytes };
}

/**
 * Every tensor once. A name in two files is an error, unless the index says which file holds it.
 * With an index, every weight_map entry must be found in the shard it names; tensors a shard holds
 * that the index does not list are kept (lenient: nothing the files hold is lost).
 */
function mergeTensors(files: ModelFile[], index: SafetensorsIndex | undefined): TensorInfo[] {
  const owner = new Map<string, TensorInfo>();
  for (const f of files) {
    for (const t of f.tensors) {
      const other = owner.get(t.name);
      if (!other) {
        owner.set(t.name, t);
        continue;
      }
      const mapped = index?.weightMap.get(t.name);
      if (mapped !== undefined && baseName(mapped) === baseName(t.file)) owner.set(t.name, t);
      else if (mapped === undefined || baseName(mapped) !== baseName(other.file)) {
        throw new FormatError("duplicate-name", t.file, `tensor ${JSON.stringify(t.name)} is also in ${other.file}`);
      }
    }
  }
  if (index) {
    for (const [name, shard] of index.weightMap) {
      const t = owner.get(name);
      if (!t || baseName(t.file) !== baseName(shard)) {
        throw new FormatError("bad-index", index.name, `weight_map puts ${JSON.stringify(name)} in ${shard}, but that file has no such tensor`);
      }
    }
  }
  return files.flatMap((f) => f.tensors.filter((t) => owner.get(t.name) === t));
}

/**
 * The sources for a URL: the file itself, or for an index URL the index and every shard it lists,
 * each resolved relative to the index URL (so a Hugging Face ".../resolve/main/model.safetensors.index.json"
 * finds ".../resolve/main/model-00001-of-00002.safetensors").
 */
export async function openUrlSources(url: string, opts: HttpRangeOptions = {}): Promise<ByteSource[]> {
  const first = await HttpRangeSource.open(url, opts);
  if (!isIndexName(url)) return [first];
  const index = await readIndex(first, opts.signal);
  const shards = await Promise.all(index.shards.map((s) => HttpRangeSource.open(new URL(s, url).href, opts)));
  return [first, ...shards];
}

/** Reads a tensor's bytes in one piece (small tensors; streaming code uses readTensorRows). */
export async function readTensorBytes(t: TensorInfo, signal?: AbortSignal): Promise<Uint8Array> {
  return t.source.read(t.offset, t.bytes, signal);
}

/** A tensor's values in one piece, decoded to float32 (small tensors; streaming code uses readTensorRows). */
export async function readTensorValues(t: TensorInfo, signal?: AbortSignal): Promise<Float32Array<ArrayBuffer>> {
  const undecodable = undecodableError(t);
  if (undecodable) throw undecodable;
  return decodeStored(t.dtype, await readTensorBytes(t, signal));
}

/**
 * A tensor seen as rows: the last dimension is the row (a 1-D tensor is one row, a 0-D one a row of 1);
 * an empty tensor has no rows.
 */
export function tensorRowLayout(t: Pick<TensorInfo, "shape" | "params">): { rows: number; rowLength: number } {
  const rowLength = t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
  if (t.params === 0) return { rows: 0, rowLength };
  return { rows: t.params / rowLength, rowLength };
}

/** The layout of a flat read: rows of one value, or of one block for a ggml block type. */
function flatLayout(t: Pick<TensorInfo, "dtype" | "params">): { rows: number; rowLength: number } {
  const { blockWeights } = storedBlock(t.dtype);
  return { rows: t.params / blockWeights, rowLength: blockWeights };
}

export interface TensorChunk {
  /** Index of the chunk's first row. */
  firstRow: number;
  rows: number;
  /** rows x rowLength values, row-major (a fresh buffer: the consumer may keep or transfer it). */
  values: Float32Array<ArrayBuffer>;
}

/** Default read size of readTensorRows. */
export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

export interface ReadRowsOptions {
  /** Bytes per read (default DEFAULT_CHUNK_BYTES); at least one row is read at a time. */
  chunkBytes?: number;
  signal?: AbortSignal;
  /**
   * Read into one buffer reused for the whole stream (sources with readInto; others decode into one
   * reused array) instead of a fresh buffer per chunk. Much faster on large tensors (fresh multi-MB
   * buffers cost page faults and GC; see bench/run.ts), but a chunk's `values` are overwritten once the
   * next chunk is requested: for consumers that use each chunk at once (statistics, GPU uploads,
   * quantizers). Without it every chunk is the caller's to keep or transfer.
   */
  reuseBuffers?: boolean;
  /**
   * Ignore row boundaries: stream the tensor as `params` rows of one value (of one block for a ggml
   * block type: firstRow and rows then count blocks), so a chunk is at most `chunkBytes` even for a huge
   * 1-D tensor (statistics and element-wise work, which need no rows).
   */
  flat?: boolean;
  /** Read only rows [firstRow, firstRow + rowCount) (default: all); chunk rows keep the tensor's numbering. */
  firstRow?: number;
  rowCount?: number;
}

/**
 * Streams a tensor as float32, whole rows at a time: each chunk is one source read of at most
 * `chunkBytes` (default 8 MiB), or of one row when a row is larger; the tensor is never held whole.
 * Sources that read into a given buffer (local files, see ByteSource.readInto) are read chunk by chunk:
 * the OS reads sequential files ahead already, and a second chunk in flight only costs memory traffic.
 * Other sources (Blob, HTTP) have the next read started while the current chunk is used, so at most
 * two chunks are held. F32 data is not copied: the values are a view of the bytes read.
 */
export async function* readTensorRows(t: TensorInfo, opts: ReadRowsOptions = {}): AsyncGenerator<TensorChunk, void, undefined> {
  const undecodable = undecodableError(t);
  if (undecodable) throw undecodable;
  // Flat reads of a ggml-typed tensor go block by block: a block is the smallest piece that decodes alone.
  const layout = opts.flat ? flatLayout(t) : tensorRowLayout(t);
  const { rowLength } = layout;
  const start = opts.firstRow ?? 0;
  const rows = opts.rowCount === undefined ? layout.rows : start + opts.rowCount;
  if (!(Number.isInteger(start) && start >= 0 && rows >= start && rows <= layout.rows)) {
    throw new RangeError(`rows ${start}..${rows} are not inside tensor "${t.name}" (${layout.rows} rows)`);
  }
  const rowBytes = storedBytes(t.dtype, rowLength);
  const rowsPerChunk = Math.max(1, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / rowBytes));
  const { signal } = opts;
  const reuse = opts.reuseBuffers === true && rows > start;
  const chunkValues = Math.min(rowsPerChunk, rows - start) * rowLength;
  const decoded = reuse && t.dtype !== "F32" ? new Float32Array(chunkValues) : undefined;
  /** Bytes the reader owns entirely (a fresh buffer, or its reuse buffer) are viewed as F32, not copied. */
  const toValues = (bytes: Uint8Array, reuseBuffer: boolean): Float32Array<ArrayBuffer> => {
    const owned = reuseBuffer || (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength);
    const view = t.dtype === "F32" && owned && bytes.buffer instanceof ArrayBuffer ? f32View(bytes) : undefined;
    if (view) return view as Float32Array<ArrayBuffer>;
    return decoded ? decodeStored(t.dtype, bytes, decoded) : decodeStored(t.dtype, bytes);
  };
  const span = (first: number) => ({ offset: t.offset + first * rowBytes, length: Math.min(rowsPerChunk, rows - first) * rowBytes });
  const chunk = (first: number, bytes: Uint8Array, reuseBuffer = false): TensorChunk => ({
    firstRow: first,
    rows: Math.min(rowsPerChunk, rows - first),
    values: toValues(bytes, reuseBuffer),
  });

  const { readInto } = t.source;
  if (readInto) {
    const buffer = reuse ? new Uint8Array((chunkValues / rowLength) * rowBytes) : undefined;
    for (let first = start; first < rows; first += rowsPerChunk) {
      const { offset, length } = span(first);
      const bytes = buffer ? buffer.subarray(0, length) : new Uint8Array(length);
      await readInto.call(t.source, offset, bytes, signal);
      yield chunk(first, bytes, buffer !== undefined);
    }
    return;
  }

  const readRows = (first: number) => {
    const { offset, length } = span(first);
    return t.source.read(offset, length, signal);
  };
  let pending: Promise<Uint8Array> | undefined = rows > start ? readRows(start) : undefined;
  try {
    for (let first = start; first < rows; first += rowsPerChunk) {
      const bytes: Uint8Array = await pending!;
      const next = first + rowsPerChunk;
      pending = next < rows ? readRows(next) : undefined;
      // In reuse mode other dtypes decode into the one reused array; F32 stays a view of the fresh bytes.
      yield chunk(first, bytes);
    }
  } finally {
    // The consumer stopped early (or a read failed): a read still in flight must not become an unhandled rejection.
    pending?.catch(() => {});
  }
}
