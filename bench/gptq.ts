/**
 * GPTQ and AWQ benchmark (issue 4): a synthetic n x n layer (W ~ N(0, 0.02^2); activations N(0, 1) with a few
 * channels at std 20, as the golden synthetic cases), 4-bit g128 asym, `tokens` calibration tokens. Times, in
 * seconds, of each step on WebGPU (Dawn in Node on SwiftShader here: the GPU figures are a CPU's) and on the
 * TypeScript CPU reference, side by side with the reference implementation's times on this machine class
 * (../shared/golden/gptq_awq manifest `timing_4096`, the OpenBLAS column; only comparable at n = 4096):
 *   Hessian (X^T X over the tokens), factorization (U = chol(H^-1) upper), GPTQ quantization (the
 *   factorization and the sweep with its block updates), and AWQ's scale and clip searches.
 * Each path's err_calib is printed too, so a fast wrong answer shows.
 *
 * Standalone: `npx tsx bench/gptq.ts [--n 4096] [--tokens 2048] [--awq-max 1024] [--cpu-max 2048]`. The CPU
 * reference is O(n^3) in float64 JavaScript: above --cpu-max it is skipped. AWQ's searches measure the output
 * error of 20 scalings (O(n^3) each) on either path: above --awq-max they run on an --awq-max layer (same
 * recipe) and their times are projected to n by (n / awq-max)^3, marked as such.
 */
import { readFileSync } from "node:fs";
import { register } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { gaussian } from "../test/random.ts";
import { SHARED_DIR } from "../test/shared-data.ts";
import { calibrationStats, HessianAccumulator } from "../src/quant/hessian.ts";
import { dampedHessian, gptqQuantize, planGptq } from "../src/quant/gptq.ts";
import { upperCholeskyOfInverse } from "../src/quant/cholesky.ts";
import { awqSearch } from "../src/quant/awq.ts";
import type { CalibrationStats } from "../src/quant/hessian.ts";
import { relOutputErrorGram } from "../src/quant/output-error.ts";

export interface GptqBenchRow {
  step: string;
  gpuS: number | undefined;
  cpuS: number | undefined;
  referenceS: number | undefined;
  note: string;
}

interface ReferenceTiming {
  openblas: Record<string, number>;
  netlib_default: Record<string, number>;
}

/** The reference's times at n = 4096: on OpenBLAS (what to compare with) and on netlib BLAS (the AWQ clip search was timed only there). */
function referenceTiming(): ReferenceTiming {
  return (JSON.parse(readFileSync(path.join(SHARED_DIR, "golden/gptq_awq/manifest.json"), "utf8")) as { timing_4096: ReferenceTiming }).timing_4096;
}

async function seconds<T>(run: () => Promise<T> | T): Promise<[T, number]> {
  const t = performance.now();
  const value = await run();
  return [value, (performance.now() - t) / 1000];
}

/** The benchmark's synthetic n x n layer and its activations (a few channels at 20 times the others' std). */
function syntheticLayer(n: number, tokens: number): { w: Float32Array; x: Float32Array } {
  const w = gaussian(n * n, 0.02, 4242);
  const x = gaussian(tokens * n, 1, 4243);
  for (let c = 7; c < n; c += 97) for (let t = 0; t < tokens; t++) x[t * n + c] = x[t * n + c]! * 20;
  return { w, x };
}

