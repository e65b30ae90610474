/**
 * (g) The model run: evaluation tokens per second of stories260K (its 509-token eval text in one causal
 * pass) at each precision on onnxruntime-web's wasm and WebGPU providers, in Node, in one run. WebGPU runs
 * on Dawn (src/node/ort-webgpu.ts; SwiftShader, a CPU, on machines without a GPU, so its figures say what
 * the provider costs here, not what a GPU does). Each provider's speed is also given as a ratio against
 * its own f32 session, measured in the same run.
 *
 * Memory, per precision:
 *  - weights: the tensors stored in that precision (PreparedWeights.weightBytes);
 *  - ONNX model: the bytes handed to the session (initializers as the graph holds them);
 *  - wasm: ORT's wasm memory once every session is open and has run, against before the first (one heap
 *    for all: it only grows, and a session made after another mostly fits in space the first one's
 *    creation freed, so a per-session growth would read 0 for most);
 *  - WebGPU session: GPU buffers the WebGPU session holds after its first run (created minus destroyed,
 *    counted at GPUDevice.createBuffer / GPUBuffer.destroy).
 * Run alone with `npx tsx bench/model.ts`, or as part of `npm run bench`.
 */
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import path from "node:path";
import { formatMiB } from "../src/common/format.ts";
import { buildDecoderGraph } from "../src/model/decoder-graph.ts";
import { encodeOnnxModel } from "../src/model/onnx-proto.ts";
import { prepareWeights } from "../src/model/precision.ts";
import { DecoderSession, float16ComputeNote, float16ModeFor, type ExecutionProvider } from "../src/model/session.ts";
import type { Float16Mode } from "../src/model/decoder-graph.ts";
import { loadModelDir } from "../src/node/model-dir.ts";
import { nodeOrtWebGpu } from "../src/node/ort-webgpu.ts";
import { STORIES_DIR } from "../test/shared-data.ts";

export const BENCH_PRECISIONS = ["f32", "f16", "int8", "int4-g32", "int4-asym-g32", "q8_0", "q4_K", "nf4"];

export interface ProviderFigures {
  tokensPerSecond: number;
  /** tokens/s over the same provider's f32. */
  ratio: number;
  /** webgpu: GPU buffers the session holds (see the module comment); wasm: its heap growth (mostly 0). */
  sessionBytes: number;
}

export interface ModelBenchRow {
  precision: string;
  weightBytes: number;
  onnxBytes: number;
  wasm: ProviderFigures;
  /** Absent when the WebGPU provider could not run (ModelBench.webgpuProblem says why). */
  webgpu?: ProviderFigures;
}

export interface ModelBench {
  tokens: number;
  rows: ModelBenchRow[];
  /** ORT's wasm memory with every session open, and before the first. */
  wasmHeap: { before: number; after: number };
  /** How each provider ran the f16 precision (float16ModeFor). */
  float16: Partial<Record<ExecutionProvider, Float16Mode>>;
  webgpuProblem?: string;
}

/** Records every WebAssembly.Memory made from now on (ORT makes its wasm heap in JS), for its size. */
function trackWasmMemories(): () => number {
  const memories: WebAssembly.Memory[] = [];
  const Original = WebAssembly.Memory;
  if (!(Original as { tracked?: boolean }).tracked) {
    const Tracked = class extends Original {
      static tracked = true;
      constructor(descriptor: WebAssembly.MemoryDescriptor) {
        super(descriptor);
        memories.push(this);
      }
    };
    WebAssembly.Memory = Tracked;
  }
  return () => memories.reduce((sum, m) => sum + m.buffer.byteLength, 0);
}

