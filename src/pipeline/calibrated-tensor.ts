/**
 * GPTQ and AWQ on one tensor, for the views that set them beside the other formats (the heatmaps and their
 * hover): "gptq4", "awq4-g32", ... (src/model/precision.ts's names). They need the layer's input
 * activations; a lone tensor has none, so the calibration here is synthetic: standard normal activations
 * with a few high-variance channels (every 37th channel ten times wider, as LLM activations have outlier
 * channels), deterministic, and said to be synthetic wherever the result shows. Rows that the group size
 * does not divide are quantized per channel, as the model run does. Results are kept for the last few
 * tensors, so a hover does not run GPTQ again.
 */
import { readTensorRows, tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { rng } from "../common/random.ts";
import { awqQuantize } from "../quant/awq.ts";
import { assertFinite, QuantInputError } from "../quant/errors.ts";
import { gptqQuantize } from "../quant/gptq.ts";
import { calibrationStats } from "../quant/hessian.ts";
import { calibratedMethod, type CalibratedMethod } from "../model/precision.ts";

export { calibratedMethod };

/** The ids the views offer. */
export const CALIBRATED_CHOICES = ["gptq4-g128", "gptq4-g32", "awq4-g128", "awq4-g32"] as const;

/** Largest rows x cols^2 (GPTQ's sweep, and the Hessian's cost) run in the views on the CPU reference. */
export const MAX_CALIBRATED_WORK = 2 ** 33;

export interface CalibratedTensor {
  id: string;
  method: CalibratedMethod;
  /** The group size used (-1: per channel, when the rows do not take the asked group). */
  group: number;
  /** Dequantized weights, rows x cols (AWQ: with its scales divided back out, comparable to the weights). */
  q: Float32Array;
  /** Per (row, group): the quantizer's scale and zero point; q = scale * (code - zero). */
  scales: Float32Array;
  zeros: Float32Array;
  nGroups: number;
  calibration: { kind: "synthetic"; tokens: number };
}

/** Synthetic layer inputs: tokens x cols, N(0, 1) with every 37th channel ten times wider. */
export function syntheticActivations(cols: number, tokens: number, seed = 1): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(tokens * cols);
  for (let i = 0; i < x.length; i++) {
    const c = i % cols;
    const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    x[i] = z * (c % 37 === 5 ? 10 : 1);
  }
  return x;
}

const CACHE_ENTRIES = 4;
const cache = new Map<string, Promise<CalibratedTensor>>();

/** GPTQ or AWQ of a whole tensor with synthetic calibration (see the module comment); cached. */
export function calibratedTensor(tensor: TensorInfo, id: string, signal?: AbortSignal): Promise<CalibratedTensor> {
  const key = `${tensor.name}\u0000${tensor.offset}\u0000${tensor.bytes}\u0000${id}`;
  let entry = cache.get(key);
  if (!entry) {
    entry = compute(tensor, id, signal);
    cache.set(key, entry);
    entry.catch(() => cache.delete(key));
    if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  }
  return entry;
}

async function compute(tensor: TensorInfo, id: string, signal?: AbortSignal): Promise<CalibratedTensor> {
  const method = calibratedMethod(id);
  if (!method) throw new QuantInputError("settings", `"${id}" is not a GPTQ or AWQ setting (gptq4, awq4-g32, ...)`, { tensor: tensor.name });
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  if (rows < 2) throw new QuantInputError("shape", `${id} quantizes matrices; this tensor is one row`, { tensor: tensor.name });
  if (rows * cols * cols > MAX_CALIBRATED_WORK) {
    throw new QuantInputError("shape", `${rows}x${cols} is too large for ${method.method.toUpperCase()} in this view (it runs on the CPU reference here); use quantlab ${method.method}`, { tensor: tensor.name });
  }
  const x = new Float32Array(rows * cols);
  for await (const c of readTensorRows(tensor, { signal })) x.set(c.values, c.firstRow * cols);
  assertFinite(x, { rows, cols }, tensor.name);
  // More tokens than columns keep the Hessian full rank.
  const tokens = Math.max(256, 2 * cols);
  const stats = calibrationStats(syntheticActivations(cols, tokens), cols, { clipSample: method.method === "awq" });
  const group = cols % method.group === 0 ? method.group : -1;
  const shape = { rows, cols };
  const calibration = { kind: "synthetic" as const, tokens };
  if (method.method === "gptq") {
    const r = gptqQuantize(x, shape, stats, { bits: method.bits, group, sym: false });
    return { id, method, group, q: r.q, scales: r.scales, zeros: r.zeros, nGroups: r.nGroups, calibration };
  }
  // AWQ's quantizer works on W*s: its scales are those of the scaled weights.
  const r = awqQuantize(x, shape, stats, { bits: method.bits, group, zeroPoint: true });
  return { id, method, group, q: r.q, scales: r.qscales, zeros: r.qzeros, nGroups: r.nGroups, calibration };
}
