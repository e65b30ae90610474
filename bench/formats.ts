/**
 * The format benchmark: for a 4096x4096 float32 tensor of N(0, 0.02^2) and each format, how fast the
 * WGSL kernel encodes it, how fast a plain copy kernel moves the same bytes on the same adapter, how fast
 * the TypeScript CPU reference encodes it, and llama.cpp's single-thread C figure
 * (../shared/golden/ggml/README.md, read by bench/cpu-formats.ts: one copy of the numbers).
 *
 * Where the GPU runs: Dawn in Node (the `webgpu` package, src/node/webgpu.ts) on SwiftShader's Vulkan
 * driver, the same software rasterizer as the browser tests' Chromium, so the figures are a CPU's:
 * judge the ratios. GPU times are end to end, as the lab's pipeline (src/pipeline/quantize-tensor.ts)
 * runs the kernels: the tensor streamed in chunks of DEFAULT_CHUNK_BYTES of whole rows (the whole tensor
 * at once for the formats that need it), each from a Float32Array in JS memory to the bytes back in JS
 * memory (upload, dispatches, read-back), wall time. The copy baseline (src/gpu/copy.ts) is measured
 * the same way, with the same chunks. MB/s = 10^6 bytes of float32 input per second.
 *
 * Targets (issue 3):
 *  - memory-bound kernels (the block-32 formats q4_0..q8_0 and q8_K, the plain integers, bitsandbytes,
 *    casts): GPU >= 0.5 x copy;
 *  - searching kernels (the K-quants, and every importance-weighted encoder): GPU >= llama.cpp's C;
 *  - the TypeScript reference within 3x of C (C / TS <= 3), on an idle core: bench/cpu-formats.ts
 *    measures it with its machine-speed adjustment; formats without a C figure have no CPU target.
 *
 * Standalone: `npx tsx bench/formats.ts [--formats q4_0,q4_K] [--rows N]`; `npm run bench` runs it
 * after bench/run.ts's reader benchmarks.
 */
import { register } from "node:module";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { gaussian } from "../test/random.ts";
import type { LabDevice } from "../src/gpu/device.ts";
import type { QuantFormat } from "../src/quant/format.ts";
import { getFormat } from "../src/quant/registry.ts";
import { DEFAULT_CHUNK_BYTES } from "../src/formats/model.ts";
import { cpuFormatRows, cReferenceFigures, type CpuFormatRow, type CpuPath } from "./cpu-formats.ts";

/** What `npm run bench` covers: every format the issue names (`--formats all` for the whole registry). */
export const BENCH_FORMATS = [
  "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q8_K", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
  "int8", "int8-tensor", "int4-g128", "int4-asym-g32", "int3-g64", "int2-g64",
  "llm-int8", "nf4", "nf4-dq", "fp4", "f16", "bf16", "fp8-e4m3", "fp8-e5m2",
];