/** Bytes of GPU buffers alive (created and not destroyed), counted on Dawn's prototypes. */
function trackGpuBuffers(): () => number {
  const scope = globalThis as unknown as { GPUDevice: { prototype: GPUDevice }; GPUBuffer: { prototype: GPUBuffer } };
  const device = scope.GPUDevice.prototype;
  const buffer = scope.GPUBuffer.prototype;
  const live = new Map<GPUBuffer, number>();
  const create = device.createBuffer;
  const destroy = buffer.destroy;
  device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    const b = create.call(this, descriptor);
    live.set(b, descriptor.size);
    return b;
  };
  buffer.destroy = function (this: GPUBuffer) {
    live.delete(this);
    return destroy.call(this);
  };
  return () => [...live.values()].reduce((a, b) => a + b, 0);
}

interface Timed {
  precision: string;
  ep: ExecutionProvider;
  session: DecoderSession;
  sessionBytes: number;
  times: number[];
}

export interface ModelBenchOptions {
  /** Timed runs per wasm session (5). */
  runs?: number;
  /** Timed runs per WebGPU session (1: on Dawn in Node a 509-token run takes 10 s to a minute, see the README). */
  webgpuRuns?: number;
  precisions?: string[];
  /** Only the wasm provider. */
  wasmOnly?: boolean;
  log?: (line: string) => void;
}

export async function modelBench(options: ModelBenchOptions = {}): Promise<ModelBench> {
  const runs = options.runs ?? 5;
  const webgpuRuns = options.webgpuRuns ?? 1;
  const precisions = options.precisions ?? BENCH_PRECISIONS;
  const log = options.log ?? (() => {});
  const wasmBytes = trackWasmMemories();
  const gpu = options.wasmOnly ? { reason: "not asked for (wasm only)" } : await nodeOrtWebGpu();
  const gpuBytes = "reason" in gpu ? undefined : trackGpuBuffers();
  const ort = "reason" in gpu ? ((await import("onnxruntime-web")) as typeof import("onnxruntime-web")) : gpu.ort;
  ort.env.wasm.numThreads = 1;
  let webgpuProblem = "reason" in gpu ? gpu.reason : undefined;
  const float16: ModelBench["float16"] = { wasm: float16ModeFor("wasm", false) };
  if (!("reason" in gpu)) float16.webgpu = float16ModeFor("webgpu", gpu.adapter.features.has("shader-f16"));

  const model = await loadModelDir(STORIES_DIR);
  const ids = JSON.parse(readFileSync(path.join(STORIES_DIR, "reference/eval_ids.json"), "utf8")) as number[];
  const sizes = new Map<string, { weightBytes: number; onnxBytes: number }>();
  // All sessions open at once and timed in turns, so drift on a shared machine hits every precision alike.
  const timed: Timed[] = [];
  const wasmHeap = { before: wasmBytes(), after: 0 };
  try {
    for (const precision of precisions) {
      const prepared = prepareWeights(model.weights, precision);
      for (const ep of ["wasm", "webgpu"] as const) {
        if (ep === "webgpu" && (webgpuProblem || !gpuBytes)) continue;
        const bytes = encodeOnnxModel(buildDecoderGraph(model.arch, prepared, { float16: float16[ep]! }));
        if (ep === "wasm") sizes.set(precision, { weightBytes: prepared.weightBytes, onnxBytes: bytes.length });
        const measure = ep === "wasm" ? wasmBytes : gpuBytes!;
        const before = measure();
        const t = performance.now();
        const session = await DecoderSession.create(ort, bytes, model.arch, ep);
        try {
          await session.forward(ids); // the first run plans memory and compiles shaders: not timed
        } catch (e) {
          await session.release();
          if (ep === "wasm") throw e;
          webgpuProblem = `${precision}: ${(e as Error).message}`;
          continue;
        }
        timed.push({ precision, ep, session, sessionBytes: measure() - before, times: [] });
        log(`model bench: ${precision} on ${ep} ready in ${((performance.now() - t) / 1000).toFixed(1)} s, session ${formatMiB(timed.at(-1)!.sessionBytes)}`);
      }
    }
    wasmHeap.after = wasmBytes();
    for (let r = 0; r < Math.max(runs, webgpuRuns); r++) {
      for (const s of timed) {
        if (r >= (s.ep === "wasm" ? runs : webgpuRuns)) continue;
        const t = performance.now();
        await s.session.forward(ids);
        s.times.push(performance.now() - t);
      }
      log(`model bench: round ${r + 1}: ${timed.filter((s) => s.times.length === r + 1).map((s) => `${s.precision}/${s.ep} ${s.times.at(-1)!.toFixed(0)} ms`).join(", ")}`);
    }
  } finally {
    await Promise.all(timed.map((s) => s.session.release()));
  }
  const tokensPerSecond = (times: number[]) => ids.length / ([...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]! / 1000);
  const figures = (precision: string, ep: ExecutionProvider): ProviderFigures | undefined => {
    const s = timed.find((x) => x.precision === precision && x.ep === ep);
    const base = timed.find((x) => x.precision === precisions[0] && x.ep === ep);
    if (!s || !base) return undefined;
    return { tokensPerSecond: tokensPerSecond(s.times), ratio: tokensPerSecond(s.times) / tokensPerSecond(base.times), sessionBytes: s.sessionBytes };
  };
  const rows = precisions.map((precision): ModelBenchRow => {
    const row: ModelBenchRow = { precision, ...sizes.get(precision)!, wasm: figures(precision, "wasm")! };
    const webgpu = webgpuProblem ? undefined : figures(precision, "webgpu");
    if (webgpu) row.webgpu = webgpu;
    return row;
  });
  return { tokens: ids.length, rows, wasmHeap, float16, ...(webgpuProblem ? { webgpuProblem } : {}) };
}

