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
