/**
 * What the quantization worker offers the page. Both sides import this file: the worker implements
 * QuantWorkerApi, the page calls it through comlink. Errors cross as WireErrors (workers/wire-error.ts);
 * what goes wrong for one format is not an error but part of the report (FormatResult with ok: false).
 *
 * Where the tensor comes from: the model worker holds the opened model and its sources, but sources are
 * not transferable (a Node file handle, an HTTP reader with its state). So the page hands the quantization
 * worker the same input it gave the model worker (the picked File objects, which postMessage shares
 * without copying, the URL, or "demo") with the id of that open, and the tensor's name. The quantization
 * worker opens the input itself with src/formats (headers only: one small read per file) and keeps it
 * until a request names another open. The two workers never talk to each other, and each can work while
 * the other is busy (statistics of one tensor while another is quantized).
 */
import type { GpuStatus } from "../src/gpu/device.ts";
import type { FormatFamily, MatrixShape } from "../src/quant/format.ts";
import type { FormatResult } from "../src/pipeline/quantize-tensor.ts";
import type { ModelProgress, TensorResults } from "../src/pipeline/quantize-model.ts";
import type { CalibrationSummary } from "../src/pipeline/quantize-layer.ts";
import type { ModelInput } from "./model-input.ts";
import type { HeatmapView } from "../src/quant/heatmap.ts";
import type { TensorHeatmap } from "../src/pipeline/heatmap-tensor.ts";
import type { WeightInspection } from "../src/pipeline/inspect-weight.ts";

export type { HeatmapPanel, TensorHeatmap } from "../src/pipeline/heatmap-tensor.ts";
export type { WeightInspection, WeightUnderFormat } from "../src/pipeline/inspect-weight.ts";

export type { CalibrationKind, FormatFailure, FormatResult, OutputError, RanOn } from "../src/pipeline/quantize-tensor.ts";
export type { CalibrationSummary } from "../src/pipeline/quantize-layer.ts";
export type { ModelCell, ModelProgress, StoredSize, TensorResults } from "../src/pipeline/quantize-model.ts";

/** One tensor of one opened model. */
export interface TensorRef {
  /** The page's number for the open that produced the model: a new number means other sources. */
  modelId: number;
  input: ModelInput;
  tensor: string;
}

export interface QuantizeRequest {
  /** The page's number for this job; cancel(jobId) stops it. */
  jobId: number;
  tensor: TensorRef;
  /** Format ids or aliases (src/quant/registry.ts), or calibrated settings ("gptq4-g128-act", src/quant/calibrated.ts). */
  formats: string[];
  /** Return each format's packed bytes too (default: metrics only). */
  includeBytes?: boolean;
  /** llama.cpp importance matrix: one weight per column. */
  imatrix?: Float32Array;
}

export interface QuantizeProgressEvent {
  jobId: number;
  /** The format working right now. */
  format: string;
  doneBytes: number;
  totalBytes: number;
}

export interface QuantizeReport {
  jobId: number;
  tensor: string;
  dtype: string;
  shape: MatrixShape;
  /** The device the job had: the WebGPU adapter, or why there was none. Each result says where it ran. */
  device: GpuStatus;
  results: FormatResult[];
  /** The activations the output errors used (the model run, or synthetic with the reason); undefined when none. */
  calibration?: CalibrationSummary;
}

/** One opened model (a whole-model run or its cached results). */
export type ModelRef = Omit<TensorRef, "tensor">;

export interface ModelRunRequest {
  /** The page's number for this job; cancel(jobId) stops it. */
  jobId: number;
  model: ModelRef;
  /** Format ids or aliases. */
  formats: string[];
  /** Use results kept from earlier runs of the same file (default true); false computes everything again. */
  reuseCached?: boolean;
}

/** What a whole-model run tells the page as it goes: each tensor's row when it is done, and the progress. */
export type ModelRunEvent =
  | { kind: "tensor"; jobId: number; row: TensorResults }
  | { kind: "progress"; jobId: number; progress: ModelProgress };

