/**
 * GPTQ, AWQ and AWQ+GPTQ (src/quant/calibrated.ts's settings: "gptq4-g128-act", "awq4-g32", ...) on one
 * tensor, for the views that set them beside the other formats: the Quantize table, the whole-model table,
 * the heatmaps and their hover.
 *
 * They need the layer's input activations. Where they come from (LayerCalibration.source):
 *  - "model": the model run on a calibration text (src/pipeline/model-calibration.ts), with part of the
 *    tokens held out;
 *  - "file": raw float32 activations the user gave (the CLI);
 *  - "synthetic": for a lone tensor with no model, standard normal activations with a few high-variance
 *    channels (every 37th channel ten times wider, as LLM activations have outlier channels),
 *    deterministic, and said to be synthetic wherever the result shows.
 * Rows that the group size does not divide are quantized per channel, as the model run does. On a WebGPU
 * device GPTQ's factorization, sweep and block updates and AWQ's error measurements run there
 * (src/gpu/gptq.ts, awq.ts); without one, or when the GPU fails, the CPU references do. Results of the
 * heatmap's synthetic calibration are kept for the last few tensors, so a hover does not run GPTQ again.
 */
import { errorText } from "../common/error-text.ts";
import { readTensorRows, tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { rng } from "../common/random.ts";
import type { LabDevice } from "../gpu/device.ts";
import { gpuAwqQuantize, gpuAwqSearch } from "../gpu/awq.ts";
import { gpuGptqQuantize } from "../gpu/gptq.ts";
import { awqGptqFinish, awqGptqInput } from "../quant/awq.ts";
import {
  awqOptionsOf,
  calibratedMethod,
  calibratedQuantize,
  gptqOptionsOf,
  groupFor,
  methodName,
  type CalibratedMethod,
  type CalibratedOutcome,
} from "../quant/calibrated.ts";
import { assertFinite, isQuantInputError, QuantInputError } from "../quant/errors.ts";
import type { MatrixShape } from "../quant/format.ts";
import { calibrationStats, calibrationWarnings, type CalibrationStats } from "../quant/hessian.ts";
import type { CalibrationKind, RanOn } from "./quantize-tensor.ts";

export { calibratedMethod };

/** The ids the views offer ready-made (any id of the grammar works). */
export const CALIBRATED_CHOICES = ["gptq4-g128", "gptq4-g32", "awq4-g128", "awq4-g32", "awqgptq4-g128"] as const;

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
  calibration: { kind: CalibrationKind; tokens: number; label: string };
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

/** One layer's calibration: the statistics of its inputs, held-out tokens' Gram matrix, and where they came from. */
export interface LayerCalibration {
  source: CalibrationKind;
  /** For people: "model run on calibration.txt, 310 tokens (+78 held out)", "synthetic activations, 256 tokens". */
  label: string;
  /** With AWQ's clip sample. */
  stats: CalibrationStats;
  heldOut?: { gram: Float64Array; tokens: number };
  /** Too few tokens for the columns (rank-deficient Hessian), ... */
  warnings: string[];
}

/** The synthetic calibration of a layer with `cols` inputs (more tokens than columns: a full-rank Hessian); `why` there is no real one. */
export function syntheticCalibration(cols: number, why?: string): LayerCalibration {
  const tokens = Math.max(256, 2 * cols);
  const label = `synthetic activations, ${tokens} tokens${why ? ` (${why})` : ""}`;
  return { source: "synthetic", label, stats: calibrationStats(syntheticActivations(cols, tokens), cols), warnings: [] };
}

/** A layer's calibration from its real inputs x [tokens, cols]: the first tokens calibrate, the last `heldOutShare` are held out. */
export function activationCalibration(x: Float32Array, cols: number, source: CalibrationKind, what: string, heldOutShare = 0.25): LayerCalibration {
  const tokens = x.length / cols;
  const held = tokens >= 8 ? Math.floor(tokens * heldOutShare) : 0;
  const calib = tokens - held;
  const stats = calibrationStats(x.subarray(0, calib * cols), cols);
  const cal: LayerCalibration = {
    source,
    label: `${what}, ${calib} tokens${held > 0 ? ` (+${held} held out)` : ""}`,
    stats,
    warnings: calibrationWarnings(stats),
  };
  if (held > 0) cal.heldOut = { gram: calibrationStats(x.subarray(calib * cols), cols, { clipSample: false }).gram, tokens: held };
  return cal;
}

/** A setting's result on one layer and where it ran. */
export interface CalibratedRun extends CalibratedOutcome {
  ranOn: RanOn;
  /** Why it ran on the CPU. */
  why?: string;
}

/**
 * Runs a setting on one layer: on the device when there is one (GPTQ's heavy parts, AWQ's measurements),
 * else, or when the GPU fails, with the CPU reference. Bad settings or inputs throw QuantInputError.
 */
export async function runCalibrated(
  weights: Float32Array,
  shape: MatrixShape,
  stats: CalibrationStats,
  m: CalibratedMethod,
  device?: LabDevice,
  noDeviceReason?: string,
): Promise<CalibratedRun> {
  if (device) {
    try {
      return { ...(await gpuCalibrated(device, weights, shape, stats, m)), ranOn: "gpu" };
    } catch (e) {
      if (isQuantInputError(e)) throw e;
      const why = `the GPU failed (${errorText(e)}): ran on the CPU reference`;
      return { ...calibratedQuantize(weights, shape, stats, m), ranOn: "cpu", why };
    }
  }
  return { ...calibratedQuantize(weights, shape, stats, m), ranOn: "cpu", why: noDeviceReason ?? "no WebGPU device" };
}

async function gpuCalibrated(dev: LabDevice, weights: Float32Array, shape: MatrixShape, stats: CalibrationStats, m: CalibratedMethod): Promise<CalibratedOutcome> {
  const group = groupFor(m, shape.cols);
  if (m.method === "gptq") {
    const r = await gpuGptqQuantize(dev, weights, shape, stats, gptqOptionsOf(m, group));
    return { q: r.q, scales: r.scales, zeros: r.zeros, nGroups: r.nGroups, group, warnings: r.warnings };
  }
  const awq = awqOptionsOf(m, group);
  if (m.method === "awq") {
    const r = await gpuAwqQuantize(dev, weights, shape, stats, awq);
    return { q: r.q, scales: r.qscales, zeros: r.qzeros, nGroups: r.nGroups, group, warnings: r.warnings };
  }
  const search = await gpuAwqSearch(dev, weights, shape, stats, awq);
  const input = awqGptqInput(weights, shape, stats, awq, gptqOptionsOf(m, group), search);
  const gptq = await gpuGptqQuantize(dev, input.weights, shape, input.calibration, input.options);
  const r = awqGptqFinish(search, gptq, shape);
  return { q: r.q, scales: gptq.scales, zeros: gptq.zeros, nGroups: gptq.nGroups, group, warnings: gptq.warnings };
}

/** Throws unless a tensor of this shape is a layer the views can run `m` on (a matrix, not too large for the CPU path). */
export function assertCalibratable(shape: MatrixShape, m: CalibratedMethod, tensor: string): void {
  const name = methodName(m.method);
  if (shape.rows < 2) throw new QuantInputError("shape", `${m.id}: ${name} quantizes matrices; this tensor is one row`, { tensor });
  if (shape.rows * shape.cols * shape.cols > MAX_CALIBRATED_WORK) {
    throw new QuantInputError(
      "shape",
      `${shape.rows}x${shape.cols} is too large for ${name} in this view (it would take minutes here); use quantlab ${m.method === "awq" ? "awq" : "gptq"}`,
      { tensor },
    );
  }
}

const CACHE_ENTRIES = 4;
const cache = new Map<string, Promise<CalibratedTensor>>();

/**
 * A setting on a whole tensor (the heatmaps and their hover), on the layer's calibration when there is one,
 * else on synthetic activations (see the module comment); cached.
 */
export function calibratedTensor(tensor: TensorInfo, id: string, signal?: AbortSignal, calibration?: LayerCalibration): Promise<CalibratedTensor> {
  const key = `${tensor.name}\u0000${tensor.offset}\u0000${tensor.bytes}\u0000${id}\u0000${calibration?.label ?? "synthetic"}`;
  let entry = cache.get(key);
  if (!entry) {
    entry = compute(tensor, id, signal, calibration);
    cache.set(key, entry);
    entry.catch(() => cache.delete(key));
    if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  }
  return entry;
}

async function compute(tensor: TensorInfo, id: string, signal?: AbortSignal, calibration?: LayerCalibration): Promise<CalibratedTensor> {
  const method = calibratedMethod(id);
  if (!method) throw new QuantInputError("settings", `"${id}" is not a GPTQ or AWQ setting (gptq4, awq4-g32, ...)`, { tensor: tensor.name });
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const shape = { rows, cols };
  assertCalibratable(shape, method, tensor.name);
  const x = await readWholeTensor(tensor, signal);
  const cal = calibration ?? syntheticCalibration(cols);
  const r = calibratedQuantize(x, shape, cal.stats, method);
  return { id, method, group: r.group, q: r.q, scales: r.scales, zeros: r.zeros, nGroups: r.nGroups, calibration: { kind: cal.source, tokens: cal.stats.tokens, label: cal.label } };
}

/** The tensor's values as float32 [rows, cols], checked finite. */
export async function readWholeTensor(tensor: TensorInfo, signal?: AbortSignal): Promise<Float32Array> {
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const x = new Float32Array(rows * cols);
  for await (const c of readTensorRows(tensor, { signal })) x.set(c.values, c.firstRow * cols);
  assertFinite(x, { rows, cols }, tensor.name);
  return x;
}
