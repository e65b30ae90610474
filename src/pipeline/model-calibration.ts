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
import { sha256Hex } from "../common/sha256.ts";
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
  /**
   * The calibration of the linear layer whose weight is `tensor` (cols inputs), or undefined when it is none.
   * Rejects with QuantInputError when its activations cannot be used (a file holding NaN).
   */
  layer(tensor: string, cols: number): Promise<LayerCalibration | undefined>;
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
    key: `model:${text.name}:${ids.length}:${await sha256Hex(new Uint8Array(Int32Array.from(ids).buffer))}`,
    tokens: ids.length,
    missing: `not a linear layer of the ${label}`,
    layer: layerCalibrations((tensor, cols) => {
      const x = inputs.get(tensor);
      return x && x.length === ids.length * cols ? { id: x, read: async () => x } : undefined;
    }, "model", what),
  };
}

/**
 * Each layer's calibration from its input activations, computed when first asked for. Layers reading the
 * same input (q/k/v, gate/up) share one; only the last few are kept, so a whole-model run over activation
 * files holds a few layers' statistics at a time, not the model's.
 */
function layerCalibrations(
  inputOf: (tensor: string, cols: number) => { id: unknown; read: () => Promise<Float32Array> } | undefined,
  source: "model" | "file",
  what: string | ((tensor: string) => string),
): ModelCalibration["layer"] {
  const recent: { id: unknown; cal: Promise<LayerCalibration> }[] = [];
  return async (tensor, cols) => {
    const input = inputOf(tensor, cols);
    if (!input) return undefined;
    let entry = recent.find((r) => r.id === input.id);
    if (!entry) {
      const label = typeof what === "string" ? what : what(tensor);
      entry = { id: input.id, cal: input.read().then((x) => activationCalibration(x, cols, source, label, HELD_OUT_SHARE)) };
      recent.unshift(entry);
      recent.splice(RECENT_LAYER_INPUTS);
    }
    return entry.cal;
  };
}

/** Layer inputs whose statistics are kept (a block's four: attention, o, mlp, down). */
const RECENT_LAYER_INPUTS = 4;

/** The tensors activation files can calibrate: the matrices inside a model's numbered blocks (layers.N, blk.N, h.N). */
export function calibrationTargets(tensors: readonly { name: string; shape: readonly number[] }[]): { name: string; cols: number }[] {
  return tensors.filter((t) => t.shape.length === 2 && /(^|\.)(layers|blk|h)\.\d+\./.test(t.name)).map((t) => ({ name: t.name, cols: t.shape[1]! }));
}

/** One raw activation file (float32 [tokens, in], little-endian): its name, size and a way to read it. */
export interface ActivationFile {
  name: string;
  size: number;
  /** The bytes from `start` to `end` (the whole file by default). */
  read(start?: number, end?: number): Promise<Uint8Array>;
}

