/**
 * `npm run bench`: the reader's costs as ratios against a baseline measured in the same run, so the
 * numbers mean the same on a fast and a slow machine.
 *
 *  (a) header parse: readSafetensors of a 20,000-tensor header (parse + full validation) from an
 *      in-memory BlobSource, against a bare JSON.parse of the same header bytes.
 *  (b) streaming: readTensorRows over every tensor of a ~2 GiB shard on disk (NodeFileSource), against
 *      a raw sequential read of the same byte ranges with the same chunk size. Target >= 0.8, for the
 *      reuseBuffers mode against a raw read into one buffer; the default mode (fresh chunks the caller
 *      may keep) is shown against a raw read into fresh buffers.
 *  (c) memory: peak memory growth while streaming, over the largest tensor's size. Target < 2.
 *  (d) formats: bench/formats.ts (WGSL kernels against a copy kernel and llama.cpp's C reference, the
 *      TypeScript references against C), printed as its own table.
 *  (e) heatmap pooling: bench/heatmap.ts (the pooling kernel against the copy kernel and its CPU reference).
 *  (e2) metrics on the GPU: bench/round-trip.ts (x uploaded once and the quantizer's decoded buffer measured in
 *      place, against encode + decode through the CPU and x, y uploaded again).
 *  (f) GPTQ / AWQ: bench/gptq.ts (Hessian, factorization and GPTQ on WebGPU and on the TypeScript
 *      reference, AWQ's searches on both, next to the reference implementations' times at 4096 x 4096 with
 *      2048 tokens; by default 1024 x 1024: QUANTLAB_BENCH_GPTQ_N=4096 for the issue's size, where AWQ's
 *      times are projected from 1024 x 1024)
 *  (f2) matrix multiply: bench/matmul-ort.ts (our WGSL matmul against onnxruntime-web's WebGPU MatMul in
 *      Chromium on the same adapter, on GPTQ's shapes; ours/ORT ratios).
 *  (g) the model run: bench/model.ts (stories260K's evaluation tokens/s per precision in onnxruntime-web, on
 *      the wasm and the WebGPU (Dawn) providers, with each session's memory).
 *
 * The shard is written to os.tmpdir() and deleted at the end. Caches are not dropped (that needs root
 * and would measure the disk, not the reader): the file is read once to warm the page cache, then both
 * sides of (b) read from memory, which is the harsher test of reader overhead.
 */