const K_QUANTS = new Set(["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]);

/** A GPU path whose whole tensor would take longer than this is timed on a leading slice of rows... */
const SAMPLE_OVER_MS = 8000;
/** ...that takes about this long. */
const SAMPLE_MS = 2000;

/** A timed run is repeated while the runs so far took less than this (each path at most 3 times). */
const REPEAT_UNDER_MS = 4000;

export type EncodePath = Exclude<CpuPath, "decode">;

export interface FormatBenchRow {
  format: string;
  path: EncodePath;
  /** WGSL kernel, MB/s of input; undefined when the format has no kernel (yet). */
  gpuMBps: number | undefined;
  /** The copy kernel's MB/s on the same adapter, same data, same chunks. */
  copyMBps: number;
  /** Whether the tensor went through in chunks of rows (else whole). */
  chunked: boolean;
  /** Rows the GPU figure was timed on: all, or the leading rows of a slow kernel. */
  gpuRows: number;
  /** Why there is no GPU figure although the format has a kernel (it did not finish in time). */
  gpuNote?: string;
  /** TypeScript CPU reference, MB/s. */
  cpuMBps: number;
  /** llama.cpp's C reference, MB/s, where the README has a figure. */
  cMBps: number | undefined;
  /** C / TS on an idle core (bench/cpu-formats.ts), where there is a C figure. */
  cpuAdjustedRatio: number | undefined;
  /** Which GPU target applies. */
  gpuTarget: "copy/2" | "C";
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Median wall ms of `run`, up to 3 times while it is fast. Callers warm up first on a small slice
 * (pipelines compiled, code JIT-compiled): a full-size warm-up run of a slow path would double the bench.
 */
async function timeMedian(run: () => Promise<unknown> | unknown): Promise<number> {
  const times: number[] = [];
  let total = 0;
  while (times.length < 3 && (times.length === 0 || total < REPEAT_UNDER_MS)) {
    const start = performance.now();
    await run();
    const ms = performance.now() - start;
    times.push(ms);
    total += ms;
  }
  return median(times);
}

const mbps = (bytes: number, ms: number) => bytes / 1e3 / ms;

/** How long one GPU path may take before the bench gives up on the GPU. */
const GPU_PATH_LIMIT_MS = 90_000;

class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface FormatBenchOptions {
  formats?: string[];
  rows?: number;
  cols?: number;
  /** Timed runs per path of bench/cpu-formats.ts (after its warm-up run); 1 keeps `npm run bench` short. */
  cpuRepeats?: number;
  /** Progress lines (stderr). */
  log?: (line: string) => void;
}

export interface FormatBench {
  adapter: string;
  rows: FormatBenchRow[];
}

/**
 * Loads the GPU modules after registering the `?raw` hooks of bin/raw-imports.js (they import WGSL that
 * way); src/cli/backend.ts's openGpuDevice also registers every kernel family.
 */
async function gpuModules() {
  register(new URL("../bin/raw-imports.js", import.meta.url));
  const [backend, quantizer, copy, pipeline] = await Promise.all([
    import("../src/cli/backend.ts"),
    import("../src/gpu/quantizer.ts"),
    import("../src/gpu/copy.ts"),
    import("../src/pipeline/quantize-tensor.ts"),
  ]);
  return { ...backend, gpuQuantizerFor: quantizer.gpuQuantizerFor, gpuCopy: copy.gpuCopy, encodesRowsIndependently: pipeline.encodesRowsIndependently };
}

export async function formatBench(options: FormatBenchOptions = {}): Promise<FormatBench> {
  const log = options.log ?? (() => {});
  const rows = options.rows ?? 4096;
  const cols = options.cols ?? 4096;
  const shape = { rows, cols };
  const formats = (options.formats ?? BENCH_FORMATS).map((name) => getFormat(name));
  const x = gaussian(rows * cols, 0.02, 20240611);
  const imatrix = gaussian(cols, 1, 7).map(Math.exp);
  const inputBytes = x.byteLength;

  const gpu = await gpuModules();
  const dev: LabDevice = await gpu.openGpuDevice();
  const adapter = gpu.describeDevice(dev);

  try {
    const chunkRows = Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (cols * 4)));
    const pieces = (whole: boolean) => gpu.chunkRows(rows, whole ? rows : chunkRows);
    const copyMBps = new Map<boolean, number>();
    await gpu.gpuCopy(dev, x.subarray(0, 8 * cols));
    for (const whole of [false, true]) {
      const ms = await timeMedian(async () => {
        for (const [a, b] of pieces(whole)) await gpu.gpuCopy(dev, x.subarray(a * cols, b * cols));
      });
      copyMBps.set(whole, mbps(inputBytes, ms));
      log(`copy kernel (${whole ? "whole tensor" : `chunks of ${chunkRows} rows`}): ${mbps(inputBytes, ms).toFixed(0)} MB/s`);
    }

    // The TS references of the formats llama.cpp has figures for, with bench/cpu-formats.ts's idle-core adjustment.
    const cFormats = new Set(cReferenceFigures().map((f) => f.format));
    const cRows = cpuFormatRows({ rows, cols, repeats: options.cpuRepeats ?? 1, formats: formats.map((f) => f.id).filter((id) => cFormats.has(id)), onRow: (r) => log(`cpu ${r.format} ${r.path}: ${r.tsMBps.toFixed(0)} MB/s`) });
    const cRow = (format: string, path: EncodePath): CpuFormatRow | undefined => cRows.find((r) => r.format === format && r.path === path);

    const out: FormatBenchRow[] = [];
    let gpuStuck: string | undefined;
    for (const format of formats) {
      const paths: EncodePath[] = cRow(format.id, "encode+imatrix") ? ["encode", "encode+imatrix"] : ["encode"];
      for (const path of paths) {
        const opts = path === "encode+imatrix" ? { imatrix } : {};
        const whole = !gpu.encodesRowsIndependently(format);
        // A kernel that does not finish in GPU_PATH_LIMIT_MS (seen with q6_K through Dawn) stops the GPU
        // part: the device's queue is stuck behind it. The rest gets CPU figures only.
        let timed: { mbps: number; rows: number } | undefined;
        let gpuNote: string | undefined = gpuStuck;
        if (!gpuStuck) {
          try {
            timed = await withTimeout(timeGpu(gpu.gpuQuantizerFor, dev, format, x, shape, pieces(whole), opts), GPU_PATH_LIMIT_MS);
          } catch (e) {
            if (!(e instanceof TimeoutError)) throw e;
            gpuNote = `${format.id} ${path} did not finish in ${GPU_PATH_LIMIT_MS / 1000} s`;
            gpuStuck = `GPU stuck (${gpuNote})`;
            log(gpuStuck);
          }
        }
        const gpuMBps = timed?.mbps;
        const c = cRow(format.id, path);
        const cpuMBps = c ? c.tsMBps : await timeCpu(format, x, shape);
        const row: FormatBenchRow = {
          format: format.id,
          path,
          gpuMBps,
          copyMBps: copyMBps.get(whole)!,
          chunked: !whole,
          gpuRows: timed?.rows ?? rows,
          ...(gpuNote ? { gpuNote } : {}),
          cpuMBps,
          cMBps: c?.cMBps,
          cpuAdjustedRatio: c?.adjustedRatio,
          gpuTarget: K_QUANTS.has(format.id) || path === "encode+imatrix" ? "C" : "copy/2",
        };
        log(`${format.id} ${path}: GPU ${gpuMBps === undefined ? "no kernel" : `${gpuMBps.toFixed(0)} MB/s`}, CPU ${cpuMBps.toFixed(0)} MB/s`);
        out.push(row);
      }
    }
    return { adapter, rows: out };
  } finally {
    dev.device.destroy();
  }
}

async function timeGpu(
  gpuQuantizerFor: (dev: LabDevice, format: QuantFormat) => import("../src/gpu/quantizer.ts").GpuQuantizer | undefined,
  dev: LabDevice,
  format: QuantFormat,
  x: Float32Array,
  shape: { rows: number; cols: number },
  chunks: [number, number][],
  opts: { imatrix?: Float32Array },
): Promise<{ mbps: number; rows: number } | undefined> {
  const q = gpuQuantizerFor(dev, format);
  if (!q) return undefined;
  const { cols } = shape;
  const encodeRows = async ([a, b]: [number, number]) => q.encode(x.subarray(a * cols, b * cols), { rows: b - a, cols }, opts);
  try {
    // A first small call compiles the pipelines, so the timed ones measure the kernels.
    await encodeRows([0, 8]);
    // A slow kernel (SwiftShader runs the K-quant searches at a few MB/s) is timed on a leading slice
    // of rows sized to take about SAMPLE_MS: throughput does not depend on how many rows follow, and
    // the bench stays short. A second 8-row call estimates the speed.
    const start = performance.now();
    await encodeRows([0, 8]);
    const msPerRow = (performance.now() - start) / 8;
    if (msPerRow * shape.rows > SAMPLE_OVER_MS && chunks.length > 1) {
      const sampleRows = Math.max(8, Math.min(chunks[0]![1], Math.floor(SAMPLE_MS / msPerRow)));
      const t0 = performance.now();
      await encodeRows([0, sampleRows]);
      return { mbps: mbps(sampleRows * cols * 4, performance.now() - t0), rows: sampleRows };
    }
    const ms = await timeMedian(async () => {
      for (const chunk of chunks) await encodeRows(chunk);
    });
    return { mbps: mbps(x.byteLength, ms), rows: shape.rows };
  } finally {
    q.destroy();
  }
}

async function timeCpu(format: QuantFormat, x: Float32Array, shape: { rows: number; cols: number }): Promise<number> {
  const out = new Uint8Array(format.encodedBytes(shape));
  const warm = { rows: Math.min(shape.rows, 64), cols: shape.cols };
  format.encode(x.subarray(0, warm.rows * warm.cols), warm);
  return mbps(x.byteLength, await timeMedian(() => format.encode(x, shape, { out })));
}

// --- the table -----------------------------------------------------------------------------------

const fixed = (v: number | undefined, digits = 0) => (v === undefined ? "-" : v.toFixed(digits));

function gpuVerdict(r: FormatBenchRow): string {
  if (r.gpuNote) return "FAIL";
  if (r.gpuMBps === undefined) return "no kernel yet";
  if (r.gpuTarget === "copy/2") return r.gpuMBps >= r.copyMBps / 2 ? "PASS" : "FAIL";
  if (r.cMBps === undefined) return "-";
  return r.gpuMBps >= r.cMBps ? "PASS" : "FAIL";
}

function cpuVerdict(r: FormatBenchRow): string {
  if (r.cpuAdjustedRatio === undefined) return "-";
  return r.cpuAdjustedRatio <= 3 ? "PASS" : "FAIL";
}

export function formatBenchTable(bench: FormatBench, rows: number, cols: number): string {
  const header = ["format", "path", "input", "GPU MB/s", "copy MB/s", "GPU/copy", "CPU MB/s", "C MB/s", "GPU/C", "C/CPU idle", "GPU target", "GPU", "CPU <= 3x C"];
  const lines = bench.rows.map((r) => [
    r.format,
    r.path,
    r.chunked ? (r.gpuRows < rows ? `${r.gpuRows} rows` : "chunks") : "whole",
    r.gpuNote ? "timed out" : r.gpuMBps === undefined ? "no kernel yet" : fixed(r.gpuMBps),
    fixed(r.copyMBps),
    r.gpuMBps === undefined ? "-" : fixed(r.gpuMBps / r.copyMBps, 2),
    fixed(r.cpuMBps),
    fixed(r.cMBps),
    r.gpuMBps === undefined || r.cMBps === undefined ? "-" : fixed(r.gpuMBps / r.cMBps, 2),
    fixed(r.cpuAdjustedRatio, 2),
    r.gpuTarget === "C" ? ">= C" : ">= copy/2",
    gpuVerdict(r),
    cpuVerdict(r),
  ]);
  const all = [header, ...lines];
  const widths = header.map((_, c) => Math.max(...all.map((l) => l[c]!.length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd();
  return [
    `Formats on a ${rows}x${cols} float32 tensor, N(0, 0.02^2); GPU: ${bench.adapter}, end to end (upload, kernels, read-back);`,
    `input: in chunks of ${(DEFAULT_CHUNK_BYTES / 2 ** 20).toFixed(0)} MiB of rows as the pipeline streams it, or whole for the formats that need the whole tensor;`,
    `"N rows": a slow kernel timed on its first N rows only (about ${SAMPLE_MS / 1000} s of work).`,
    "",
    line(header),
    "-".repeat(line(header).length),
    ...lines.map(line),
    "",
    "C/CPU idle: llama.cpp's single-thread C over the TypeScript reference, scaled to an idle core (bench/cpu-formats.ts).",
    ...[...new Set(bench.rows.flatMap((r) => (r.gpuNote ? [`timed out: ${r.gpuNote}`] : [])))],
  ].join("\n");
}

/** Whether any target that applies failed (formats without a kernel do not count). */
export function formatBenchFailed(bench: FormatBench): boolean {
  return bench.rows.some((r) => gpuVerdict(r) === "FAIL" || cpuVerdict(r) === "FAIL");
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const formatsArg = argValue("--formats");
  const rows = Number(argValue("--rows") ?? 4096);
  const { FORMATS } = await import("../src/quant/registry.ts");
  const formats = formatsArg === "all" ? FORMATS.map((f) => f.id) : formatsArg?.split(",");
  const bench = await formatBench({ rows, ...(formats ? { formats } : {}), log: (l) => process.stderr.write(`${l}\n`) });
  console.log(formatBenchTable(bench, rows, 4096));
  // A kernel that never finished leaves Dawn work pending, which would keep the process alive.
  process.exit(formatBenchFailed(bench) ? 1 : 0);
}