export interface ModelRunReport {
  jobId: number;
  /** Format ids, in the run's order (the columns). */
  formats: string[];
  tensors: number;
  computedCells: number;
  cachedCells: number;
  device: GpuStatus;
  /** Why results are not kept (no IndexedDB, or saving failed: quota...); undefined when they are. */
  cacheProblem?: string;
  /** Where the output errors' activations come from. */
  calibration: { source: "model" | "file" | "synthetic"; label: string };
}

/**
 * What GPTQ / AWQ and the output errors of an opened model calibrate on: the model run on the lab's bundled
 * calibration text (the default), on a text of the user's, or raw activation files (float32 [tokens, in],
 * named after their layer; src/pipeline/model-calibration.ts).
 */
export type CalibrationChoice =
  | { kind: "bundled" }
  | { kind: "text"; name: string; text: string }
  /** `selected`: the tensor shown, which a file named after no layer feeds. */
  | { kind: "files"; files: File[]; selected?: string };

/** The calibration a choice gave, as the page shows it. */
export interface CalibrationChosen {
  source: "bundled" | "model" | "file";
  label: string;
}

/** A model's results as the cache holds them: the last run's formats and the tensors it has every cell of. */
export interface CachedModelResults {
  formats: string[];
  /** In the model's tensor order. */
  rows: TensorResults[];
  /** The model's quantizable tensors: more than rows.length when the last run was cancelled. */
  tensors: number;
  /** The activations that run measured its output errors on. */
  calibration: { source: "model" | "file" | "synthetic"; label: string };
}

/** A format as the picker shows it. */
/** A picker's family: the registry's, or GPTQ / AWQ / AWQ+GPTQ settings. */
export type ChoiceFamily = FormatFamily | "calibrated";

export interface FormatChoice {
  id: string;
  family: ChoiceFamily;
  description: string;
  /** Exact bits per weight on the tensor asked about (scales, minimums and zero points counted). */
  bitsPerWeight: number;
  /** Why the tensor's rows do not fit, with llama.cpp's fallback; undefined when they do. */
  rowLengthProblem?: { reason: string; fallback?: string };
}

export interface HeatmapRequest {
  /** The page's number for this job; cancel(jobId) stops it. */
  jobId: number;
  tensor: TensorRef;
  /** Format ids or aliases (up to a few: each is a panel). */
  formats: string[];
  /** The rectangle of the tensor shown, in weights. */
  view: HeatmapView;
  /** The canvas size in cells (pixels): the view is pooled down to at most this many. */
  canvas: { cols: number; rows: number };
}

export interface WeightRequest {
  tensor: TensorRef;
  formats: string[];
  row: number;
  col: number;
}

export interface GgufExportRequest {
  /** The page's number for this job; cancel(jobId) stops it. */
  jobId: number;
  model: ModelRef;
  /** A llama-quantize file type: F32, F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, Q4_0... */
  fileType: string;
  /**
   * Where to write: a file the user picked (File System Access API; written through a swap file, so a
   * failed or cancelled export leaves the target untouched). Without one the file comes back as a Blob
   * for a download.
   */
  target?: FileSystemFileHandle;
}

export interface GgufExportReport {
  jobId: number;
  fileType: string;
  bytes: number;
  tensors: number;
  /** Tensors the file type's rule could not take, and what they were written as. */
  fallbacks: { tensor: string; wanted: string; written: string }[];
  /** The file, when no target was given. */
  blob?: Blob;
}

export interface GgufExportProgress {
  jobId: number;
  done: number;
  total: number;
  tensor: string;
}

/** What a checkpoint export writes: GPTQ / AWQ safetensors folders, or the lab's ONNX graph at a precision. */
export type CheckpointTarget =
  | { kind: "gptq" | "awq"; bits: number; group: number; sym: boolean; actOrder: boolean }
  | { kind: "onnx"; precision: string };

