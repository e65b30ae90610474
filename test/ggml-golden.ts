/**
 * Loader for ../shared/golden/ggml: llama.cpp's own quantizer outputs (see its README.md).
 * Node-only test helper.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

export const GGML_GOLDEN_DIR = resolve(import.meta.dirname, "../../shared/golden/ggml");

export interface GoldenEntry {
  format: string;
  variant: "ref" | "imatrix";
  case: string;
  rows: number;
  cols: number;
  input: string;
  imatrix: string | null;
  quant: { file: string; bytes: number; row_bytes: number; untouched_bytes?: unknown };
  dequant: { file: string };
  rmse: number;
  max_abs_err: number;
  fma_sensitive_blocks: number[];
}

export interface GoldenManifest {
  formats: Record<string, { block_weights: number; block_bytes: number; bits_per_weight: number; fields: [string, number, number, string][] }>;
  entries: GoldenEntry[];
}

export function goldenManifest(): GoldenManifest {
  return JSON.parse(readFileSync(resolve(GGML_GOLDEN_DIR, "manifest.json"), "utf8")) as GoldenManifest;
}

function bytes(rel: string): ArrayBuffer {
  const b = readFileSync(resolve(GGML_GOLDEN_DIR, rel));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export interface GoldenCase {
  entry: GoldenEntry;
  input: Float32Array;
  imatrix?: Float32Array;
  quant: Uint8Array;
  /** Dequantized values as bit patterns: compare as u32 (ggml returns -0.0 in places). */
  dequantBits: Uint32Array;
}

export function loadGoldenCase(entry: GoldenEntry): GoldenCase {
  return {
    entry,
    input: new Float32Array(bytes(entry.input)),
    ...(entry.imatrix ? { imatrix: new Float32Array(bytes(entry.imatrix)) } : {}),
    quant: new Uint8Array(bytes(entry.quant.file)),
    dequantBits: new Uint32Array(bytes(entry.dequant.file)),
  };
}
