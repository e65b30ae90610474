/**
 * What `quantlab encode`, `decode` and `quantize` share: format names (with close-name suggestions),
 * shape options, raw little-endian float32 files, and one-line messages for bad input.
 */
import { readFile, stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { FORMATS, findFormat } from "../quant/registry.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { isQuantInputError, QuantInputError } from "../quant/errors.ts";
import { EXIT, type CliIO } from "./command.ts";

/** Bad input or usage: the CLI prints `quantlab <command>: <message>` and exits 2. */
export class CliInputError extends Error {
  override readonly name = "CliInputError";
}

type StringOptions = Record<string, { type: "string" }>;

/** parseArgs with string options only and no positionals; usage errors become CliInputError. */
export function parseOptions<T extends StringOptions>(args: string[], options: T): { [K in keyof T]?: string } {
  try {
    return parseArgs({ args, options, allowPositionals: false, strict: true }).values as { [K in keyof T]?: string };
  } catch (e) {
    throw new CliInputError(`${(e as Error).message} (--help shows the options)`);
  }
}

/** What `encode` and `decode` both take: --format, --rows, --cols, --in, --out, --backend. */
export interface TensorFileOptions {
  format: QuantFormat;
  shape: MatrixShape;
  input: string;
  output: string;
  backend: Backend;
}

/**
 * Parses the shared options (plus `extra` string options, returned in `values`) and checks that the
 * format takes rows of --cols weights (QuantInputError "row-length" naming llama.cpp's fallback).
 */
export function parseTensorFileOptions<E extends StringOptions>(args: string[], extra: E): TensorFileOptions & { values: { [K in keyof E]?: string } } {
  const shared = { format: { type: "string" }, rows: { type: "string" }, cols: { type: "string" }, in: { type: "string" }, out: { type: "string" }, backend: { type: "string" } } as const;
  const v = parseOptions(args, { ...shared, ...extra }) as Record<string, string | undefined>;
  const format = formatByName(requiredOption(v.format, "--format"));
  const shape = { rows: positiveInt(v.rows, "--rows"), cols: positiveInt(v.cols, "--cols") };
  const parsed = {
    format,
    shape,
    input: requiredOption(v.in, "--in"),
    output: requiredOption(v.out, "--out"),
    backend: backendOption(v.backend),
    values: v as { [K in keyof E]?: string },
  };
  const check = format.checkRowLength(shape.cols);
  if (!check.ok) throw new QuantInputError("row-length", `${format.id}: ${check.reason}`, { fallback: check.fallback });
  return parsed;
}

/** Levenshtein distance on lowercase names (formats are short; a plain table is enough). */
function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** Up to `max` known format ids closest to `name` (prefix matches first, then by edit distance). */
export function closeFormatNames(name: string, max = 4): string[] {
  const lower = name.toLowerCase();
  const scored = FORMATS.map((f) => {
    const id = f.id.toLowerCase();
    const prefix = id.startsWith(lower) || lower.startsWith(id);
    return { id: f.id, score: prefix ? 0 : editDistance(lower, id) };
  });
  const limit = Math.max(2, Math.ceil(name.length / 2));
  return scored
    .filter((s) => s.score <= limit)
    .sort((a, b) => a.score - b.score || a.id.localeCompare(b.id))
    .slice(0, max)
    .map((s) => s.id);
}

/** The format named `name` (an id or alias); an unknown name throws with the closest known ones. */
export function formatByName(name: string): QuantFormat {
  const format = findFormat(name);
  if (format) return format;
  const close = closeFormatNames(name);
  const hint = close.length > 0 ? `; did you mean ${close.join(", ")}?` : "";
  throw new CliInputError(`unknown format "${name}"${hint} (quantlab formats lists them all)`);
}

/** A positive integer option (--rows, --cols). */
export function positiveInt(value: string | undefined, option: string): number {
  if (value === undefined) throw new CliInputError(`${option} is required`);
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new CliInputError(`${option} must be a positive integer, got "${value}"`);
  }
  return Number(value);
}

export function requiredOption(value: string | undefined, option: string): string {
  if (value === undefined || value === "") throw new CliInputError(`${option} is required`);
  return value;
}

export type Backend = "cpu" | "webgpu";

export function backendOption(value: string | undefined): Backend {
  if (value === undefined || value === "cpu") return "cpu";
  if (value === "webgpu") return "webgpu";
  throw new CliInputError(`--backend must be cpu or webgpu, got "${value}"`);
}

/** A file's bytes, after checking its size is exactly `expected` bytes (what: "the input", ...). */
export async function readExactFile(file: string, expected: number, what: string): Promise<Uint8Array<ArrayBuffer>> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliInputError(`${file}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  if (size !== expected) {
    throw new CliInputError(`${file}: ${what} has ${size} bytes, expected ${expected}`);
  }
  const b = await readFile(file);
  // A fresh, aligned ArrayBuffer: Buffers from the pool may start at an offset not a multiple of 4.
  const copy = new Uint8Array(new ArrayBuffer(b.byteLength));
  copy.set(b);
  return copy;
}

/** Raw float32 little-endian values (this CLI runs on little-endian machines, as every WebGPU host is). */
export function float32Of(bytes: Uint8Array<ArrayBuffer>): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim();

/**
 * Prints one line for an error and returns the exit code: 2 for bad input (CliInputError,
 * QuantInputError), 1 with the stack for anything else.
 */
export function reportCommandError(command: string, e: unknown, io: CliIO): number {
  if (e instanceof CliInputError || isQuantInputError(e)) {
    io.err(`quantlab ${command}: ${oneLine(e.message)}\n`);
    return EXIT.usage;
  }
  io.err(`quantlab ${command}: unexpected failure: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT.failure;
}
