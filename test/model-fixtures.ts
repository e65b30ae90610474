/** stories260K as the model tests use it: the loaded decoder, its reference outputs, and ORT's Node build. */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-web";
import type { LoadedDecoder } from "../src/model/load.ts";
import { loadModelDir } from "../src/node/model-dir.ts";
import { STORIES_DIR } from "./shared-data.ts";

// One thread: the machine's two cores are shared, and results must not depend on a thread split.
ort.env.wasm.numThreads = 1;
export { ort };

export const REFERENCE_DIR = path.join(STORIES_DIR, "reference");

export function readF32(file: string): Float32Array {
  const buf = readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

export const evalIds = (): number[] => readJson(path.join(REFERENCE_DIR, "eval_ids.json"));
export const referenceLogits = (): Float32Array => readF32(path.join(REFERENCE_DIR, "logits_eval.f32"));

let stories: Promise<LoadedDecoder> | undefined;
export function loadStories(): Promise<LoadedDecoder> {
  stories ??= loadModelDir(STORIES_DIR);
  return stories;
}

/** Largest |a - b| relative to the row's largest |reference| (logits near 0 have no meaningful relative error). */
export function maxRowRelativeError(actual: Float32Array, reference: Float32Array, cols: number): number {
  let worst = 0;
  for (let r = 0; r < reference.length / cols; r++) {
    let scale = 0;
    let diff = 0;
    for (let c = r * cols; c < (r + 1) * cols; c++) {
      scale = Math.max(scale, Math.abs(reference[c]!));
      diff = Math.max(diff, Math.abs(actual[c]! - reference[c]!));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}
