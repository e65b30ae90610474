/**
 * The lab's quantization worker: streams one tensor through the formats the page asks for (on the
 * worker's WebGPU device where a kernel exists, else on the CPU reference; src/pipeline/quantize-tensor.ts)
 * and returns the metrics and per-block error maps. Exposed with comlink; how it gets the tensor is
 * explained in quant-worker-api.ts.
 */
import * as Comlink from "comlink";
import { openModel, tensorRowLayout, type OpenedModel } from "../src/formats/model.ts";
// Registers every WGSL kernel family, so quantizeTensor finds them through gpuQuantizerFor.
import "../src/gpu/kernels.ts";
import { bitsPerWeight } from "../src/quant/format.ts";
import { calibratedBytes, calibratedMethod, groupFor, methodName } from "../src/quant/calibrated.ts";
import { FORMATS } from "../src/quant/registry.ts";
import type { QuantizeProgress } from "../src/pipeline/quantize-tensor.ts";
import { isCalibrated, labFormat, quantizeLayer } from "../src/pipeline/quantize-layer.ts";
import { CALIBRATED_CHOICES } from "../src/pipeline/calibrated-tensor.ts";
import { heatmapTensor } from "../src/pipeline/heatmap-tensor.ts";
import { inspectWeight } from "../src/pipeline/inspect-weight.ts";
import type { TensorInfo } from "../src/formats/safetensors.ts";
import type { ModelProgress } from "../src/pipeline/quantize-model.ts";
import { inputSources } from "./model-input.ts";
import type { FormatChoice, ModelRef, ModelRunReport, QuantizeReport, QuantizeRequest, QuantWorkerApi, TensorRef } from "./quant-worker-api.ts";
import { cachedResults, runModel } from "./model-run.ts";
import { runGgufExport } from "./export-run.ts";
import { runCheckpointExport } from "./export-checkpoint.ts";
import { toWireError } from "./wire-error.ts";
import { workerDevice } from "./worker-device.ts";
import { calibrationOf, chooseCalibration } from "./worker-calibration.ts";
import { calibrationOptions, runCalibration } from "../src/pipeline/model-calibration.ts";

/** The model of the last open a request named (opening reads only headers). */
let opened: { modelId: number; model: Promise<OpenedModel> } | null = null;
const jobs = new Map<number, AbortController>();

/** Progress goes to the page at most this often (plus the last event). */
const PROGRESS_INTERVAL_MS = 50;

function modelOf(ref: ModelRef, signal: AbortSignal): Promise<OpenedModel> {
  if (opened?.modelId !== ref.modelId) {
    const previous = opened;
    // Not tied to one job's signal: the next job on the same model reuses it.
    const model = inputSources(ref.input).then((sources) => openModel(sources));
    opened = { modelId: ref.modelId, model };
    // A failed open is not kept: the next request tries again.
    model.catch(() => {
      if (opened?.model === model) opened = null;
    });
    void previous?.model.then(closeSources, () => {});
  }
  const { model } = opened!;
  signal.throwIfAborted();
  return model;
}

async function closeSources(model: OpenedModel): Promise<void> {
  const sources = new Set(model.tensors.map((t) => t.source));
  await Promise.allSettled([...sources].map((s) => s.close?.()));
}

/** Progress as the page hears it: at most every PROGRESS_INTERVAL_MS, and the last event. */
function throttled<P extends { doneBytes: number; totalBytes: number }>(send: ((p: P) => unknown) | undefined) {
  let last = 0;
  return (p: P) => {
    const now = Date.now();
    if (!send || (now - last < PROGRESS_INTERVAL_MS && p.doneBytes < p.totalBytes)) return;
    last = now;
    // Not awaited: the page's answer does not matter, and waiting would slow the job.
    void Promise.resolve(send(p)).catch(() => {});
  };
}

/** A registry format, or a GPTQ/AWQ setting kept by name ("gptq4-g128"). */
function formatOrCalibrated(id: string) {
  const f = labFormat(id);
  return "method" in f ? id : f;
}

