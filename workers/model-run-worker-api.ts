/**
 * What the model-run worker offers the page (both sides import this file). Plain data only; errors cross as
 * WireErrors (workers/wire-error.ts).
 */
import type { ChatMessage } from "../src/model/chat-template.ts";
import type { EvaluationReport, PrecisionGeneration } from "../src/model/evaluate.ts";
import type { Sampling } from "../src/model/sampling.ts";
import type { ExecutionProvider } from "../src/model/session.ts";

export interface RunProgress {
  done: number;
  total: number;
  precision: string;
  /** Within an evaluation: tokens of the text run so far at this precision, of all. */
  tokensDone?: number;
  tokens?: number;
}

export interface RunOptions {
  precisions: string[];
  /** The provider asked for; WebGPU falls back to wasm when the browser has no adapter. */
  executionProvider: ExecutionProvider;
}

export interface EvaluationResult extends EvaluationReport {
  /** The text evaluated, for showing. */
  text: string;
  /** Set when WebGPU was asked for but wasm ran instead, and why. */
  fallbackReason?: string;
}

export interface GenerationRow extends PrecisionGeneration {
  /** Each generated id's piece, for showing where the run departs. */
  pieces: string[];
  text: string;
}

export interface GenerationResult {
  executionProvider: ExecutionProvider;
  rows: GenerationRow[];
  fallbackReason?: string;
}

export interface ModelRunWorkerApi {
  /** Loads the bundled stories260K (public/models/stories260K); returns its name and evaluation text. */
  loadBundled(): Promise<{ name: string; evalText: string; calibrationText: string }>;
  /**
   * Loads a model from the files of its folder (config.json, the safetensors or shards with their index,
   * tokenizer.json, tokenizer_config.json, generation_config.json). On bad input the error names what is wrong
   * and the model loaded before stays.
   */
  loadFiles(files: File[]): Promise<{ name: string }>;
  evaluate(text: string, options: RunOptions, onProgress?: (p: RunProgress) => void): Promise<EvaluationResult>;
  generate(prompt: string, tokens: number, sampling: Sampling, options: RunOptions, onProgress?: (p: RunProgress) => void): Promise<GenerationResult>;
  /** The chat rendered with the model's template (ChatML when it has none), as the model receives it. */
  renderChat(messages: ChatMessage[]): Promise<string>;
  /**
   * Stops the run in flight at its next chunk of tokens (evaluation) or token (generation); its run rejects
   * with a CancelledError and its sessions are released. A single onnxruntime run cannot be interrupted: the
   * page ends the worker when the run does not stop soon after (model-run-panel.ts).
   */
  cancel(): Promise<void>;
  /** onnxruntime sessions open in the worker (none once a run has ended or was cancelled). */
  liveSessions(): Promise<number>;
}
