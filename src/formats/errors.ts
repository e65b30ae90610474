/**
 * Every problem a reader finds in a file is a FormatError: a typed code the UI and CLI can branch on,
 * the file it concerns, and a one-line human message that names both.
 */
export type FormatErrorCode =
  | "truncated" // the file ends before something its header promises
  | "header-too-large" // header length above the 100 MB cap or past the end of the file
  | "bad-json" // header is not JSON, or not an object
  | "bad-header" // JSON parses but violates the safetensors schema (types, shapes, metadata)
  | "unknown-dtype"
  | "undecodable" // a listed tensor whose values the lab cannot decode (GGUF IQ*/TQ* types...)
  | "bad-offsets" // data_offsets out of the data section, reversed, or overlapping
  | "size-mismatch" // byte size != product(shape) x dtype size
  | "duplicate-name"
  | "bad-index" // model.safetensors.index.json problems (missing shard, bad weight_map)
  | "range-unsupported" // an HTTP server ignored a Range request
  | "http" // an HTTP error status or network failure
  | "io"; // any other read failure

export class FormatError extends Error {
  override readonly name = "FormatError";
  constructor(
    readonly code: FormatErrorCode,
    /** The file (name or URL) the problem is in. */
    readonly file: string,
    /** What is wrong, without the file name. */
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}

export function isFormatError(e: unknown): e is FormatError {
  return e instanceof Error && (e as { name?: string }).name === "FormatError" && "code" in e && "file" in e;
}
