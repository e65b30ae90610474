/**
 * Real calibration for the views and `quantlab quantize`, from one of two sources:
 *  - the opened model (config.json + tokenizer) run once in f32 on a calibration text (the lab's bundled
 *    calibration.txt, never the evaluation text, or the user's own), with every linear layer's input as an
 *    output of the graph (collectCalibration);
 *  - raw activation files, float32 [tokens, in] little-endian, one per layer input, named after the tensor
 *    (model.layers.0.self_attn.q_proj.weight.f32) or as ../shared's reference dumps are (layers.N.attn_in
 *    for q/k/v, mlp_in for gate/up, o_proj_in, down_proj_in).
 * Each layer's tokens are split: the first three quarters calibrate, the last quarter is held out, so the
 * tables show both errors (calibration is not evaluation). Layers reading the same input (q/k/v, gate/up)
 * compute their statistics once.
 */
import { ModelInputError } from "../model/architecture.ts";
import { collectCalibration, type RunSettings } from "../model/evaluate.ts";
import type { LoadedDecoder } from "../model/load.ts";
import { assertFiniteActivations } from "../quant/hessian.ts";
import { QuantInputError } from "../quant/errors.ts";
import { activationCalibration, type LayerCalibration } from "./calibrated-tensor.ts";
import type { QuantizeLayerOptions } from "./quantize-layer.ts";

export interface ModelCalibration {
  source: "model" | "file";
  /** "model run on calibration.txt, 512 tokens". */
  label: string;
  /** Identifies the activations (which text or files, by content): results computed on others are not reused. */
  key: string;
  tokens: number;
  /** Why a tensor has no activations here (it is in the synthetic label of such tensors). */
  missing: string;
  /** The calibration of the linear layer whose weight is `tensor` (cols inputs), or undefined when it is none. */
  layer(tensor: string, cols: number): LayerCalibration | undefined;
}

/** The share of the text's tokens held out of the calibration. */
export const HELD_OUT_SHARE = 0.25;

/** Runs `model` on `text` and keeps every linear layer's inputs (see the module comment). */
export async function modelCalibration(
  model: LoadedDecoder,
  text: { name: string; text: string },
  settings: Pick<RunSettings, "ort" | "executionProvider">,
): Promise<ModelCalibration> {
  if (!model.tokenizer) throw new ModelInputError("the model has no tokenizer.json: its calibration text cannot be tokenized");
  const ids = model.tokenizer.encode(text.text).slice(0, model.arch.maxPositionEmbeddings);
  if (ids.length < 2) throw new ModelInputError(`${text.name} gives fewer than two tokens: nothing to calibrate on`);
  const inputs = await collectCalibration(model, ids, settings);
  const what = `model run on ${text.name}`;
  const label = `${what}, ${ids.length} tokens`;
  return {
    source: "model",
    label,
    key: `model:${text.name}:${ids.length}:${fingerprint(ids)}`,
    tokens: ids.length,
    missing: `not a linear layer of the ${label}`,
    layer: layerCalibrations((tensor, cols) => {
      const x = inputs.get(tensor);
      return x && x.length === ids.length * cols ? x : undefined;
    }, "model", what),
  };
}

/** Memoized per input array: layers that read the same activations share their statistics. */
function layerCalibrations(
  inputOf: (tensor: string, cols: number) => Float32Array | undefined,
  source: "model" | "file",
  what: string | ((tensor: string) => string),
): ModelCalibration["layer"] {
  const byInput = new Map<Float32Array, LayerCalibration>();
  return (tensor, cols) => {
    const x = inputOf(tensor, cols);
    if (!x) return undefined;
    let cal = byInput.get(x);
    if (!cal) {
      cal = activationCalibration(x, cols, source, typeof what === "string" ? what : what(tensor), HELD_OUT_SHARE);
      byInput.set(x, cal);
    }
    return cal;
  };
}

