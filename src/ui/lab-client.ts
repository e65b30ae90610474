/**
 * The page's handle on the lab's workers. Every call goes to a worker through comlink; errors come back
 * as FormatError (code, file, detail intact) or CancelledError when cancelled or replaced by a newer
 * request.
 *
 * The model worker opens models and streams statistics. The quantization worker (started on first use)
 * is handed the input of the model currently shown (see workers/quant-worker-api.ts for why), which this
 * client remembers for every open that succeeded.
 */
import * as Comlink from "comlink";
import type { GpuStatus } from "../gpu/device.ts";
import type { ModelInput } from "../../workers/model-input.ts";
import { inputSidecarText } from "../../workers/side-files.ts";
import type { ModelSummary, ModelWorkerApi, TensorStatsResult } from "../../workers/model-worker-api.ts";
import type {
  CachedModelResults,
  CalibrationChoice,
  CalibrationChosen,
  FormatChoice,
  GgufExportProgress,
  GgufExportReport,
  CheckpointExportReport,
  CheckpointExportRequest,
  CheckpointTarget,
  GgufExportRequest,
  HeatmapRequest,
  ModelRunEvent,
  ModelRunReport,
  QuantWorkerApi,
  QuantizeProgressEvent,
  QuantizeReport,
  TensorHeatmap,
  WeightInspection,
} from "../../workers/quant-worker-api.ts";
import { fromWireError } from "../../workers/wire-error.ts";

/** A quantization job in flight: its id (for cancel) and its report. */
export interface QuantizeJob {
  jobId: number;
  report: Promise<QuantizeReport>;
}

export class LabClient {
  private readonly worker: Worker;
  private readonly remote: Comlink.Remote<ModelWorkerApi>;
  private quant: Comlink.Remote<QuantWorkerApi> | undefined;
  /** The input of the model the model worker holds, numbered per open. */
  private current: { modelId: number; input: ModelInput } | undefined;
  private opens = 0;
  private jobs = 0;

  constructor() {
    this.worker = new Worker(new URL("../../workers/model-worker.ts", import.meta.url), { type: "module", name: "quantlab-model" });
    this.remote = Comlink.wrap<ModelWorkerApi>(this.worker);
  }

  openFiles(files: File[]): Promise<ModelSummary> {
    return this.open({ kind: "files", files }, () => this.remote.openFiles(files));
  }

  openUrl(url: string): Promise<ModelSummary> {
    return this.open({ kind: "url", url }, () => this.remote.openUrl(url));
  }

  openDemo(): Promise<ModelSummary> {
    return this.open({ kind: "demo" }, () => this.remote.openDemo());
  }

  tensorStats(name: string): Promise<TensorStatsResult> {
    return this.call(() => this.remote.tensorStats(name));
  }

  gpuStatus(): Promise<GpuStatus> {
    // Comlink's Remote<> distributes over the union; the value is the plain GpuStatus the worker returned.
    return this.call(() => this.remote.gpuStatus() as Promise<GpuStatus>);
  }

  /** Every format with its bits per weight on this tensor's shape. */
  quantFormats(tensor: { shape: number[]; params: number }): Promise<FormatChoice[]> {
    return this.call(() => this.quantWorker().formats(tensor));
  }

  /** A calibrated setting ("gptq3-g64-act") as a choice on this tensor's shape; rejects for an id outside the grammar. */
  calibratedChoice(id: string, tensor: { shape: number[]; params: number }): Promise<FormatChoice> {
    return this.call(() => this.quantWorker().calibratedChoice(id, tensor));
  }

  /** Starts quantizing a tensor of the current model with each format. */
  quantize(tensor: string, formats: string[], onProgress?: (event: QuantizeProgressEvent) => void): QuantizeJob {
    const jobId = ++this.jobs;
    const current = this.current;
    if (!current) return { jobId, report: Promise.reject(new Error("Open a model before quantizing.")) };
    const request = { jobId, tensor: { ...current, tensor }, formats };
    const progress = onProgress ? Comlink.proxy(onProgress) : undefined;
    return { jobId, report: this.call(() => this.quantWorker().quantize(request, progress) as Promise<QuantizeReport>) };
  }

  /** Starts computing the heatmap panels of a view of a tensor of the current model. */
  heatmap(
    request: Omit<HeatmapRequest, "jobId" | "tensor"> & { tensor: string },
    onProgress?: (done: number) => void,
  ): { jobId: number; result: Promise<TensorHeatmap> } {
    const jobId = ++this.jobs;
    const current = this.current;
    if (!current) return { jobId, result: Promise.reject(new Error("Open a model first.")) };
    const full: HeatmapRequest = { ...request, jobId, tensor: { ...current, tensor: request.tensor } };
    const progress = onProgress ? Comlink.proxy(onProgress) : undefined;
    return { jobId, result: this.call(() => this.quantWorker().heatmap(full, progress) as Promise<TensorHeatmap>) };
  }