/** A calibrated setting as the pickers show it, with its bits per weight on the shape. */
function calibratedChoice(id: string, shape: { rows: number; cols: number }): FormatChoice {
  const m = calibratedMethod(id);
  if (!m) throw new Error(`"${id}" is not a GPTQ / AWQ setting (gptq4-g128-act, awq4-g32, awqgptq4-g128, ...)`);
  const group = groupFor(m, shape.cols);
  const choice: FormatChoice = {
    id,
    family: "calibrated",
    description: `${methodName(m.method)} ${m.bits}-bit, ${m.group === -1 ? "per channel" : `groups of ${m.group}`}: calibrated on the layer's inputs`,
    bitsPerWeight: (calibratedBytes(m, shape, group) * 8) / Math.max(1, shape.rows * shape.cols),
  };
  if (group !== m.group) choice.rowLengthProblem = { reason: `rows of ${shape.cols} are not a multiple of ${m.group}: per channel instead` };
  return choice;
}

/** Registers a job under its id (a job with the same id is stopped first). */
function startJob(jobId: number): AbortController {
  const controller = new AbortController();
  jobs.get(jobId)?.abort();
  jobs.set(jobId, controller);
  return controller;
}

function endJob(jobId: number, controller: AbortController): void {
  if (jobs.get(jobId) === controller) jobs.delete(jobId);
}

async function tensorOf(ref: TensorRef, signal: AbortSignal): Promise<TensorInfo> {
  const model = await modelOf(ref, signal);
  const tensor = model.tensors.find((t) => t.name === ref.tensor);
  if (!tensor) throw new Error(`No tensor named ${ref.tensor} in the model.`);
  return tensor;
}

