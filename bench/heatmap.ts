/**
 * The heatmap benchmark: pooling a 4096x4096 float32 tensor (x and its q4_0-dequantized y) onto a 640x400
 * grid, as the lab does for a whole-tensor view: the WGSL kernel (shaders/heatmap.wgsl, through Dawn on
 * SwiftShader), the same chunks through the plain copy kernel on the same adapter (the baseline: pooling
 * reads twice the bytes a copy reads, once), and the CPU reference (src/quant/heatmap.ts poolPiece), in
 * one run. End to end per chunk: upload, dispatch, read-back, merge. MB/s = 10^6 bytes of x per second.
 *
 * Target: the kernel at least half the copy kernel's speed (it streams two inputs and writes little), and
 * faster than the CPU reference.
 *
 * Standalone: `npx tsx bench/heatmap.ts [--rows N]`; `npm run bench` runs it after the format benchmark.
 */
import { register } from "node:module";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { gaussian } from "../test/random.ts";
import type { LabDevice } from "../src/gpu/device.ts";
import { HeatmapAccumulator, heatmapGrid, poolPiece } from "../src/quant/heatmap.ts";
import { getFormat } from "../src/quant/registry.ts";
import { DEFAULT_CHUNK_BYTES } from "../src/formats/model.ts";

export interface HeatmapBenchRow {
  path: string;
  mbps: number;
  ratio: number;
  baseline: string;
  target: string;
  verdict: "PASS" | "FAIL";
}

async function timeMs(run: () => Promise<void>, repeats = 3): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export async function heatmapBench(options: { rows?: number; cols?: number; log?: (line: string) => void } = {}): Promise<HeatmapBenchRow[]> {
  const log = options.log ?? (() => {});
  const rows = options.rows ?? 4096;
  const cols = options.cols ?? 4096;
  const x = gaussian(rows * cols, 0.02, 99);
  const q40 = getFormat("q4_0");
  const y = q40.decode(q40.encode(x, { rows, cols }), { rows, cols });
  const grid = heatmapGrid({ rows, cols }, { row0: 0, col0: 0, rows, cols }, 640, 400);
  const chunkRows = Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (cols * 4)));
  const mb = (rows * cols * 4) / 1e6;

  register(new URL("../bin/raw-imports.js", import.meta.url));
  const [backend, copy, heatmap] = await Promise.all([import("../src/cli/backend.ts"), import("../src/gpu/copy.ts"), import("../src/gpu/heatmap.ts")]);
  const dev: LabDevice = await backend.openGpuDevice();
  try {
    const pooler = await heatmap.GpuHeatmapPooler.create(dev, grid, cols);
    const chunks = (fn: (a: number, n: number) => Promise<void>) => async () => {
      for (let a = 0; a < rows; a += chunkRows) await fn(a, Math.min(chunkRows, rows - a));
    };
    await copy.gpuCopy(dev, x.subarray(0, 8 * cols));
    await pooler.poolArrays(x.subarray(0, cols), y.subarray(0, cols), 0, 1);
    const copyMs = await timeMs(chunks(async (a, n) => void (await copy.gpuCopy(dev, x.subarray(a * cols, (a + n) * cols)))));
    log(`copy kernel: ${(mb / (copyMs / 1000)).toFixed(0)} MB/s`);
    const gpuMs = await timeMs(
      chunks(async (a, n) => {
        const acc = new HeatmapAccumulator(grid);
        const p = await pooler.poolArrays(x.subarray(a * cols, (a + n) * cols), y.subarray(a * cols, (a + n) * cols), a, n);
        if (p) acc.add(p);
      }),
    );
    log(`pooling kernel: ${(mb / (gpuMs / 1000)).toFixed(0)} MB/s`);
    const cpuMs = await timeMs(
      chunks(async (a, n) => {
        const p = poolPiece(x.subarray(a * cols, (a + n) * cols), y.subarray(a * cols, (a + n) * cols), cols, a, n, grid);
        if (p) new HeatmapAccumulator(grid).add(p);
      }),
      1,
    );
    log(`pooling CPU reference: ${(mb / (cpuMs / 1000)).toFixed(0)} MB/s`);
    const copyRatio = copyMs / gpuMs;
    const cpuRatio = cpuMs / gpuMs;
    return [
      { path: "pool kernel vs copy kernel", mbps: mb / (gpuMs / 1000), ratio: copyRatio, baseline: `${(mb / (copyMs / 1000)).toFixed(0)} MB/s`, target: ">= 0.5", verdict: copyRatio >= 0.5 ? "PASS" : "FAIL" },
      { path: "pool kernel vs CPU reference", mbps: mb / (gpuMs / 1000), ratio: cpuRatio, baseline: `${(mb / (cpuMs / 1000)).toFixed(0)} MB/s`, target: ">= 1", verdict: cpuRatio >= 1 ? "PASS" : "FAIL" },
    ];
  } finally {
    dev.device.destroy();
  }
}

export function heatmapBenchTable(rows: HeatmapBenchRow[], shape: string): string {
  const lines = [`(e) heatmap pooling, ${shape} float32 onto 640x400 cells (Dawn on this adapter; ratio = speed / baseline speed)`];
  lines.push("path                            MB/s   baseline     ratio  target  verdict");
  for (const r of rows) {
    lines.push(`${r.path.padEnd(30)} ${r.mbps.toFixed(0).padStart(6)}   ${r.baseline.padEnd(11)} ${r.ratio.toFixed(2).padStart(6)}  ${r.target.padEnd(6)}  ${r.verdict}`);
  }
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const i = process.argv.indexOf("--rows");
  const rows = i > 0 ? Number(process.argv[i + 1]) : 4096;
  const result = await heatmapBench({ rows, log: (l) => process.stderr.write(`  ${l}\n`) });
  console.log(heatmapBenchTable(result, `${rows}x4096`));
  process.exit(result.some((r) => r.verdict === "FAIL") ? 1 : 0);
}
