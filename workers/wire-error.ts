/**
 * How a thrown error crosses a worker boundary. Every worker of the lab throws through toWireError and
 * every client catches through fromWireError.
 *
 * Comlink forwards a thrown Error as a bare Error (message, name, stack), which would lose a
 * FormatError's code, file and detail. So a worker throws a plain WireError object instead, and the
 * page turns it back into a FormatError, a CancelledError (the request was cancelled or replaced), or a
 * plain Error for anything else.
 */
import { FormatError, isFormatError, type FormatErrorCode } from "../src/formats/errors.ts";

/** A thrown error as it crosses postMessage. */
export interface WireError {
  wireError: true;
  message: string;
  /** Set for FormatError. */
  format?: { code: FormatErrorCode; file: string; detail: string };
  /** Set when the request was cancelled (by the user, or by a newer request). */
  aborted?: boolean;
}

export function toWireError(e: unknown): WireError {
  if (isFormatError(e)) return { wireError: true, message: e.message, format: { code: e.code, file: e.file, detail: e.detail } };
  // DOMException (an AbortSignal's reason) is an Error too.
  if (e instanceof Error) return { wireError: true, message: e.message, aborted: e.name === "AbortError" || undefined };
  return { wireError: true, message: String(e) };
}

/** A request the user cancelled, or that a newer request replaced. */
export class CancelledError extends Error {
  override readonly name = "CancelledError";
}

/** An error from a worker, restored to a FormatError or CancelledError when it was one. */
export function fromWireError(e: unknown): Error {
  if (typeof e === "object" && e !== null && (e as WireError).wireError === true) {
    const wire = e as WireError;
    if (wire.format) return new FormatError(wire.format.code, wire.format.file, wire.format.detail);
    if (wire.aborted) return new CancelledError(wire.message);
    return new Error(wire.message);
  }
  return e instanceof Error ? e : new Error(String(e));
}