const api: QuantWorkerApi = {
  async formats(tensor) {
    const { rows, rowLength: cols } = tensorRowLayout(tensor);
    const shape = { rows, cols };
    const registry = FORMATS.map((f): FormatChoice => {
      const check = f.checkRowLength(cols);
      return {
        id: f.id,
        family: f.family,
        description: f.description,
        bitsPerWeight: bitsPerWeight(f, shape),
        rowLengthProblem: check.ok ? undefined : { reason: check.reason, fallback: check.fallback },
      };
    });
    return [...registry, ...CALIBRATED_CHOICES.map((id) => calibratedChoice(id, shape))];
  },

  async calibratedChoice(id, tensor) {
    try {
      const { rows, rowLength: cols } = tensorRowLayout(tensor);
      return calibratedChoice(id, { rows, cols });
    } catch (e) {
      throw toWireError(e);
    }
  },

  async quantize(request: QuantizeRequest, onProgress) {
    const controller = startJob(request.jobId);
    const { signal } = controller;
    try {
      const formats = request.formats.map(labFormat);
      const model = await modelOf(request.tensor, signal);
      const tensor = await tensorOf(request.tensor, signal);
      const calibration = calibrationOptions(await calibrationOf(request.tensor, model, formats.some(isCalibrated)));
      const gpu = await workerDevice();
      signal.throwIfAborted();
      const run = await quantizeLayer(tensor, formats, {
        ...calibration,
        device: gpu.device,
        noDeviceReason: gpu.status.kind === "cpu" ? gpu.status.reason : undefined,
        imatrix: request.imatrix,
        keepBytes: request.includeBytes === true,
        signal,
        onProgress: throttled<QuantizeProgress>(onProgress && ((p) => onProgress({ jobId: request.jobId, ...p }))),
      });
      const report: QuantizeReport = {
        jobId: request.jobId,
        tensor: tensor.name,
        dtype: tensor.dtype,
        shape: run.shape,
        device: gpu.status,
        results: run.results,
      };
      if (run.calibration) report.calibration = run.calibration;
      // The error maps and bytes were made for this report: hand them over instead of copying them.
      const transfers = run.results.flatMap((r) =>
        r.ok ? [r.metrics.blocks.mse.buffer, r.metrics.blocks.maxAbs.buffer, ...(r.bytes ? [r.bytes.buffer] : [])] : [],
      );
      return Comlink.transfer(report, transfers as ArrayBuffer[]);
    } catch (e) {
      throw toWireError(e);
    } finally {
      endJob(request.jobId, controller);
      // The callback is a comlink proxy with a message port of its own: close it with the job.
      void (onProgress as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  },

  async quantizeModel(request, onEvent) {
    const controller = startJob(request.jobId);
    const { signal } = controller;
    const { jobId } = request;
    // Rows go through the callback's own port and the report through the worker's: the report waits for
    // the last row to be taken, so no row arrives after the run has ended.
    let lastRow: Promise<unknown> = Promise.resolve();
    try {
      const formats = request.formats.map(labFormat);
      const model = await modelOf(request.model, signal);
      const calibration = await calibrationOf(request.model, model, formats.some(isCalibrated));
      const gpu = await workerDevice();
      signal.throwIfAborted();
      const run = await runModel(model, formats, {
        ...calibrationOptions(calibration),
        runCalibration: runCalibration(calibration, formats.some(isCalibrated)),
        gpu,
        reuseCached: request.reuseCached !== false,
        signal,
        onTensor: (row) => void (lastRow = Promise.resolve(onEvent?.({ kind: "tensor", jobId, row })).catch(() => {})),
        onProgress: throttled(onEvent && ((progress: ModelProgress) => onEvent({ kind: "progress", jobId, progress }))),
      });
      const report: ModelRunReport = {
        jobId,
        formats: run.formats,
        tensors: run.rows.length,
        computedCells: run.computedCells,
        cachedCells: run.cachedCells,
        device: gpu.status,
        calibration: { source: run.calibration.source, label: run.calibration.label },
      };
      if (run.cacheProblem) report.cacheProblem = run.cacheProblem;
      return report;
    } catch (e) {
      throw toWireError(e);
    } finally {
      await lastRow;
      endJob(jobId, controller);
      // The callback is a comlink proxy with a message port of its own: close it with the job.
      void (onEvent as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  },

  async chooseCalibration(ref, choice) {
    try {
      return await chooseCalibration(ref, await modelOf(ref, new AbortController().signal), choice);
    } catch (e) {
      throw toWireError(e);
    }
  },

  async cachedModelResults(ref) {
    try {
      return await cachedResults(await modelOf(ref, new AbortController().signal));
    } catch (e) {
      throw toWireError(e);
    }
  },

  async heatmap(request, onProgress) {
    const controller = startJob(request.jobId);
    const { signal } = controller;
    try {
      const formats = request.formats.map(formatOrCalibrated);
      const model = await modelOf(request.tensor, signal);
      const tensor = await tensorOf(request.tensor, signal);
      const { calibration } = calibrationOptions(await calibrationOf(request.tensor, model, formats.some((f) => typeof f === "string")));
      const gpu = await workerDevice();
      signal.throwIfAborted();
      let last = 0;
      const map = await heatmapTensor(tensor, formats, request.view, request.canvas, {
        calibration,
        device: gpu.device,
        noDeviceReason: gpu.status.kind === "cpu" ? gpu.status.reason : undefined,
        signal,
        onProgress: (done) => {
          const now = Date.now();
          if (!onProgress || (now - last < PROGRESS_INTERVAL_MS && done < 1)) return;
          last = now;
          void Promise.resolve(onProgress(done)).catch(() => {});
        },
      });
      const transfers = map.panels.flatMap((p) =>
        p.ok ? Object.values(p.cells).filter((v): v is Float64Array => v instanceof Float64Array).map((a) => a.buffer) : [],
      );
      return Comlink.transfer(map, transfers as ArrayBuffer[]);
    } catch (e) {
      throw toWireError(e);
    } finally {
      endJob(request.jobId, controller);
      void (onProgress as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  },

  async inspectWeight(request) {
    try {
      const signal = new AbortController().signal;
      const formats = request.formats.map(formatOrCalibrated);
      const model = await modelOf(request.tensor, signal);
      const tensor = await tensorOf(request.tensor, signal);
      const { calibration } = calibrationOptions(await calibrationOf(request.tensor, model, formats.some((f) => typeof f === "string")));
      return await inspectWeight(tensor, formats, request.row, request.col, { signal, calibration });
    } catch (e) {
      throw toWireError(e);
    }
  },

  async exportGguf(request, onProgress) {
    const controller = startJob(request.jobId);
    try {
      const model = await modelOf(request.model, controller.signal);
      return await runGgufExport(request, model, request.model.input, controller.signal, onProgress);
    } catch (e) {
      throw toWireError(e);
    } finally {
      endJob(request.jobId, controller);
      void (onProgress as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  },

  async exportCheckpoint(request, onStage) {
    const controller = startJob(request.jobId);
    try {
      const model = await modelOf(request.model, controller.signal);
      return await runCheckpointExport(request, model, request.model.input, controller.signal, onStage);
    } catch (e) {
      throw toWireError(e);
    } finally {
      endJob(request.jobId, controller);
      void (onStage as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  },

  async cancel(jobId) {
    jobs.get(jobId)?.abort();
  },

  async gpuStatus() {
    return (await workerDevice()).status;
  },
};

Comlink.expose(api);
