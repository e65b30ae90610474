/**
 * The quantization worker's whole-model run: the model's identity and the results cache around
 * quantizeModel (src/pipeline), so reopening a file shows its results at once and a run computes only
 * what the cache does not hold. A cache that fails is reported in the run's report, never a failure of it.
 */
import { errorWithName } from "../src/common/error-text.ts";
import type { OpenedModel } from "../src/formats/model.ts";
import type { LabFormat, QuantizeLayerOptions } from "../src/pipeline/quantize-layer.ts";
import type { RunCalibration } from "../src/pipeline/model-calibration.ts";
import { modelIdentity, type ModelIdentity } from "../src/pipeline/model-identity.ts";
import { quantizableTensors, quantizeModel, tensorResults, type ModelProgress, type ModelRun, type TensorResults } from "../src/pipeline/quantize-model.ts";
import { openResultsCache, type ResultsCache } from "../src/pipeline/results-cache.ts";
import type { CachedModelResults } from "./quant-worker-api.ts";
import type { WorkerGpu } from "./worker-device.ts";

let cache: Promise<ResultsCache> | undefined;
const identities = new WeakMap<OpenedModel, Promise<ModelIdentity>>();

function resultsCache(): Promise<ResultsCache> {
  cache ??= openResultsCache();
  return cache;
}


/** The model's cache key, or why there is none (crypto.subtle missing, the header unreadable). */
async function cacheKey(model: OpenedModel): Promise<{ key?: string; problem?: string }> {
  let identity = identities.get(model);
  if (!identity) {
    identity = modelIdentity(model.tensors);
    identities.set(model, identity);
    identity.catch(() => identities.delete(model));
  }
  try {
    return { key: (await identity).key };
  } catch (e) {
    return { problem: `the file's identity could not be computed (${errorWithName(e)}): results are not kept` };
  }
}

export interface ModelRunOptions extends Pick<QuantizeLayerOptions, "calibration" | "syntheticWhy"> {
  /** The activations `calibration` / `syntheticWhy` stand for: cached cells are kept and reused by its key. */
  runCalibration: RunCalibration;
  gpu: WorkerGpu;
  reuseCached: boolean;
  signal: AbortSignal;
  onTensor: (row: TensorResults) => void;
  onProgress: (progress: ModelProgress) => void;
}

export async function runModel(model: OpenedModel, formats: LabFormat[], opts: ModelRunOptions): Promise<ModelRun & { cacheProblem?: string; calibration: RunCalibration }> {
  const { gpu, signal, runCalibration: calibration } = opts;
  const [store, { key, problem }] = await Promise.all([resultsCache(), cacheKey(model)]);
  let cacheProblem = store.unavailable ?? problem;
  const ids = formats.map((f) => f.id);
  const cached = key && opts.reuseCached ? await store.load(key, calibration.key, ids) : undefined;
  if (key && !store.unavailable) {
    await store.saveRun(key, ids, calibration).catch((e: unknown) => (cacheProblem ??= `results could not be kept (${errorWithName(e)})`));
  }
  const run = await quantizeModel(quantizableTensors(model.tensors), formats, {
    calibration: opts.calibration,
    syntheticWhy: opts.syntheticWhy,
    device: gpu.device,
    noDeviceReason: gpu.status.kind === "cpu" ? gpu.status.reason : undefined,
    signal,
    cached,
    save: key && !store.unavailable ? (tensor, cells) => store.save(key, calibration.key, tensor, cells) : undefined,
    onCacheError: (e) => (cacheProblem ??= `results could not be kept (${errorWithName(e)})`),
    onTensor: opts.onTensor,
    onProgress: opts.onProgress,
  });
  return cacheProblem ? { ...run, calibration, cacheProblem } : { ...run, calibration };
}

/** The cached results of the model's last run (on that run's calibration): the tensors the cache has every cell of. */
export async function cachedResults(model: OpenedModel): Promise<CachedModelResults | undefined> {
  const [store, { key }] = await Promise.all([resultsCache(), cacheKey(model)]);
  if (!key || store.unavailable) return undefined;
  const last = await store.lastRun(key);
  if (!last || last.formats.length === 0) return undefined;
  const { formats, calibration } = last;
  const cells = await store.load(key, calibration.key, formats);
  const tensors = quantizableTensors(model.tensors);
  const rows = tensors.flatMap((t) => {
    const kept = cells.get(t.name);
    if (!kept || formats.some((f) => !kept.has(f))) return [];
    return [tensorResults(t, formats.map((f) => kept.get(f)!), formats.length)];
  });
  return rows.length > 0 ? { formats, rows, tensors: tensors.length, calibration: { source: calibration.source, label: calibration.label } } : undefined;
}
