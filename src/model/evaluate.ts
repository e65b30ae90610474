/**
 * The comparisons the lab and `quantlab eval` show: one session per precision on the same ids, each
 * against the f32 run (perplexity, KL divergence, top-1 agreement, weight memory, fallbacks), and the same
 * prompt continued at each precision with the first token where each departs from f32. Sessions are
 * released as soon as their numbers are taken.
 */
import { buildDecoderGraph, CALIBRATION_POINTS, calibrationOutputName, type DecoderGraphOptions, type Float16Mode } from "./decoder-graph.ts";
import { ModelInputError, type DecoderArchitecture } from "./architecture.ts";
import { formatBytes } from "../common/format.ts";
import { encodeOnnxModel } from "./onnx-proto.ts";
import { calibratedMethod, FULL_PRECISION, prepareWeights, type PrepareOptions, type PreparedWeights, type TensorFallback } from "./precision.ts";
import { compareLogits, firstDeparture, type Comparison } from "./quality.ts";
import { tokenPicker, type Sampling } from "./sampling.ts";
import { DecoderSession, float16ComputeNote, type ExecutionProvider, type OrtModule } from "./session.ts";
import type { DecoderWeights } from "./weights.ts";

export interface DecoderModel {
  arch: DecoderArchitecture;
  weights: DecoderWeights;
}

export interface RunSettings {
  ort: OrtModule;
  executionProvider: ExecutionProvider;
  /** How the provider runs the f16 precision (float16ModeFor); "cast" (fp16 weights, fp32 compute) by default. */
  float16?: Float16Mode;
  signal?: AbortSignal;
  /** A calibration text's ids, for gptq/awq precisions (never the evaluation text, or their scores are flattered). */
  calibrationIds?: readonly number[];
  /** Called before each precision starts: done of total, and its name. */
  onProgress?: (done: number, total: number, precision: string) => void;
  /** Called after each chunk of an evaluation: tokens done of total, in the current precision. */
  onStep?: (tokensDone: number, tokens: number) => void;
  /** Tokens per run when evaluating (EVAL_CHUNK_TOKENS by default). */
  chunkTokens?: number;
}

/**
 * Evaluation runs the text in chunks of this many tokens, the key/value cache carrying the context (the
 * logits are the one pass's, decoder.test.ts), so a cancel is seen between chunks: one run cannot be
 * interrupted, and on a slow provider a whole text is a long run.
 */
export const EVAL_CHUNK_TOKENS = 128;

/** The logits of `ids` [ids.length, V], run in chunks with the signal checked between them. */
export async function chunkedLogits(session: DecoderSession, ids: readonly number[], settings: Pick<RunSettings, "signal" | "onStep" | "chunkTokens">): Promise<Float32Array> {
  const V = session.arch.vocabSize;
  const chunk = settings.chunkTokens ?? EVAL_CHUNK_TOKENS;
  const logits = new Float32Array(ids.length * V);
  let cache = session.emptyCache();
  for (let at = 0; at < ids.length; at += chunk) {
    const step = await session.forward(ids.slice(at, at + chunk), cache, settings.signal);
    logits.set(step.logits, at * V);
    cache = step.cache;
    settings.onStep?.(Math.min(at + chunk, ids.length), ids.length);
  }
  return logits;
}

/** The ONNX model (bytes) the lab runs for `model` at `precision`: what openPrecision loads and the ONNX export writes. */
export function precisionModel(
  model: DecoderModel,
  precision: string,
  graph: DecoderGraphOptions = {},
  options: PrepareOptions = {},
): { prepared: PreparedWeights; bytes: Uint8Array } {
  const prepared = prepareWeights(model.weights, precision, options);
  const onnx = buildDecoderGraph(model.arch, prepared, graph);
  const weightBytes = onnx.graph.initializers.reduce((sum, t) => sum + t.raw.length, 0);
  if (weightBytes >= ONNX_PROTOBUF_LIMIT) {
    throw new ModelInputError(
      `at ${precision} the graph holds ${formatBytes(weightBytes)} of weights, above the 2 GB a single ONNX protobuf can hold (weights as external data are not written yet)`,
    );
  }
  return { prepared, bytes: encodeOnnxModel(onnx) };
}

/** Protobuf messages are limited to 2 GiB: a model with inline weights must stay below it. */
const ONNX_PROTOBUF_LIMIT = 2 ** 31 - 1;

/** A session of `model` at `precision`, with what the precision did to the weights. */
export async function openPrecision(
  model: DecoderModel,
  precision: string,
  settings: Pick<RunSettings, "ort" | "executionProvider" | "float16">,
  graph: DecoderGraphOptions = {},
  calibration?: Map<string, Float32Array>,
): Promise<{ session: DecoderSession; prepared: PreparedWeights }> {
  const { prepared, bytes } = precisionModel(model, precision, { float16: settings.float16 ?? "cast", ...graph }, calibration ? { calibration } : {});
  const session = await DecoderSession.create(settings.ort, bytes, model.arch, settings.executionProvider);
  return { session, prepared };
}

export interface PrecisionEvaluation extends Comparison {
  name: string;
  weightsBytes: number;
  fallbacks: TensorFallback[];
  /** What the precision computes in on this provider, where that is not plain fp32 (the f16 precision). */
  compute?: string;
}

/** The compute note of a precision whose weights include fp16 ones (float16ComputeNote), else undefined. */
function computeNote(prepared: PreparedWeights, settings: Pick<RunSettings, "float16">): string | undefined {
  return prepared.precision === "f16" ? float16ComputeNote(settings.float16 ?? "cast") : undefined;
}

