/**
 * One small interface for bytes, whatever holds them: a File/Blob in the browser, a file handle in
 * Node (src/node/file-source.ts), or an HTTP server that honours Range requests.
 * Readers only ever ask for slices; nothing here reads a whole file to get one tensor.
 * Offsets are plain numbers: exact up to 2^53 bytes, so files past 4 GiB work.
 */
export interface ByteSource {
  /** File name or URL, used in every message about this source. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Read exactly `length` bytes at `offset`; throws FormatError("truncated") if the source is shorter. */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Release handles (Node file handles); a no-op elsewhere. */
  close?(): Promise<void>;
}
