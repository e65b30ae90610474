/**
 * What the model worker offers the page, and how its errors cross the worker boundary.
 * Both sides import this file: the worker implements ModelWorkerApi, the page calls it through comlink.
 * Errors cross the boundary as WireErrors (workers/wire-error.ts).
 */
import type { TensorRow, Totals } from "../src/formats/catalog.ts";
import type { GpuStatus } from "../src/gpu/device.ts";
import type { TensorStatistics } from "../src/quant/stats.ts";

/** The model the worker holds, as the page shows it: plain data only (no sources). */
export interface ModelSummary {
  /** Display name: the file, the index, or the URL. */
  name: string;
  /** Every file (or URL) the model's tensors come from. */
  files: string[];
  metadata: Record<string, string>;
  /** True for the built-in demo (metadata synthetic = "true"). */
  synthetic: boolean;
  rows: TensorRow[];
  totals: Totals;
}

export interface TensorStatsResult {
  tensor: TensorRow;
  stats: TensorStatistics;
  /** Where the statistics were computed: the WebGPU kernel (shaders/stats.wgsl) or the CPU reference. */
  computedOn: "gpu" | "cpu";
}

export interface ModelWorkerApi {
  /** Opens files the user picked or dropped: one .safetensors, several shards, or an index plus shards. */
  openFiles(files: File[]): Promise<ModelSummary>;
  /** Opens a URL with HTTP Range requests (a .safetensors, or a model.safetensors.index.json). */
  openUrl(url: string): Promise<ModelSummary>;
  /** Opens the synthetic demo shard, generated inside the worker. */
  openDemo(): Promise<ModelSummary>;
  /** The model currently held, or null before anything opened. */
  catalog(): Promise<ModelSummary | null>;
  /**
   * Streams one tensor of the current model and returns its statistics, on the GPU when there is one
   * (CPU reference otherwise); a newer call cancels an older one.
   */
  tensorStats(name: string): Promise<TensorStatsResult>;
  /** The WebGPU adapter the worker uses, or why it falls back to the CPU. */
  gpuStatus(): Promise<GpuStatus>;
}
