/**
 * The TypeScript CPU references of the ggml formats against llama.cpp's single-thread C reference.
 *
 * Workload as in ../shared/golden/ggml/README.md ("Performance anchor"): a 4096x4096 float32 matrix of
 * N(0, 0.02^2), imatrix exp(N(0,1)) per column; MB/s = 10^6 bytes of float32 input (encode) or output
 * (decode) per second. The C figures are read from that README's table, so there is one copy of them.
 * Each path runs once to warm up, then `repeats` times; the median counts. Times are CPU time of the
 * process (see cpuMs). Outputs go into buffers allocated once (QuantFormat's `out` arguments), so page
 * faults of fresh 64 MiB arrays are not timed.
 *
 * Machine speed: the C figures were measured on an idle core. A trivial TS loop over the same data
 * (y[i] = x[i] * 0.5 into a preallocated array) is timed before every repeat; `load` is its median speed
 * against IDLE_REFERENCE_MBPS (the same loop on this machine idle, capped at 1), and `adj. ratio` is the
 * ratio scaled by it, i.e. what the ratio would be on an idle core. Target: adjusted ratio <= 3.
 *
 * Standalone: `npx tsx bench/cpu-formats.ts [--rows N] [--repeats N] [--formats q4_0,q4_K]`.
 * From another bench: `cpuFormatRows(options)` returns the rows without printing.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { getFormat } from "../src/quant/registry.ts";

const README = path.resolve(import.meta.dirname, "../../shared/golden/ggml/README.md");

/**
 * MB/s of the reference loop (y[i] = x[i] * 0.5 over 64 MiB of float32, CPU time) on a quiet core of this
 * machine, the machine class the C figures come from: the best of 3 x 40 runs at nice -19 (3836-4013).
 */
export const IDLE_REFERENCE_MBPS = 3900;

export type CpuPath = "encode" | "encode+imatrix" | "decode";

export interface CFigure {
  format: string;
  path: CpuPath;
  /** llama.cpp's MB/s (README table). */
  mbps: number;
}

export interface CpuFormatRow {
  format: string;
  path: CpuPath;
  /** Median MB/s of the TypeScript reference. */
  tsMBps: number;
  /** llama.cpp's C reference, MB/s (single thread, idle). */
  cMBps: number;
  /** C speed over TS speed: how many times slower the TypeScript is. */
  ratio: number;
  /** The reference loop's speed while this row ran, over its idle speed (1 = idle, 0.5 = half speed). */
  load: number;
  /** ratio * load: the ratio on an idle core. */
  adjustedRatio: number;
}

/** The C reference figures of ../shared/golden/ggml/README.md's performance table. */
export function cReferenceFigures(readmePath = README): CFigure[] {
  const figures: CFigure[] = [];
  for (const line of readFileSync(readmePath, "utf8").split("\n")) {
    // | q4_0 | quantize_row_q4_0_ref | 3838 | 1.04 | 8497 | 0.471 |
    const m = /^\|\s*(q\w+)\s*\|\s*([^|]+?)\s*\|\s*(\d+)\s*\|\s*[\d.]+\s*\|\s*(\d+)\s*\|\s*[\d.]+\s*\|$/.exec(line.trim());
    if (!m) continue;
    const [, format, fn, encodeMBps, decodeMBps] = m as unknown as [string, string, string, string, string];
    const imatrix = fn.includes("imatrix");
    figures.push({ format, path: imatrix ? "encode+imatrix" : "encode", mbps: Number(encodeMBps) });
    if (!imatrix) figures.push({ format, path: "decode", mbps: Number(decodeMBps) });
  }
  if (figures.length === 0) throw new Error(`no C reference figures found in ${readmePath}`);
  return figures;
}

/** Deterministic N(0,1) samples (xorshift32 + Box-Muller) so every run times the same data. */
function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 4294967297;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const t = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Milliseconds of CPU time (user + system) of one call. CPU time, not wall time: on a shared machine other
 * processes take the core away for whole time slices, which wall time counts and CPU time does not (cache
 * and memory-bandwidth contention still show, and the reference loop measures those).
 */
