/**
 * One small interface for bytes, whatever holds them: a File/Blob in the browser, a file handle in
 * Node (src/node/file-source.ts), or an HTTP server that honours Range requests.
 * Readers only ever ask for slices; nothing here reads a whole file to get one tensor.
 * Offsets are plain numbers: exact up to 2^53 bytes, so files past 4 GiB work.
 */
import { errorText } from "../common/error-text.ts";
import { FormatError } from "./errors.ts";

export interface ByteSource {
  /** File name or URL, used in every message about this source. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Read exactly `length` bytes at `offset`; throws FormatError("truncated") if the source is shorter. */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Fill `target` with the bytes at `offset` (same checks and errors as read). Only for sources whose
   * reads are cheap local calls that the OS reads ahead (Node file handles): readTensorRows then reads
   * chunk by chunk without a prefetch of its own, and can reuse one buffer.
   */
  readInto?(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** Release handles (Node file handles); a no-op elsewhere. */
  close?(): Promise<void>;
}

/**
 * The check every ByteSource makes before reading: offset and length are non-negative safe integers
 * and the slice lies inside the source. Thrown before anything is allocated or requested.
 */
export function assertReadable(source: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`${source.name}: invalid read of ${length} bytes at offset ${offset}`);
  }
  if (offset + length > source.size) {
    throw new FormatError(
      "truncated",
      source.name,
      `needs bytes ${offset}..${offset + length} but the file ends at byte ${source.size}`,
    );
  }
}

/** A File or Blob, read with Blob.slice: the browser only loads the slices asked for. */
export class BlobSource implements ByteSource {
  readonly name: string;
  readonly size: number;

  constructor(
    readonly blob: Blob,
    name?: string,
  ) {
    this.name = name ?? (blob as Partial<File>).name ?? "blob";
    this.size = blob.size;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadable(this, offset, length);
    signal?.throwIfAborted();
    let buffer: ArrayBuffer;
    try {
      buffer = await this.blob.slice(offset, offset + length).arrayBuffer();
    } catch (e) {
      // e.g. NotReadableError when the file changed or vanished after it was picked
      throw new FormatError("io", this.name, `could not read bytes ${offset}..${offset + length}: ${errorText(e)}`);
    }
    signal?.throwIfAborted();
    if (buffer.byteLength !== length) {
      throw new FormatError("truncated", this.name, `read ${buffer.byteLength} of ${length} bytes at offset ${offset}`);
    }
    return new Uint8Array(buffer);
  }
}

export interface HttpRangeOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Extra request headers, e.g. an Authorization header for a gated Hugging Face repository. */
  headers?: Record<string, string>;
  /** Bytes the first request asks for (default 64 KiB): enough for most headers, kept in memory. */
  firstSliceBytes?: number;
  signal?: AbortSignal;
}

/** The default first request: a header of a few thousand tensors fits, so opening costs one request. */
export const FIRST_SLICE_BYTES = 64 * 1024;

const CONTENT_RANGE = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i;
const UNSATISFIED_RANGE = /^\s*bytes\s+\*\/(\d+)\s*$/i;

/**
 * A file on an HTTP(S) server read with Range requests (a Hugging Face "resolve" URL works: fetch
 * follows its redirect, and later requests go straight to the final URL).
 * The first request asks for the first slice and learns the size from Content-Range; that slice is
 * kept, so reading the header usually costs nothing more. A server that ignores Range (HTTP 200) is
 * reported, and its body is cancelled rather than downloaded.
 */
export class HttpRangeSource implements ByteSource {
  /** Body bytes received so far, over every request. */
  bytesTransferred = 0;
  /** Requests made so far. */
  requests = 0;

  private constructor(
    /** The URL as given: used in messages. */
    readonly name: string,
    /** The URL after redirects: later requests go there. */
    readonly url: string,
    readonly size: number,
    /** The first slice, kept: reads inside it cost no request. */
    private readonly firstSlice: Uint8Array,
    /** The first response's ETag, to notice a file replaced between requests. */
    private readonly etag: string | null,
    private readonly fetchFn: typeof fetch,
    private readonly headers: Record<string, string>,
  ) {}

  static async open(url: string, opts: HttpRangeOptions = {}): Promise<HttpRangeSource> {
    const fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    const headers = opts.headers ?? {};
    const want = Math.max(1, Math.floor(opts.firstSliceBytes ?? FIRST_SLICE_BYTES));
    const counter: TransferCounter = { bytesTransferred: 0, requests: 0 };
    const response = await request(fetchFn, url, url, 0, want, headers, counter, opts.signal);
    let size = 0;
    let first: Uint8Array = new Uint8Array(0);
    if (response.status === 416) {
      // Only an empty file cannot satisfy bytes=0-N.
      const total = UNSATISFIED_RANGE.exec(response.headers.get("content-range") ?? "");
      await response.body?.cancel();
      if (!total || Number(total[1]) !== 0) {
        throw new FormatError("http", url, "HTTP 416: the server could not satisfy a Range request for the start of the file");
      }
    } else {
      const range = await parseRange(response, url, 0, want);
      size = range.total;
      first = await readBody(response, range.end - range.start, url, counter, opts.signal);
    }
    const source = new HttpRangeSource(url, response.url || url, size, first, response.headers.get("etag"), fetchFn, headers);
    source.bytesTransferred = counter.bytesTransferred;
    source.requests = counter.requests;
    return source;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadable(this, offset, length);
    if (length === 0) return new Uint8Array(0);
    const end = offset + length;
    const cached = this.firstSlice.length;
    if (end <= cached) return this.firstSlice.slice(offset, end);
    if (offset >= cached) return this.fetchRange(offset, end, signal);
    // Starts inside the kept first slice: fetch only the rest.
    const out = new Uint8Array(length);
    out.set(this.firstSlice.subarray(offset));
    out.set(await this.fetchRange(cached, end, signal), cached - offset);
    return out;
  }