export async function gptqBench(opts: { n?: number; tokens?: number; awqMax?: number; cpuMax?: number; log?: (line: string) => void } = {}): Promise<GptqBenchRow[]> {
  const n = opts.n ?? 4096;
  const tokens = opts.tokens ?? 2048;
  const log = opts.log ?? (() => {});
  const shape = { rows: n, cols: n };
  const { w, x } = syntheticLayer(n, tokens);
  const options = { bits: 4, group: 128 };
  const timing = n === 4096 && tokens === 2048 ? referenceTiming() : undefined;
  const ref = timing?.openblas;
  const rows: GptqBenchRow[] = [];
  const cpu = n <= (opts.cpuMax ?? 2048);

  register(new URL("../bin/raw-imports.js", import.meta.url));
  const { openGpuDevice } = await import("../src/cli/backend.ts");
  const { GpuHessian, gpuUpperCholeskyOfInverse, gpuGptqQuantize } = await import("../src/gpu/gptq.ts");
  const { gpuAwqSearch } = await import("../src/gpu/awq.ts");
  const dev = await openGpuDevice();
  try {
    // Warm-up on a small layer: pipeline compilation is not part of the figures.
    {
      const m = 256;
      const ws = gaussian(m * m, 0.02, 1);
      const warm = await GpuHessian.create(dev, m);
      warm.add(gaussian(256 * m, 1, 2));
      const stats = await warm.result();
      warm.destroy();
      await gpuGptqQuantize(dev, ws, { rows: m, cols: m }, stats, options);
    }
    log(`Hessian of ${tokens} tokens x ${n} on the GPU`);
    const [gpuStats, gpuHessianS] = await seconds(async () => {
      const acc = await GpuHessian.create(dev, n);
      for (let t = 0; t < tokens; t += 256) acc.add(x.subarray(t * n, Math.min(tokens, t + 256) * n));
      const stats = await acc.result();
      acc.destroy();
      return stats;
    });
    let cpuHessianS: number | undefined;
    if (cpu) {
      log("Hessian on the CPU");
      [, cpuHessianS] = await seconds(() => {
        const acc = new HessianAccumulator(n);
        for (let t = 0; t < tokens; t += 256) acc.add(x.subarray(t * n, Math.min(tokens, t + 256) * n));
        return acc.result();
      });
    }
    rows.push({ step: "Hessian X^T X", gpuS: gpuHessianS, cpuS: cpuHessianS, referenceS: ref?.gptq_add_batch_8x256_s, note: "8 chunks of 256 tokens" });

    const plan = planGptq(w, shape, gpuStats, options);
    const { damped } = dampedHessian(plan, plan.requestedDamp);
    log("factorization on the GPU");
    const [u, gpuFactorS] = await seconds(() => gpuUpperCholeskyOfInverse(dev, Float32Array.from(damped), n));
    u?.destroy();
    let cpuFactorS: number | undefined;
    if (cpu) {
      log("factorization on the CPU");
      [, cpuFactorS] = await seconds(() => upperCholeskyOfInverse(damped, n));
    }
    rows.push({ step: "factorization chol(H^-1)", gpuS: gpuFactorS, cpuS: cpuFactorS, referenceS: ref?.gptq_factorization_s, note: "" });

    log("GPTQ on the GPU");
    const [gpuResult, gpuGptqS] = await seconds(() => gpuGptqQuantize(dev, w, shape, gpuStats, options));
    const errGpu = relOutputErrorGram(gpuStats.gram, w, gpuResult.q, shape);
    let cpuGptqS: number | undefined;
    let errCpu: number | undefined;
    if (cpu) {
      log("GPTQ on the CPU");
      const [cpuResult, s] = await seconds(() => gptqQuantize(w, shape, gpuStats, options));
      cpuGptqS = s;
      errCpu = relOutputErrorGram(gpuStats.gram, w, cpuResult.q, shape);
    }
    rows.push({
      step: "GPTQ w4 g128 (factorization + sweep)",
      gpuS: gpuGptqS,
      cpuS: cpuGptqS,
      referenceS: ref?.gptq_fasterquant_w4_g128_s,
      note: `err_calib GPU ${errGpu.toExponential(4)}${errCpu !== undefined ? `, CPU ${errCpu.toExponential(4)}` : ""}`,
    });

    // AWQ: the scale search alone, then scale + clip (the clip search is the difference), on both paths
    // (--awq-max 0: not at all).
    const m = Math.min(n, opts.awqMax ?? 1024);
    if (m > 0) await awqRows(m);
  } finally {
    dev.device.destroy();
  }
  return rows;

  async function awqRows(m: number): Promise<void> {
    const layer = m === n ? { w, x } : syntheticLayer(m, tokens);
    const awqShape = { rows: m, cols: m };
    const stats: CalibrationStats = calibrationStats(layer.x, m);
    const warm = syntheticLayer(128, 256);
    const warmStats = calibrationStats(warm.x, 128);
    const awqTimes = async (search: (o: typeof options & { clip?: boolean }, l: { w: Float32Array; stats: CalibrationStats; shape: typeof awqShape }) => Promise<unknown>) => {
      // Warm-up on a small layer (pipeline compilation, the JIT), so that the difference below is the clip search's.
      await search(options, { w: warm.w, stats: warmStats, shape: { rows: 128, cols: 128 } });
      const l = { w: layer.w, stats, shape: awqShape };
      const [, scaleS] = await seconds(() => search({ ...options, clip: false }, l));
      const [, bothS] = await seconds(() => search(options, l));
      return { scaleS, clipS: bothS - scaleS };
    };
    log(`AWQ searches on the GPU (${m} x ${m})`);
    const gpuAwq = await awqTimes((o, l) => gpuAwqSearch(dev, l.w, l.shape, l.stats, o));
    let cpuAwq: { scaleS: number; clipS: number } | undefined;
    if (m <= (opts.cpuMax ?? 2048)) {
      log(`AWQ searches on the CPU (${m} x ${m})`);
      cpuAwq = await awqTimes(async (o, l) => awqSearch(l.w, l.shape, l.stats, o));
    }
    const scale = (n / m) ** 3;
    const projected = m === n ? "" : `projected from ${m} x ${m}: measured x (${n}/${m})^3`;
    rows.push({ step: "AWQ scale search", gpuS: gpuAwq.scaleS * scale, cpuS: cpuAwq && cpuAwq.scaleS * scale, referenceS: ref?.awq_scale_search_s, note: projected });
    rows.push({
      step: "AWQ clip search",
      gpuS: gpuAwq.clipS * scale,
      cpuS: cpuAwq && cpuAwq.clipS * scale,
      referenceS: undefined,
      note: [projected, timing ? `reference on netlib BLAS (not timed on OpenBLAS): ${timing.netlib_default.awq_clip_search_s!.toFixed(1)} s` : ""].filter(Boolean).join("; "),
    });
  }
}