function cpuMs(run: () => void): number {
  const start = process.cpuUsage();
  run();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/** The machine-speed reference: y[i] = x[i] * 0.5. */
function referenceLoop(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * 0.5;
}

/**
 * One warm-up call, then `repeats` timed calls, each right after a timed run of the reference loop.
 * Returns the median ms of `run` and the median speed of the reference loop in MB/s.
 */
function timeWithReference(repeats: number, x: Float32Array, y: Float32Array, run: () => void): { ms: number; referenceMBps: number } {
  run();
  referenceLoop(x, y);
  const times: number[] = [];
  const reference: number[] = [];
  for (let i = 0; i < repeats; i++) {
    reference.push((x.length * 4) / 1e3 / cpuMs(() => referenceLoop(x, y)));
    times.push(cpuMs(run));
  }
  return { ms: median(times), referenceMBps: median(reference) };
}

export interface CpuBenchOptions {
  rows?: number;
  cols?: number;
  repeats?: number;
  /** Format ids to run (default: every format with a C figure). */
  formats?: string[];
  /** Called after each row (progress for long runs). */
  onRow?: (row: CpuFormatRow) => void;
}

/** Times every (format, path) that has a C reference figure. */
export function cpuFormatRows(options: CpuBenchOptions = {}): CpuFormatRow[] {
  const rows = options.rows ?? 4096;
  const cols = options.cols ?? 4096;
  const repeats = options.repeats ?? 5;
  const shape = { rows, cols };
  const x = gaussian(rows * cols, 1);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * 0.02;
  const imatrix = gaussian(cols, 2).map(Math.exp);
  const y = new Float32Array(rows * cols);
  const figures = cReferenceFigures().filter((f) => !options.formats || options.formats.includes(f.format));
  const result: CpuFormatRow[] = [];
  const encoded = new Map<string, Uint8Array>();
  for (const figure of figures) {
    const format = getFormat(figure.format);
    let out = encoded.get(format.id);
    if (!out) {
      out = new Uint8Array(format.encodedBytes(shape));
      encoded.set(format.id, out);
    }
    const target = out;
    let timing: { ms: number; referenceMBps: number };
    if (figure.path === "decode") {
      format.encode(x, shape, { out: target });
      timing = timeWithReference(repeats, x, y, () => format.decode(target, shape, y));
    } else {
      const opts = figure.path === "encode+imatrix" ? { imatrix, out: target } : { out: target };
      timing = timeWithReference(repeats, x, y, () => format.encode(x, shape, opts));
    }
    const { ms } = timing;
    const load = Math.min(1, timing.referenceMBps / IDLE_REFERENCE_MBPS);
    const tsMBps = (rows * cols * 4) / 1e3 / ms;
    const ratio = figure.mbps / tsMBps;
    const row: CpuFormatRow = { format: format.id, path: figure.path, tsMBps, cMBps: figure.mbps, ratio, load, adjustedRatio: ratio * load };
    result.push(row);
    options.onRow?.(row);
  }
  return result;
}

export function formatCpuRow(r: CpuFormatRow): string {
  const verdict = r.adjustedRatio <= 3 ? "PASS" : "FAIL";
  return [
    r.format.padEnd(5),
    r.path.padEnd(14),
    r.tsMBps.toFixed(0).padStart(8),
    r.cMBps.toFixed(0).padStart(7),
    r.ratio.toFixed(2).padStart(6),
    r.load.toFixed(2).padStart(5),
    r.adjustedRatio.toFixed(2).padStart(11),
    verdict.padStart(7),
  ].join("  ");
}

export const CPU_ROW_HEADER = ["fmt  ", "path          ", "TS MB/s", " C MB/s", " ratio", " load", " adj. ratio", " <= 3x"].join("  ");

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rowsArg = argValue("--rows");
  const repeatsArg = argValue("--repeats");
  const formatsArg = argValue("--formats");
  console.log(CPU_ROW_HEADER);
  const rows = cpuFormatRows({
    ...(rowsArg ? { rows: Number(rowsArg) } : {}),
    ...(repeatsArg ? { repeats: Number(repeatsArg) } : {}),
    ...(formatsArg ? { formats: formatsArg.split(",") } : {}),
    onRow: (r) => console.log(formatCpuRow(r)),
  });
  if (rows.some((r) => r.adjustedRatio > 3)) process.exitCode = 1;
}