export function modelBenchTable(bench: ModelBench): string {
  const header = ["precision", "wasm tok/s", "vs f32", "webgpu tok/s", "vs f32", "weights", "ONNX model", "webgpu session"];
  const cells = bench.rows.map((r) => [
    r.precision,
    r.wasm.tokensPerSecond.toFixed(0),
    r.wasm.ratio.toFixed(2),
    r.webgpu ? r.webgpu.tokensPerSecond.toFixed(0) : "-",
    r.webgpu ? r.webgpu.ratio.toFixed(2) : "-",
    formatMiB(r.weightBytes),
    formatMiB(r.onnxBytes),
    r.webgpu ? formatMiB(r.webgpu.sessionBytes) : "-",
  ]);
  const all = [header, ...cells];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  const title = `(g) stories260K evaluation (${bench.tokens} tokens, one causal pass) in onnxruntime-web 1 thread: wasm and WebGPU (Dawn) providers`;
  const notes = [
    ...Object.entries(bench.float16).map(([ep, mode]) => `f16 on ${ep}: ${float16ComputeNote(mode)}${mode === "float32" ? ", the fp16 values held as float32" : ""}`),
    `ONNX model: what the wasm session was given; webgpu session: GPU buffers the session holds after its first run`,
    `ORT's wasm memory: ${formatMiB(bench.wasmHeap.after)} with all ${bench.rows.length * (bench.webgpuProblem ? 1 : 2)} sessions open (one heap for both providers${bench.wasmHeap.before ? `, ${formatMiB(bench.wasmHeap.before)} before the first` : ", made with the first"})`,
    ...(bench.webgpuProblem ? [`WebGPU provider not run: ${bench.webgpuProblem}`] : []),
  ];
  return [title, line(header), ...cells.map(line), ...notes].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const precisions = process.env.QUANTLAB_BENCH_MODEL_PRECISIONS?.split(",");
  const wasmOnly = process.env.QUANTLAB_BENCH_MODEL_WASM_ONLY === "1";
  console.log(modelBenchTable(await modelBench({ ...(precisions ? { precisions } : {}), wasmOnly, log: (line) => process.stderr.write(`  ${line}\n`) })));
  process.exit(0); // Dawn keeps the process alive
}