/** A 32-bit FNV-1a of numbers or bytes, in hex: enough to tell two calibration inputs apart in a cache key. */
function fingerprint(values: ArrayLike<number>): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < values.length; i++) h = Math.imul(h ^ (values[i]! & 0xffffffff), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** The tensors activation files can calibrate: the matrices inside a model's numbered blocks (layers.N, blk.N, h.N). */
export function calibrationTargets(tensors: readonly { name: string; shape: readonly number[] }[]): { name: string; cols: number }[] {
  return tensors.filter((t) => t.shape.length === 2 && /(^|\.)(layers|blk|h)\.\d+\./.test(t.name)).map((t) => ({ name: t.name, cols: t.shape[1]! }));
}

/** One raw activation file: its name and its bytes (float32 [tokens, in], little-endian). */
export interface ActivationFile {
  name: string;
  bytes: Uint8Array;
}

/** The linear layers' weight names an activation file stands for (see the module comment), given its name. */
export function activationFileTensors(fileName: string, tensorNames: readonly string[]): string[] {
  const stem = fileName.replace(/^.*[\\/]/, "").replace(/\.f32$/i, "");
  const exact = tensorNames.filter((n) => n === stem || n === `${stem}.weight`);
  if (exact.length > 0) return exact;
  const dump = /^(?:model\.)?layers\.(\d+)\.(attn_in|mlp_in|o_proj_in|down_proj_in)$/.exec(stem);
  if (!dump) return [];
  const p = `model.layers.${dump[1]}.`;
  const readers: Record<string, string[]> = {
    attn_in: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    mlp_in: ["mlp.gate_proj", "mlp.up_proj"],
    o_proj_in: ["self_attn.o_proj"],
    down_proj_in: ["mlp.down_proj"],
  };
  return readers[dump[2]!]!.map((r) => `${p}${r}.weight`).filter((n) => tensorNames.includes(n));
}

/**
 * Calibration from raw activation files for the model's linear layers (`tensors`: weight name and input width).
 * Every file must name a layer and hold whole finite tokens of its input width; otherwise QuantInputError says
 * which file and why, before anything is computed.
 */
export function fileCalibration(files: readonly ActivationFile[], tensors: readonly { name: string; cols: number }[]): ModelCalibration {
  if (files.length === 0) throw new QuantInputError("calibration", "no activation file given");
  const names = tensors.map((t) => t.name);
  const inputs = new Map<string, { x: Float32Array; file: string }>();
  const tokenCounts = new Set<number>();
  for (const f of files) {
    const targets = activationFileTensors(f.name, names);
    if (targets.length === 0) {
      throw new QuantInputError(
        "calibration",
        `${f.name} names no linear layer of the model: name each file after its layer's weight (e.g. ${names[0] ?? "model.layers.0.self_attn.q_proj.weight"}.f32) or as layers.N.attn_in / mlp_in / o_proj_in / down_proj_in.f32`,
      );
    }
    if (f.bytes.byteLength % 4 !== 0) throw new QuantInputError("calibration", `${f.name}: ${f.bytes.byteLength} bytes are not whole float32 values`);
    const x = new Float32Array(f.bytes.byteLength / 4);
    new Uint8Array(x.buffer).set(f.bytes);
    const cols = tensors.find((t) => t.name === targets[0])!.cols;
    if (x.length === 0 || x.length % cols !== 0) {
      throw new QuantInputError("calibration", `${f.name}: ${x.length} values are not whole tokens of ${cols} (the input width of ${targets[0]})`);
    }
    try {
      assertFiniteActivations(x, cols, 0);
    } catch (e) {
      if (e instanceof QuantInputError) throw new QuantInputError("calibration", `${f.name}: ${e.detail}`);
      throw e;
    }
    for (const t of targets) {
      const previous = inputs.get(t);
      if (previous) throw new QuantInputError("calibration", `${f.name} and ${previous.file} both hold the inputs of ${t}`);
      inputs.set(t, { x, file: f.name });
    }
    tokenCounts.add(x.length / cols);
  }
  const counts = [...tokenCounts].sort((a, b) => a - b);
  const tokens = counts.length === 1 ? `${counts[0]} tokens` : `${counts[0]}-${counts[counts.length - 1]} tokens`;
  const label = `activation files (${files.length} file${files.length === 1 ? "" : "s"} for ${inputs.size} of ${tensors.length} linear layers, ${tokens})`;
  return {
    source: "file",
    label,
    key: `files:${files.map((f) => `${f.name}:${f.bytes.byteLength}:${fingerprint(f.bytes)}`).join(",")}`,
    tokens: counts[counts.length - 1]!,
    missing: "no activation file for this layer",
    layer: layerCalibrations((tensor, cols) => {
      const input = inputs.get(tensor)?.x;
      return input && input.length % cols === 0 ? input : undefined;
    }, "file", (tensor) => `activations from ${inputs.get(tensor)!.file}`),
  };
}

/** A model's calibration, or why there is none (a lone shard, no tokenizer, ...). */
export type CalibrationOrWhy = { model: ModelCalibration } | { why: string };

/** The options quantizeLayer / quantizeModel take for it: each layer's real inputs, else synthetic ones with the reason. */
export function calibrationOptions(c: CalibrationOrWhy): Pick<QuantizeLayerOptions, "calibration" | "syntheticWhy"> {
  if ("why" in c) return { syntheticWhy: c.why };
  return { calibration: async (tensor, shape) => c.model.layer(tensor.name, shape.cols), syntheticWhy: c.model.missing };
}
