/**
 * The quantization worker's calibration of an opened model: when the open came with config.json and
 * tokenizer.json (picked with the shards, or next to the URL), the model is run once in f32 on the lab's
 * bundled calibration text (onnxruntime-web, wasm: small, and off the worker's WebGPU device) and every
 * linear layer calibrates on its real inputs (src/pipeline/model-calibration.ts). Otherwise (a lone shard,
 * the synthetic demo, a model the decoder builder does not take) the views use synthetic activations, and
 * the reason goes into their label. The user may choose another source for the opened model
 * (chooseCalibration): a text of their own for the model run, or raw activation files.
 */
import { errorText } from "../src/common/error-text.ts";
import type { OpenedModel } from "../src/formats/model.ts";
import { ModelInputError } from "../src/model/architecture.ts";
import { loadDecoder, type ModelTextFiles } from "../src/model/load.ts";
import { calibrationTargets, fileCalibration, modelCalibration, type CalibrationOrWhy } from "../src/pipeline/model-calibration.ts";
import { BUNDLED_MODEL, fetchText } from "./bundled.ts";
import type { ModelInput } from "./model-input.ts";
import type { CalibrationChoice, CalibrationChosen, ModelRef } from "./quant-worker-api.ts";
import { inputSidecarText } from "./side-files.ts";

export type WorkerCalibration = CalibrationOrWhy;

let current: { modelId: number; calibration: Promise<WorkerCalibration> } | null = null;
/** The user's choice for the opened model (none: the bundled calibration text). */
let chosen: { modelId: number; calibration: WorkerCalibration } | null = null;

/** Models above this (float32 bytes) are not loaded whole to be run for calibration in the worker. */
const MAX_CALIBRATION_MODEL_BYTES = 1 << 30;

/**
 * The opened model's calibration (computed once per open), or why there is none. Only requests with a GPTQ /
 * AWQ setting run the model (`needed`); the others measure no output errors.
 */
export async function calibrationOf(ref: ModelRef, model: OpenedModel, needed: boolean): Promise<WorkerCalibration> {
  if (chosen?.modelId === ref.modelId) return chosen.calibration;
  if (!needed && current?.modelId !== ref.modelId) return { why: "no GPTQ / AWQ setting asked for" };
  const params = model.tensors.reduce((sum, t) => sum + t.params, 0);
  if (params * 4 > MAX_CALIBRATION_MODEL_BYTES) return { why: `the model (${params} parameters) is too large to run for calibration in the lab; use quantlab quantize` };
  if (current?.modelId !== ref.modelId) current = { modelId: ref.modelId, calibration: build(ref.input, model) };
  return current.calibration;
}

/**
 * Makes `choice` the opened model's calibration and says what it is; throws (QuantInputError, ModelInputError)
 * with the reason when it cannot be used, keeping the previous one.
 */
export async function chooseCalibration(ref: ModelRef, model: OpenedModel, choice: CalibrationChoice): Promise<CalibrationChosen> {
  if (choice.kind === "bundled") {
    if (chosen?.modelId === ref.modelId) chosen = null;
    return { source: "bundled", label: "model run on the lab's calibration.txt (synthetic activations when the model cannot run)" };
  }
  let calibration: WorkerCalibration;
  if (choice.kind === "files") {
    // Read when a layer needs them (a folder of activations may be larger than memory).
    const files = choice.files.map((f) => ({ name: f.name, size: f.size, read: async (start?: number, end?: number) => new Uint8Array(await f.slice(start, end).arrayBuffer()) }));
    calibration = { model: await fileCalibration(files, calibrationTargets(model.tensors), choice.selected) };
  } else {
    calibration = await build(ref.input, model, choice);
    if ("why" in calibration) throw new ModelInputError(`${choice.name} cannot calibrate this model: ${calibration.why}`);
  }
  chosen = { modelId: ref.modelId, calibration };
  return { source: calibration.model.source, label: calibration.model.label };
}

async function build(input: ModelInput, opened: OpenedModel, text?: { name: string; text: string }): Promise<WorkerCalibration> {
  const [config, tokenizer, tokenizerConfig] = await Promise.all(
    ["config.json", "tokenizer.json", "tokenizer_config.json"].map((name) => inputSidecarText(input, name).catch(() => undefined)),
  );
  if (config === undefined || tokenizer === undefined) return { why: "no model to run: config.json and tokenizer.json are not with the weights" };
  try {
    const texts: ModelTextFiles = { config, tokenizer };
    if (tokenizerConfig !== undefined) texts.tokenizerConfig = tokenizerConfig;
    const decoder = await loadDecoder(texts, opened);
    const ort = await import("onnxruntime-web/webgpu");
    ort.env.wasm.numThreads = 1;
    const calibrationText = text ?? { name: "calibration.txt", text: await fetchText(new URL("calibration.txt", BUNDLED_MODEL)) };
    return { model: await modelCalibration(decoder, calibrationText, { ort, executionProvider: "wasm" }) };
  } catch (e) {
    return { why: `the model could not be run for calibration (${errorText(e)})` };
  }
}
