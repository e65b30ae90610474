/** ../shared/golden/gptq_awq read from disk, for Node-side tests, benches and the CLI tests. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SHARED_DIR } from "./shared-data.ts";
import { GPTQ_AWQ_GOLDEN, goldenGptqAwqManifest, goldenLayer, type GoldenLayer, type ReadGolden } from "./gptq-awq-golden.ts";
import { calibrationStats, type CalibrationStats } from "../src/quant/hessian.ts";

export const GPTQ_AWQ_GOLDEN_DIR = path.join(SHARED_DIR, GPTQ_AWQ_GOLDEN);

export const readGoldenFile: ReadGolden = async (relative) => {
  const b = await readFile(path.join(GPTQ_AWQ_GOLDEN_DIR, relative));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
};

/** The golden manifest, read once. */
export const goldenManifestNode = goldenGptqAwqManifest(readGoldenFile);

const layers = new Map<string, Promise<{ layer: GoldenLayer; stats: CalibrationStats }>>();

/** A golden layer and its calibration statistics, read and computed once per test file. */
export function goldenLayerWithStats(name: string): Promise<{ layer: GoldenLayer; stats: CalibrationStats }> {
  let p = layers.get(name);
  if (!p) {
    p = goldenManifestNode.then((manifest) => goldenLayer(readGoldenFile, manifest, name)).then((layer) => ({ layer, stats: calibrationStats(layer.x, layer.c.in_features) }));
    layers.set(name, p);
  }
  return p;
}