export interface EvaluationReport {
  /** Ids evaluated (the first is only context). */
  tokens: number;
  executionProvider: ExecutionProvider;
  /** How the f16 precision ran on it. */
  float16: Float16Mode;
  /** f32 first, then the others in the order asked. */
  precisions: PrecisionEvaluation[];
}

/** The precisions to run: f32 first (the reference), each name once. */
export function withReference(precisions: readonly string[]): string[] {
  const rest = precisions.filter((p) => p !== FULL_PRECISION && p !== "fp32");
  return [FULL_PRECISION, ...new Set(rest)];
}

/** The linear layers' inputs on settings.calibrationIds when a precision needs them (gptq/awq), else undefined. */
async function calibrationIfNeeded(model: DecoderModel, names: readonly string[], settings: RunSettings): Promise<Map<string, Float32Array> | undefined> {
  const needing = names.filter((n) => calibratedMethod(n));
  if (needing.length === 0) return undefined;
  if (!settings.calibrationIds || settings.calibrationIds.length < 2) throw new ModelInputError(`${needing.join(", ")} need a calibration text`);
  return collectCalibration(model, settings.calibrationIds, settings);
}

/** Evaluates `ids` in one causal pass at each precision (they must fit the model's context). */
export async function evaluatePrecisions(model: DecoderModel, ids: readonly number[], precisions: readonly string[], settings: RunSettings): Promise<EvaluationReport> {
  if (ids.length < 2) throw new RangeError("the evaluation text needs at least two tokens");
  const names = withReference(precisions);
  const V = model.arch.vocabSize;
  const calibration = await calibrationIfNeeded(model, names, settings);
  let reference: Float32Array | undefined;
  const out: PrecisionEvaluation[] = [];
  for (const [i, name] of names.entries()) {
    settings.signal?.throwIfAborted();
    settings.onProgress?.(i, names.length, name);
    const { session, prepared } = await openPrecision(model, name, settings, {}, calibration);
    try {
      const logits = await chunkedLogits(session, ids, settings);
      reference ??= logits;
      const compute = computeNote(prepared, settings);
      out.push({ name: prepared.precision, weightsBytes: prepared.weightBytes, fallbacks: prepared.fallbacks, ...(compute ? { compute } : {}), ...compareLogits(reference, logits, V, ids) });
    } finally {
      await session.release();
    }
  }
  settings.onProgress?.(names.length, names.length, "");
  return { tokens: ids.length, executionProvider: settings.executionProvider, float16: settings.float16 ?? "cast", precisions: out };
}

export interface PrecisionGeneration {
  name: string;
  ids: number[];
  /** Index (into ids) of the first token that differs from f32's, or -1. */
  departsAt: number;
}

/** The same prompt continued at each precision (f32 first), with each one's first departure from f32. */
export async function generateAcrossPrecisions(
  model: DecoderModel,
  prompt: readonly number[],
  count: number,
  sampling: Sampling,
  precisions: readonly string[],
  settings: RunSettings & { stopIds?: readonly number[] },
): Promise<PrecisionGeneration[]> {
  const names = withReference(precisions);
  const calibration = await calibrationIfNeeded(model, names, settings);
  const out: PrecisionGeneration[] = [];
  for (const [i, name] of names.entries()) {
    settings.signal?.throwIfAborted();
    settings.onProgress?.(i, names.length, name);
    const { session, prepared } = await openPrecision(model, name, settings, {}, calibration);
    try {
      // A fresh picker per precision: sampled runs share the seed, so they differ only where the model does.
      const ids = await session.generate(prompt, count, tokenPicker(sampling), settings.stopIds, settings.signal);
      out.push({ name: prepared.precision, ids, departsAt: out.length === 0 ? -1 : firstDeparture(out[0]!.ids, ids) });
    } finally {
      await session.release();
    }
  }
  settings.onProgress?.(names.length, names.length, "");
  return out;
}

/** Which linear layers read each calibration output (the q/k/v projections share their input, as do gate/up). */
const CALIBRATION_CONSUMERS: Record<(typeof CALIBRATION_POINTS)[number], string[]> = {
  attn_in: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
  o_proj_in: ["self_attn.o_proj"],
  mlp_in: ["mlp.gate_proj", "mlp.up_proj"],
  down_proj_in: ["mlp.down_proj"],
};

/**
 * The inputs every linear layer sees on `ids` ([tokens, in_features] float32, keyed by the layer's weight
 * name), from one f32 pass: what GPTQ and AWQ calibrate on. Use a text other than the evaluation text.
 */
export async function collectCalibration(model: DecoderModel, ids: readonly number[], settings: Pick<RunSettings, "ort" | "executionProvider" | "signal">): Promise<Map<string, Float32Array>> {
  const { session } = await openPrecision(model, FULL_PRECISION, settings, { calibrationOutputs: true });
  try {
    const { calibration } = await session.forward(ids, undefined, settings.signal);
    const out = new Map<string, Float32Array>();
    for (let l = 0; l < model.arch.numLayers; l++) {
      for (const point of CALIBRATION_POINTS) {
        const values = calibration.get(calibrationOutputName(l, point))!;
        for (const linear of CALIBRATION_CONSUMERS[point]) out.set(`model.layers.${l}.${linear}.weight`, values);
      }
    }
    return out;
  } finally {
    await session.release();
  }
}