/** An activation file over bytes already in memory. */
export function activationFileOf(name: string, bytes: Uint8Array): ActivationFile {
  return { name, size: bytes.byteLength, read: async (start = 0, end = bytes.byteLength) => bytes.subarray(start, end) };
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

/** Bytes of each end of a file that go into its fingerprint (hashing whole multi-GB folders would take long). */
const FINGERPRINT_SPAN = 1 << 16;

/**
 * Calibration from raw activation files for the model's linear layers (`tensors`: weight name and input width).
 * A file named after no layer feeds `unnamedFor` when given. Names and sizes are checked up front (QuantInputError says which file and why); a file is read when a layer
 * it feeds is quantized (one at a time: folders larger than memory work), and its values checked then.
 */
export async function fileCalibration(
  files: readonly ActivationFile[],
  tensors: readonly { name: string; cols: number }[],
  /** The layer a file named after none feeds (the tensor the user is looking at); without it such a file is refused. */
  unnamedFor?: string,
): Promise<ModelCalibration> {
  if (files.length === 0) throw new QuantInputError("calibration", "no activation file given");
  const names = tensors.map((t) => t.name);
  const inputs = new Map<string, ActivationFile>();
  const tokenCounts = new Set<number>();
  for (const f of files) {
    let targets = activationFileTensors(f.name, names);
    if (targets.length === 0 && unnamedFor !== undefined && names.includes(unnamedFor)) targets = [unnamedFor];
    if (targets.length === 0) {
      throw new QuantInputError(
        "calibration",
        `${f.name} names no linear layer of the model: name each file after its layer's weight (e.g. ${names[0] ?? "model.layers.0.self_attn.q_proj.weight"}.f32) or as layers.N.attn_in / mlp_in / o_proj_in / down_proj_in.f32`,
      );
    }
    if (f.size % 4 !== 0) throw new QuantInputError("calibration", `${f.name}: ${f.size} bytes are not whole float32 values`);
    const values = f.size / 4;
    const cols = tensors.find((t) => t.name === targets[0])!.cols;
    if (values === 0 || values % cols !== 0) {
      throw new QuantInputError("calibration", `${f.name}: ${values} values are not whole tokens of ${cols} (the input width of ${targets[0]})`);
    }
    for (const t of targets) {
      const previous = inputs.get(t);
      if (previous) throw new QuantInputError("calibration", `${f.name} and ${previous.name} both hold the inputs of ${t}`);
      inputs.set(t, f);
    }
    tokenCounts.add(values / cols);
  }
  const prints = await Promise.all(
    files.map(async (f) => {
      const head = await f.read(0, Math.min(f.size, FINGERPRINT_SPAN));
      const tail = await f.read(Math.max(0, f.size - FINGERPRINT_SPAN), f.size);
      return `${f.name}:${f.size}:${await sha256Hex(head)}:${await sha256Hex(tail)}`;
    }),
  );
  const counts = [...tokenCounts].sort((a, b) => a - b);
  const tokens = counts.length === 1 ? `${counts[0]} tokens` : `${counts[0]}-${counts[counts.length - 1]} tokens`;
  const label = `activation files (${files.length} file${files.length === 1 ? "" : "s"} for ${inputs.size} of ${tensors.length} linear layers, ${tokens})`;
  return {
    source: "file",
    label,
    key: `files:${prints.join(",")}`,
    tokens: counts[counts.length - 1]!,
    missing: "no activation file for this layer",
    layer: layerCalibrations(
      (tensor, cols) => {
        const file = inputs.get(tensor);
        return file && (file.size / 4) % cols === 0 ? { id: file, read: () => readActivations(file, cols) } : undefined;
      },
      "file",
      (tensor) => `activations from ${inputs.get(tensor)!.name}`,
    ),
  };
}

async function readActivations(file: ActivationFile, cols: number): Promise<Float32Array> {
  const bytes = await file.read();
  if (bytes.byteLength !== file.size) throw new QuantInputError("calibration", `${file.name}: read ${bytes.byteLength} of its ${file.size} bytes (did it change?)`);
  // A copy: the bytes may sit at an offset that float32 cannot view.
  const x = new Float32Array(file.size / 4);
  new Uint8Array(x.buffer).set(bytes);
  try {
    assertFiniteActivations(x, cols, 0);
  } catch (e) {
    if (e instanceof QuantInputError) throw new QuantInputError("calibration", `${file.name}: ${e.detail}`);
    throw e;
  }
  return x;
}

/** A model's calibration, or why there is none (a lone shard, no tokenizer, ...). */
export type CalibrationOrWhy = { model: ModelCalibration } | { why: string };

/** What a whole-model run measured its output errors (and calibrated GPTQ / AWQ) on. */
export interface RunCalibration {
  source: "model" | "file" | "synthetic";
  label: string;
  /**
   * The activations by source, token count and content (ModelCalibration's key): cells computed on other
   * activations differ (every cell's output error, and the GPTQ / AWQ weights themselves), so the results
   * cache keeps them apart by this. Synthetic activations have a fixed token count per layer width
   * (syntheticCalibration); a run without real activations and without a calibrated setting measures no
   * output error at all ("none").
   */
  key: string;
}

/** The run's calibration, for its report and its cache key (`anyCalibrated`: the run has a GPTQ / AWQ setting). */
export function runCalibration(c: CalibrationOrWhy, anyCalibrated: boolean): RunCalibration {
  if ("model" in c) return { source: c.model.source, label: c.model.label, key: c.model.key };
  return { source: "synthetic", label: `synthetic activations (${c.why})`, key: anyCalibrated ? "synthetic" : "none" };
}

/** The options quantizeLayer / quantizeModel take for it: each layer's real inputs, else synthetic ones with the reason. */
export function calibrationOptions(c: CalibrationOrWhy): Pick<QuantizeLayerOptions, "calibration" | "syntheticWhy"> {
  if ("why" in c) return { syntheticWhy: c.why };
  return { calibration: (tensor, shape) => c.model.layer(tensor.name, shape.cols), syntheticWhy: c.model.missing };
}