export interface CheckpointExportRequest {
  jobId: number;
  model: ModelRef;
  target: CheckpointTarget;
}

export interface CheckpointExportReport {
  jobId: number;
  /** The files, in the order to write them (a folder's contents, or the one .onnx file). */
  files: { name: string; blob: Blob }[];
  bytes: number;
  /** GPTQ/AWQ: layers packed, and those kept unquantized with the reason. */
  packed: number;
  unconverted: { module: string; reason: string }[];
  /** ONNX: tensors that took a fallback format. */
  fallbacks: { tensor: string; to: string }[];
}

export interface QuantWorkerApi {
  /** Every format of the registry, in registry order, then the ready-made calibrated settings, with their bits per weight on this tensor's shape. */
  formats(tensor: { shape: number[]; params: number }): Promise<FormatChoice[]>;
  /** A calibrated setting by id ("gptq3-g64-act-sym") as a choice on this tensor's shape; rejects for an id outside the grammar. */
  calibratedChoice(id: string, tensor: { shape: number[]; params: number }): Promise<FormatChoice>;
  /**
   * Quantizes one tensor with each format: on the worker's WebGPU device where a kernel exists, else on
   * the CPU reference. Rejects with a CancelledError when cancelled; `onProgress` (a Comlink.proxy)
   * hears about every few percent.
   */
  quantize(request: QuantizeRequest, onProgress?: (event: QuantizeProgressEvent) => void): Promise<QuantizeReport>;
  /**
   * The heatmap panels of a view of one tensor: the weights, then each format (or why it cannot take the
   * tensor). `onProgress` (a Comlink.proxy) hears the fraction done.
   */
  heatmap(request: HeatmapRequest, onProgress?: (done: number) => void): Promise<TensorHeatmap>;
  /** One weight under each format (the hover): CPU reference values, block scale and minimum. */
  inspectWeight(request: WeightRequest): Promise<WeightInspection>;
  /**
   * Every floating-point tensor of the model through each format, tensor by tensor; `onEvent` (a
   * Comlink.proxy) hears each tensor's row as soon as it is done, and the progress. Cells kept from an
   * earlier run of the same file are handed over at once; new ones are kept (IndexedDB) for next time.
   * Rejects with a CancelledError when cancelled.
   */
  quantizeModel(request: ModelRunRequest, onEvent?: (event: ModelRunEvent) => void): Promise<ModelRunReport>;
  /** The cached results of the model's last run, or undefined when there are none. */
  cachedModelResults(model: ModelRef): Promise<CachedModelResults | undefined>;
  /**
   * Sets what the opened model calibrates on from now on (the views' GPTQ / AWQ and output errors); rejects
   * with the reason when the choice cannot be used (the previous calibration stays).
   */
  chooseCalibration(model: ModelRef, choice: CalibrationChoice): Promise<CalibrationChosen>;
  /**
   * Writes the opened model as a GGUF file (src/pipeline/export-gguf.ts): needs its config.json and
   * tokenizer.json (picked with the shards, or next to the URL); a model GGUF cannot express fails before
   * anything is written.
   */
  exportGguf(request: GgufExportRequest, onProgress?: (progress: GgufExportProgress) => void): Promise<GgufExportReport>;
  /**
   * GPTQ / AWQ checkpoint files or the ONNX graph of the current model (with its config.json and tokenizer),
   * calibrated where needed on the model's own run (onnxruntime-web, wasm) over the bundled calibration text.
   * `onStage` hears "calibrating", "quantizing", "packing".
   */
  exportCheckpoint(request: CheckpointExportRequest, onStage?: (stage: string) => void): Promise<CheckpointExportReport>;
  /** Stops a job (nothing happens when it has finished already). */
  cancel(jobId: number): Promise<void>;
  /** The WebGPU adapter the worker uses, or why it runs everything on the CPU. */
  gpuStatus(): Promise<GpuStatus>;
}
