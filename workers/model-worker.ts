/**
 * The lab's model worker: it owns the opened model and every byte source, so parsing headers,
 * streaming tensors and computing statistics never block the page. Exposed with comlink.
 *
 * Opening is transactional: a new input is parsed completely before it replaces the current model;
 * if it fails, the error goes back to the page and the previous model stays.
 */
import * as Comlink from "comlink";
import { catalogRows, totals } from "../src/formats/catalog.ts";
import { isFormatError } from "../src/formats/errors.ts";
import { openModel, readTensorRows, type OpenedModel } from "../src/formats/model.ts";
import type { TensorInfo } from "../src/formats/safetensors.ts";
import type { ByteSource } from "../src/formats/source.ts";
import { gpuTensorStats } from "../src/gpu/stats.ts";
import { tensorStats, type TensorStatistics } from "../src/quant/stats.ts";
import { inputSources } from "./model-input.ts";
import type { ModelSummary, ModelWorkerApi, TensorStatsResult } from "./model-worker-api.ts";
import { toWireError } from "./wire-error.ts";
import { workerDevice } from "./worker-device.ts";

let current: { model: OpenedModel; summary: ModelSummary } | null = null;
/** Aborts the open in flight when a newer one starts: the user changed their mind. */
let openInFlight: AbortController | null = null;
let statsInFlight: AbortController | null = null;
function summarize(model: OpenedModel): ModelSummary {
  const rows = catalogRows(model);
  return {
    name: model.name,
    files: model.files,
    metadata: model.metadata,
    synthetic: model.metadata["synthetic"] === "true",
    rows,
    totals: totals(rows),
  };
}

/** Parses the sources fully, then (and only then) makes them the current model. */
async function open(makeSources: (signal: AbortSignal) => Promise<ByteSource[]>): Promise<ModelSummary> {
  openInFlight?.abort();
  const controller = new AbortController();
  openInFlight = controller;
  try {
    const sources = await makeSources(controller.signal);
    const model = await openModel(sources, controller.signal);
    controller.signal.throwIfAborted();
    const summary = summarize(model);
    statsInFlight?.abort();
    const previous = current;
    current = { model, summary };
    if (previous) await closeSources(previous.model);
    return summary;
  } catch (e) {
    throw toWireError(e);
  } finally {
    if (openInFlight === controller) openInFlight = null;
  }
}

async function closeSources(model: OpenedModel): Promise<void> {
  const sources = new Set(model.tensors.map((t) => t.source));
  await Promise.allSettled([...sources].map((s) => s.close?.()));
}

async function* valuesOf(tensor: TensorInfo, signal: AbortSignal): AsyncIterable<Float32Array> {
  for await (const chunk of readTensorRows(tensor, { signal, flat: true })) yield chunk.values;
}

/** On the GPU when the worker has one; the CPU reference otherwise, or if the GPU fails mid-way. */
async function statistics(tensor: TensorInfo, signal: AbortSignal): Promise<{ stats: TensorStatistics; computedOn: "gpu" | "cpu" }> {
  const { device } = await workerDevice();
  if (device) {
    try {
      const stats = await gpuTensorStats(device, valuesOf(tensor, signal), { expectedValues: tensor.params, signal });
      return { stats, computedOn: "gpu" };
    } catch (e) {
      signal.throwIfAborted();
      // A format error is about the file, not the GPU: report it rather than read the file again.
      if (isFormatError(e)) throw e;
      console.warn("GPU statistics failed, using the CPU reference:", e);
    }
  }
  return { stats: await tensorStats(tensor, signal), computedOn: "cpu" };
}

const api: ModelWorkerApi = {
  openFiles(files: File[]) {
    return open((signal) => inputSources({ kind: "files", files }, signal));
  },

  openUrl(url: string) {
    return open((signal) => inputSources({ kind: "url", url }, signal));
  },

  openDemo() {
    return open((signal) => inputSources({ kind: "demo" }, signal));
  },

  async catalog() {
    return current?.summary ?? null;
  },

  async tensorStats(name: string): Promise<TensorStatsResult> {
    statsInFlight?.abort();
    const controller = new AbortController();
    statsInFlight = controller;
    try {
      const held = current;
      const tensor = held?.model.tensors.find((t) => t.name === name);
      const row = held?.summary.rows.find((r) => r.name === name);
      if (!tensor || !row) throw new Error(`No tensor named ${name} in the current model.`);
      const { stats, computedOn } = await statistics(tensor, controller.signal);
      return { tensor: row, stats, computedOn };
    } catch (e) {
      throw toWireError(e);
    } finally {
      if (statsInFlight === controller) statsInFlight = null;
    }
  },

  async gpuStatus() {
    return (await workerDevice()).status;
  },
};

Comlink.expose(api);