export function gptqBenchTable(rows: GptqBenchRow[], n: number, tokens: number): string {
  const f = (s: number | undefined) => (s === undefined ? "-" : `${s.toFixed(2)} s`);
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? "-" : `${(b / a).toFixed(2)}x`);
  const header = ["step", "WebGPU", "CPU (TS)", "reference", "ref/WebGPU", "ref/CPU", "note"];
  const lines = rows.map((r) => [r.step, f(r.gpuS), f(r.cpuS), f(r.referenceS), ratio(r.gpuS, r.referenceS), ratio(r.cpuS, r.referenceS), r.note]);
  const all = [header, ...lines];
  const widths = header.map((_, c) => Math.max(...all.map((l) => l[c]!.length)));
  const fmt = (l: string[]) => l.map((cell, c) => (c === 0 || c === 6 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd();
  return [
    `GPTQ / AWQ on a ${n} x ${n} layer, ${tokens} calibration tokens, 4-bit g128 asym (reference: IST-DASLab gptq / llm-awq on torch with OpenBLAS, same machine class, n = 4096 only; ref/x > 1: x is faster)`,
    fmt(header),
    ...lines.map(fmt),
    "",
  ].join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({ options: { n: { type: "string" }, tokens: { type: "string" }, "awq-max": { type: "string" }, "cpu-max": { type: "string" } } });
  const n = Number(values.n ?? 4096);
  const tokens = Number(values.tokens ?? 2048);
  const rows = await gptqBench({
    n,
    tokens,
    awqMax: Number(values["awq-max"] ?? 1024),
    cpuMax: Number(values["cpu-max"] ?? 2048),
    log: (line) => process.stderr.write(`  ${line}\n`),
  });
  console.log(gptqBenchTable(rows, n, tokens));
}
