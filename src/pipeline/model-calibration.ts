/**
 * Real calibration for the views and `quantlab quantize`: the opened model (config.json + tokenizer) run
 * once in f32 on a calibration text (the lab's bundled calibration.txt, never the evaluation text), with
 * every linear layer's input as an output of the graph (collectCalibration). Each layer's tokens are split:
 * the first three quarters calibrate, the last quarter is held out, so the tables show both errors
 * (calibration is not evaluation). q/k/v (and gate/up) read the same input: their statistics are computed
 * once.
 */
import { ModelInputError } from "../model/architecture.ts";
import { collectCalibration, type RunSettings } from "../model/evaluate.ts";
import type { LoadedDecoder } from "../model/load.ts";
import { activationCalibration, type LayerCalibration } from "./calibrated-tensor.ts";
import type { QuantizeLayerOptions } from "./quantize-layer.ts";

export interface ModelCalibration {
  /** "model run on calibration.txt, 512 tokens". */
  label: string;
  tokens: number;
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
  const byInput = new Map<Float32Array, LayerCalibration>();
  return {
    label: `${what}, ${ids.length} tokens`,
    tokens: ids.length,
    layer(tensor, cols) {
      const x = inputs.get(tensor);
      if (!x || x.length !== ids.length * cols) return undefined;
      let cal = byInput.get(x);
      if (!cal) {
        cal = activationCalibration(x, cols, "model", what, HELD_OUT_SHARE);
        byInput.set(x, cal);
      }
      return cal;
    },
  };
}

/** A model's calibration, or why there is none (a lone shard, no tokenizer, ...). */
export type CalibrationOrWhy = { model: ModelCalibration } | { why: string };

/** The options quantizeLayer / quantizeModel take for it: each layer's real inputs, else synthetic ones with the reason. */
export function calibrationOptions(c: CalibrationOrWhy): Pick<QuantizeLayerOptions, "calibration" | "syntheticWhy"> {
  if ("why" in c) return { syntheticWhy: c.why };
  return { calibration: async (tensor, shape) => c.model.layer(tensor.name, shape.cols), syntheticWhy: `not a linear layer of the ${c.model.label}` };
}