  /** One weight of a tensor of the current model under each format (the heatmap hover). */
  inspectWeight(tensor: string, formats: string[], row: number, col: number): Promise<WeightInspection> {
    const current = this.current;
    if (!current) return Promise.reject(new Error("Open a model first."));
    return this.call(() => this.quantWorker().inspectWeight({ tensor: { ...current, tensor }, formats, row, col }) as Promise<WeightInspection>);
  }

  /**
   * Starts a whole-model run of the current model in the formats: each tensor's row and the progress reach
   * `onEvent` as they come. Cancel it with cancelQuantize(jobId).
   */
  quantizeModel(formats: string[], onEvent: (event: ModelRunEvent) => void, opts: { reuseCached?: boolean } = {}): { jobId: number; report: Promise<ModelRunReport> } {
    const jobId = ++this.jobs;
    const current = this.current;
    if (!current) return { jobId, report: Promise.reject(new Error("Open a model before quantizing.")) };
    const request = { jobId, model: current, formats, reuseCached: opts.reuseCached };
    return { jobId, report: this.call(() => this.quantWorker().quantizeModel(request, Comlink.proxy(onEvent)) as Promise<ModelRunReport>) };
  }

  /** The cached whole-model results of the current model, or undefined. */
  cachedModelResults(): Promise<CachedModelResults | undefined> {
    const current = this.current;
    if (!current) return Promise.resolve(undefined);
    return this.call(() => this.quantWorker().cachedModelResults(current) as Promise<CachedModelResults | undefined>);
  }

  /** Sets what the current model calibrates on (GPTQ / AWQ, output errors); rejects with the reason when it cannot. */
  chooseCalibration(choice: CalibrationChoice): Promise<CalibrationChosen> {
    const current = this.current;
    if (!current) return Promise.reject(new Error("Open a model first."));
    return this.call(() => this.quantWorker().chooseCalibration(current, choice));
  }

  /** Starts writing the current model as a GGUF file (into `target`, or as a Blob to download). */
  exportGguf(
    fileType: string,
    target: FileSystemFileHandle | undefined,
    onProgress?: (progress: GgufExportProgress) => void,
  ): { jobId: number; report: Promise<GgufExportReport> } {
    const jobId = ++this.jobs;
    const current = this.current;
    if (!current) return { jobId, report: Promise.reject(new Error("Open a model first.")) };
    const request: GgufExportRequest = { jobId, model: current, fileType, ...(target ? { target } : {}) };
    const progress = onProgress ? Comlink.proxy(onProgress) : undefined;
    return { jobId, report: this.call(() => this.quantWorker().exportGguf(request, progress) as Promise<GgufExportReport>) };
  }

  /** Starts a GPTQ / AWQ / ONNX export of the current model; the files come back as Blobs. */
  exportCheckpoint(target: CheckpointTarget, onStage?: (stage: string) => void): { jobId: number; report: Promise<CheckpointExportReport> } {
    const jobId = ++this.jobs;
    const current = this.current;
    if (!current) return { jobId, report: Promise.reject(new Error("Open a model first.")) };
    const request: CheckpointExportRequest = { jobId, model: current, target };
    const stage = onStage ? Comlink.proxy(onStage) : undefined;
    return { jobId, report: this.call(() => this.quantWorker().exportCheckpoint(request, stage) as Promise<CheckpointExportReport>) };
  }

  /** The text of a file that came with the current model (its config.json...), or undefined. */
  async modelSideFile(name: string): Promise<string | undefined> {
    const current = this.current;
    return current ? inputSidecarText(current.input, name) : undefined;
  }

  cancelQuantize(jobId: number): Promise<void> {
    return this.call(() => this.quantWorker().cancel(jobId));
  }

  private quantWorker(): Comlink.Remote<QuantWorkerApi> {
    if (!this.quant) {
      const worker = new Worker(new URL("../../workers/quant-worker.ts", import.meta.url), { type: "module", name: "quantlab-quant" });
      this.quant = Comlink.wrap<QuantWorkerApi>(worker);
    }
    return this.quant;
  }

  private async open(input: ModelInput, request: () => Promise<ModelSummary>): Promise<ModelSummary> {
    const summary = await this.call(request);
    // The worker applies opens in order and rejects the ones a newer open replaced, so this is its model.
    this.current = { modelId: ++this.opens, input };
    return summary;
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (e) {
      throw fromWireError(e);
    }
  }
}
