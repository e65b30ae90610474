/**
 * (f) The model run: evaluation tokens per second of stories260K at each precision on onnxruntime-web's
 * wasm provider in Node, as a ratio against f32 measured in the same run, with each variant's ONNX model
 * size (what the session holds as weights; onnxruntime's wasm heap only grows, so the process's memory says
 * nothing per session). (The WebGPU provider exists only in a
 * browser; the lab's panel shows which provider ran. Node's onnxruntime-web build is wasm only.)
 * Run alone with `npx tsx bench/model.ts`, or as part of `npm run bench`.
 */
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-web";
import { buildDecoderGraph } from "../src/model/decoder-graph.ts";
import { encodeOnnxModel } from "../src/model/onnx-proto.ts";
import { prepareWeights } from "../src/model/precision.ts";
import { DecoderSession } from "../src/model/session.ts";
import { loadModelDir } from "../src/node/model-dir.ts";
import { STORIES_DIR } from "../test/shared-data.ts";

export const BENCH_PRECISIONS = ["f32", "f16", "int8", "int4-g32", "int4-asym-g32", "q8_0", "q4_K", "nf4"];

export interface ModelBenchRow {
  precision: string;
  tokensPerSecond: number;
  /** tokens/s over f32's. */
  ratio: number;
  onnxBytes: number;
}

export async function modelBench(runs = 5): Promise<ModelBenchRow[]> {
  ort.env.wasm.numThreads = 1;
  const model = await loadModelDir(STORIES_DIR);
  const ids = JSON.parse(readFileSync(path.join(STORIES_DIR, "reference/eval_ids.json"), "utf8")) as number[];
  // All sessions open at once and timed in turns, so drift on a shared machine hits every precision alike.
  const sessions: { precision: string; session: DecoderSession; onnxBytes: number; times: number[] }[] = [];
  try {
    for (const precision of BENCH_PRECISIONS) {
      const bytes = encodeOnnxModel(buildDecoderGraph(model.arch, prepareWeights(model.weights, precision)));
      const session = await DecoderSession.create(ort, bytes, model.arch, "wasm");
      sessions.push({ precision, session, onnxBytes: bytes.length, times: [] });
      await session.forward(ids); // the first run plans memory: not timed
    }
    for (let r = 0; r < runs; r++) {
      for (const s of sessions) {
        const t = performance.now();
        await s.session.forward(ids);
        s.times.push(performance.now() - t);
      }
    }
  } finally {
    await Promise.all(sessions.map((s) => s.session.release()));
  }
  const tokensPerSecond = (times: number[]) => ids.length / ([...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]! / 1000);
  const base = tokensPerSecond(sessions[0]!.times);
  return sessions.map((s) => ({ precision: s.precision, tokensPerSecond: tokensPerSecond(s.times), ratio: tokensPerSecond(s.times) / base, onnxBytes: s.onnxBytes }));
}

export function modelBenchTable(rows: ModelBenchRow[]): string {
  const header = ["precision", "wasm tokens/s", "vs f32", "ONNX model"];
  const cells = rows.map((r) => [r.precision, r.tokensPerSecond.toFixed(0), r.ratio.toFixed(2), `${(r.onnxBytes / 1024).toFixed(0)} KiB`]);
  const all = [header, ...cells];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return ["(f) stories260K evaluation (509 tokens, one causal pass) in onnxruntime-web, wasm provider, 1 thread", line(header), ...cells.map(line)].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(modelBenchTable(await modelBench()));