import { open, rm, mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import v8 from "node:v8";
import vm from "node:vm";
import { readSafetensors, safetensorsHeader, type TensorLayout } from "../src/formats/safetensors.ts";
import { BlobSource } from "../src/formats/source.ts";
import { DEFAULT_CHUNK_BYTES, openModel, readTensorRows } from "../src/formats/model.ts";
import { NodeFileSource } from "../src/node/file-source.ts";
import { formatBench, formatBenchFailed, formatBenchTable } from "./formats.ts";
import { heatmapBench, heatmapBenchTable } from "./heatmap.ts";
import { roundTripBench, roundTripBenchTable } from "./round-trip.ts";
import { gptqBench, gptqBenchTable } from "./gptq.ts";
import { matmulOrtBench, matmulOrtTable } from "./matmul-ort.ts";
import { modelBench, modelBenchTable } from "./model.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// --- a small report table ----------------------------------------------------------------------

interface Row {
  what: string;
  measured: string;
  baseline: string;
  ratio: string;
  target: string;
  verdict: string;
}
const rows: Row[] = [];

function printTable(): void {
  const header: Row = { what: "benchmark", measured: "measured", baseline: "baseline", ratio: "ratio", target: "target", verdict: "" };
  const all = [header, ...rows];
  const keys = Object.keys(header) as (keyof Row)[];
  const width = (k: keyof Row) => Math.max(...all.map((r) => r[k].length));
  const line = (r: Row) => keys.map((k) => (k === "what" ? r[k].padEnd(width(k)) : r[k].padStart(width(k)))).join("  ").trimEnd();
  console.log("\n" + line(header));
  console.log("-".repeat(line(header).length));
  for (const r of rows) console.log(line(r));
}

const ms = (t: number) => `${t.toFixed(2)} ms`;
const rate = (bytesPerMs: number) => `${((bytesPerMs * 1000) / GiB).toFixed(2)} GiB/s`;
const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** A collectable heap for clean memory baselines (tsx does not pass --expose-gc). */
function collectGarbage(): void {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

// --- (a) header parse --------------------------------------------------------------------------

async function headerParse(): Promise<void> {
  const TENSORS = 20_000;
  const layout: TensorLayout[] = [];
  for (let i = 0; i < TENSORS; i++) {
    const layer = Math.floor(i / 10);
    const part = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "input_layernorm", "post_attention_layernorm", "rotary"][i % 10]!;
    const shape = i % 10 >= 7 ? [4] : [4, 2 + (i % 3)];
    layout.push({ name: `model.layers.${layer}.${part}.weight`, dtype: i % 2 ? "BF16" : "F32", shape, byteLength: shape.reduce((a, b) => a * b, 1) * (i % 2 ? 2 : 4) });
  }
  const header = safetensorsHeader(layout, { format: "pt" });
  const dataBytes = layout.reduce((s, t) => s + t.byteLength, 0);
  const blob = new Blob([header, new Uint8Array(dataBytes)]);
  const source = new BlobSource(blob, "bench-20000.safetensors");
  const jsonBytes = header.subarray(8);

  const parseTimes: number[] = [];
  const jsonTimes: number[] = [];
  for (let round = 0; round < 15; round++) {
    let t = performance.now();
    const file = await readSafetensors(source);
    parseTimes.push(performance.now() - t);
    if (file.tensors.length !== TENSORS) throw new Error(`read ${file.tensors.length} tensors, wrote ${TENSORS}`);
    t = performance.now();
    const parsed = JSON.parse(new TextDecoder().decode(jsonBytes)) as object;
    jsonTimes.push(performance.now() - t);
    if (Object.keys(parsed).length !== TENSORS + 1) throw new Error("JSON.parse baseline saw a different header");
  }
  const parse = median(parseTimes);
  const json = median(jsonTimes);
  rows.push({
    what: `(a) header parse, ${TENSORS.toLocaleString("en-US")} tensors (${mib(header.length)} header): readSafetensors vs JSON.parse`,
    measured: ms(parse),
    baseline: ms(json),
    ratio: `${(parse / json).toFixed(2)}x time`,
    target: "-",
    verdict: "",
  });
}

// --- (b) streaming read and (c) peak memory ------------------------------------------------------

/** Tensors of the bench shard: ~2 GiB of F32, the largest 512 MiB. */
const SHARD: { name: string; shape: [number, number] }[] = [
  { name: "model.embed_tokens.weight", shape: [32_000, 4096] }, // 500 MiB
  { name: "model.layers.0.mlp.up_proj.weight", shape: [11_008, 4096] }, // 172 MiB
  { name: "model.layers.0.mlp.gate_proj.weight", shape: [11_008, 4096] },
  { name: "model.layers.0.mlp.down_proj.weight", shape: [4096, 11_008] },
  { name: "model.layers.0.self_attn.q_proj.weight", shape: [4096, 4096] }, // 64 MiB
  { name: "model.layers.0.self_attn.k_proj.weight", shape: [4096, 4096] },
  { name: "model.layers.0.self_attn.v_proj.weight", shape: [4096, 4096] },
  { name: "model.layers.0.self_attn.o_proj.weight", shape: [4096, 4096] },
  { name: "model.layers.1.mlp.up_proj.weight", shape: [11_008, 4096] },
  { name: "model.layers.1.mlp.gate_proj.weight", shape: [11_008, 4096] },
  { name: "model.layers.1.mlp.down_proj.weight", shape: [4096, 11_008] },
  { name: "lm_head.weight", shape: [32_000, 4096] },
];

/** Writes the shard with non-zero pseudo-random finite floats; returns its path. */
async function writeShard(dir: string): Promise<string> {
  const file = path.join(dir, "bench-shard.safetensors");
  const layout: TensorLayout[] = SHARD.map((t) => ({ name: t.name, dtype: "F32", shape: t.shape, byteLength: t.shape[0] * t.shape[1] * 4 }));
  const handle = await open(file, "w");
  try {
    await handle.write(safetensorsHeader(layout, { format: "pt" }));
    const block = new Uint32Array(16 * MiB / 4);
    let state = 0x9e3779b9;
    for (const t of layout) {
      for (let written = 0; written < t.byteLength; ) {
        for (let i = 0; i < block.length; i++) {
          // xorshift32, kept to finite floats of magnitude 2^-7..2^-5 with random signs
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          block[i] = (state & 0x80ffffff) | 0x3c000000;
        }
        const n = Math.min(block.byteLength, t.byteLength - written);
        await handle.write(new Uint8Array(block.buffer, 0, n));
        written += n;
      }
    }
  } finally {
    await handle.close();
  }
  return file;
}

/**
 * The raw baseline: sequential reads of the same byte ranges with the same chunk size, either into one
 * reused buffer (what the reader's reuseBuffers mode competes with) or into a fresh buffer per chunk
 * (what a plain loop that keeps its chunks does).
 */
async function rawRead(file: string, ranges: [number, number][], chunkBytes: number, fresh: boolean): Promise<number> {
  const handle = await open(file, "r");
  let checksum = 0;
  let buffer = new Uint8Array(chunkBytes);
  try {
    for (const [start, end] of ranges) {
      for (let pos = start; pos < end; pos += chunkBytes) {
        const length = Math.min(chunkBytes, end - pos);
        if (fresh) buffer = new Uint8Array(length);
        const { bytesRead } = await handle.read(buffer, 0, length, pos);
        if (bytesRead !== length) throw new Error(`short read at ${pos}`);
        checksum += buffer[0]!;
      }
    }
  } finally {
    await handle.close();
  }
  return checksum;
}

interface MemoryPeak {
  /** Growth of live JS memory (heap + ArrayBuffers, garbage not yet collected included). */
  js: number;
  rss: number;
}

/**
 * Peak memory growth while `run` runs, sampled every 2 ms (the streaming loops await file reads, so
 * the timer gets its turns between chunks), over a baseline taken after a full GC. The JS figure
 * (V8 heap + ArrayBuffers) is what the reader holds, garbage not yet collected included; RSS is
 * shown too, though the allocator may serve the run from memory it kept from earlier work.
 */
async function peakMemory(run: () => Promise<unknown>): Promise<MemoryPeak> {
  const jsNow = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  collectGarbage();
  const base = { js: jsNow(), rss: process.memoryUsage().rss };
  const peak = { ...base };
  const sample = () => {
    peak.js = Math.max(peak.js, jsNow());
    peak.rss = Math.max(peak.rss, process.memoryUsage().rss);
  };
  const sampler = setInterval(sample, 2);
  try {
    await run();
  } finally {
    clearInterval(sampler);
    sample();
  }
  return { js: peak.js - base.js, rss: peak.rss - base.rss };
}

async function streaming(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-bench-"));
  try {
    process.stdout.write("writing a ~2 GiB shard to " + dir + " ... ");
    let t = performance.now();
    const file = await writeShard(dir);
    console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`);

    const source = await NodeFileSource.open(file);
    try {
      const model = await openModel([source]);
      const ranges = model.tensors.map((x): [number, number] => [x.offset, x.offset + x.bytes]);
      const totalBytes = model.totalBytes;
      const largest = Math.max(...model.tensors.map((x) => x.bytes));
      const chunkBytes = DEFAULT_CHUNK_BYTES;

      process.stdout.write("warming the page cache ... ");
      t = performance.now();
      await rawRead(file, ranges, 64 * MiB, false);
      console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`);

      const stream = async (reuseBuffers: boolean) => {
        let checksum = 0;
        for (const tensor of model.tensors) {
          for await (const chunk of readTensorRows(tensor, { chunkBytes, reuseBuffers })) checksum += chunk.values[0]!;
        }
        return checksum;
      };

      // (c) first, on the default mode (fresh chunks, the one that allocates).
      const memory = await peakMemory(() => stream(false));

      // (b) The best of several alternating passes each, so a background hiccup does not decide a ratio
      // (the fast pair takes well under a second a pass; the allocating pair is slower, so fewer rounds).
      const passes = {
        rawReused: () => rawRead(file, ranges, chunkBytes, false),
        streamReused: () => stream(true),
        rawFresh: () => rawRead(file, ranges, chunkBytes, true),
        streamFresh: () => stream(false),
      };
      const best: Record<keyof typeof passes, number> = { rawReused: Infinity, streamReused: Infinity, rawFresh: Infinity, streamFresh: Infinity };
      for (let round = 0; round < 7; round++) {
        for (const [name, pass] of Object.entries(passes) as [keyof typeof passes, () => Promise<unknown>][]) {
          if (round >= 3 && (name === "rawFresh" || name === "streamFresh")) continue;
          t = performance.now();
          await pass();
          best[name] = Math.min(best[name], performance.now() - t);
        }
      }
      const size = `${(totalBytes / GiB).toFixed(2)} GiB in ${mib(chunkBytes)} chunks`;
      const ratio = best.rawReused / best.streamReused;
      rows.push({
        what: `(b) streaming read, ${size}: readTensorRows (reuseBuffers) vs raw fs read into one buffer`,
        measured: rate(totalBytes / best.streamReused),
        baseline: rate(totalBytes / best.rawReused),
        ratio: ratio.toFixed(2),
        target: ">= 0.80",
        verdict: ratio >= 0.8 ? "PASS" : "FAIL",
      });
      rows.push({
        what: `    the same, chunks the caller keeps: readTensorRows (default) vs raw read into fresh buffers`,
        measured: rate(totalBytes / best.streamFresh),
        baseline: rate(totalBytes / best.rawFresh),
        ratio: (best.rawFresh / best.streamFresh).toFixed(2),
        target: "-",
        verdict: "",
      });
      const memRatio = Math.max(memory.js, memory.rss) / largest;
      rows.push({
        what: `(c) peak memory growth while streaming (default mode) over the largest tensor`,
        measured: `${mib(memory.js)} JS, ${mib(memory.rss)} RSS`,
        baseline: mib(largest),
        ratio: memRatio.toFixed(2),
        target: "< 2",
        verdict: memRatio < 2 ? "PASS" : "FAIL",
      });
    } finally {
      await source.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const started = performance.now();
await headerParse();
await streaming();
printTable();

// (d) the quantization formats: WGSL kernels (through Dawn), the copy kernel, the TS references, llama.cpp's C.
let formatsFailed = false;
try {
  const bench = await formatBench({ log: (line) => process.stderr.write(`  ${line}\n`) });
  console.log("\n" + formatBenchTable(bench, 4096, 4096));
  formatsFailed = formatBenchFailed(bench);
} catch (e) {
  console.log(`\n(d) format benchmark not run: ${(e as Error).message}`);
  formatsFailed = true;
}

// (e) heatmap pooling: the WGSL kernel against the copy kernel and the CPU reference.
let heatmapFailed = false;
try {
  const heat = await heatmapBench({ log: (line) => process.stderr.write(`  ${line}\n`) });
  console.log("\n" + heatmapBenchTable(heat, "4096x4096"));
  heatmapFailed = heat.some((r) => r.verdict === "FAIL");
} catch (e) {
  console.log(`\n(e) heatmap benchmark not run: ${(e as Error).message}`);
  heatmapFailed = true;
}

// (e2) metrics on the GPU: x uploaded once and the decoded buffer measured in place, against the CPU round trip.
let roundTripFailed = false;
try {
  const rows = Number(process.env.QUANTLAB_BENCH_ROUNDTRIP_ROWS ?? 4096);
  const trip = await roundTripBench({ rows, repeats: 1, log: (line) => process.stderr.write(`  ${line}\n`) });
  console.log("\n" + roundTripBenchTable(trip, `${rows}x4096`));
  roundTripFailed = trip.rows.some((r) => !r.same);
} catch (e) {
  console.log(`\n(e2) round-trip benchmark not run: ${(e as Error).message}`);
  roundTripFailed = true;
}

// (f) GPTQ / AWQ: reported, not judged (the GPU here is SwiftShader, a CPU).
try {
  // 4096 (the size) takes about half an hour here: GPTQ on both paths, AWQ projected from 1024.
  const n = Number(process.env.QUANTLAB_BENCH_GPTQ_N ?? 1024);
  const tokens = Math.min(2048, 2 * n);
  const gptq = await gptqBench({ n, tokens, cpuMax: n, awqMax: 1024, log: (line) => process.stderr.write(`  ${line}\n`) });
  console.log("\n" + gptqBenchTable(gptq, n, tokens));
} catch (e) {
  console.log(`\n(f) GPTQ benchmark not run: ${(e as Error).message}`);
}

// (f2) our matmul kernel against onnxruntime-web's WebGPU MatMul, in Chromium on the same adapter.
try {
  console.log("\n" + matmulOrtTable(await matmulOrtBench()));
} catch (e) {
  console.log(`\n(f2) matmul comparison not run: ${(e as Error).message}`);
}

// (g) the model run in onnxruntime-web.
try {
  console.log("\n" + modelBenchTable(await modelBench({ log: (line) => process.stderr.write(`  ${line}\n`) })));
} catch (e) {
  console.log(`\n(g) model benchmark not run: ${(e as Error).message}`);
}

console.log(`\n(${((performance.now() - started) / 1000).toFixed(1)} s in all)`);
// A GPU kernel that never finished leaves Dawn work pending, which would keep the process alive.
process.exit(rows.some((r) => r.verdict === "FAIL") || formatsFailed || heatmapFailed || roundTripFailed ? 1 : 0);