  /** Bytes [start, end) in one Range request. */
  private async fetchRange(start: number, end: number, signal?: AbortSignal): Promise<Uint8Array> {
    const response = await request(this.fetchFn, this.url, this.name, start, end - start, this.headers, this, signal);
    const range = await parseRange(response, this.name, start, end - start);
    if (range.end !== end) {
      await response.body?.cancel();
      throw new FormatError("truncated", this.name, `asked for bytes ${start}..${end}, the server sent ${start}..${range.end}`);
    }
    const etag = response.headers.get("etag");
    if (this.etag && etag && etag !== this.etag) {
      await response.body?.cancel();
      throw new FormatError("io", this.name, "the file changed on the server while it was being read (its ETag changed)");
    }
    return readBody(response, end - start, this.name, this, signal);
  }
}

interface TransferCounter {
  bytesTransferred: number;
  requests: number;
}

/** Reads exactly `expected` body bytes, refusing (and cancelling) anything longer. */
async function readBody(
  response: Response,
  expected: number,
  name: string,
  counter: TransferCounter,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const out = new Uint8Array(expected);
  let filled = 0;
  if (!response.body) {
    const all = new Uint8Array(await response.arrayBuffer());
    counter.bytesTransferred += all.length;
    if (all.length > expected) throw new FormatError("http", name, `the server sent ${all.length} bytes for a ${expected}-byte range`);
    out.set(all);
    filled = all.length;
  } else {
    const reader = response.body.getReader();
    try {
      for (;;) {
        signal?.throwIfAborted();
        const { done, value } = await reader.read();
        if (done) break;
        counter.bytesTransferred += value.length;
        if (filled + value.length > expected) {
          throw new FormatError("http", name, `the server sent more than the ${expected} bytes of the range asked for`);
        }
        out.set(value, filled);
        filled += value.length;
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      if (e instanceof FormatError || signal?.aborted) throw e;
      throw new FormatError("http", name, `the download broke off: ${errorText(e)}`);
    }
  }
  if (filled !== expected) {
    throw new FormatError("truncated", name, `the server sent ${filled} of the ${expected} bytes of a range`);
  }
  return out;
}

/** One GET with `Range: bytes=start-(start+length-1)`; network failures become FormatError("http"). */
async function request(
  fetchFn: typeof fetch,
  url: string,
  name: string,
  start: number,
  length: number,
  headers: Record<string, string>,
  counter: TransferCounter,
  signal?: AbortSignal,
): Promise<Response> {
  signal?.throwIfAborted();
  counter.requests++;
  let response: Response;
  try {
    response = await fetchFn(url, {
      headers: { ...headers, Range: `bytes=${start}-${start + length - 1}` },
      redirect: "follow",
      signal: signal ?? null,
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new FormatError("http", name, `the request failed (network error, or the server does not allow cross-origin requests): ${errorText(e)}`);
  }
  if (response.status === 200) {
    await response.body?.cancel();
    throw new FormatError(
      "range-unsupported",
      name,
      `the server ignored the Range request (HTTP 200 for bytes=${start}-${start + length - 1}); quantlab needs a server that supports HTTP Range requests`,
    );
  }
  if (response.status !== 206 && response.status !== 416) {
    await response.body?.cancel();
    throw new FormatError("http", name, `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
  }
  return response;
}

/** Parses and checks a 206's Content-Range: it must start where asked and not run past the request. */
async function parseRange(
  response: Response,
  name: string,
  start: number,
  length: number,
): Promise<{ start: number; end: number; total: number }> {
  const header = response.headers.get("content-range") ?? "";
  const m = response.status === 206 ? CONTENT_RANGE.exec(header) : null;
  const fail = async (detail: string): Promise<never> => {
    await response.body?.cancel();
    throw new FormatError("http", name, detail);
  };
  if (!m) return fail(`HTTP ${response.status} without a usable Content-Range header ("${header}")`);
  if (m[3] === "*") return fail("the server does not say how large the file is (Content-Range total is *)");
  const first = Number(m[1]);
  const last = Number(m[2]);
  const total = Number(m[3]);
  if (!Number.isSafeInteger(total) || first !== start || last < first || last >= total || last >= start + length) {
    return fail(`the server answered bytes=${start}-${start + length - 1} with Content-Range "${header}"`);
  }
  return { start: first, end: last + 1, total };
}
