/**
 * AWQ (Lin et al., 2023), the CPU reference: llm-awq's `_search_module_scale` (auto_scale.py), then
 * `auto_clip_layer` (auto_clip.py), then `pseudo_quantize_tensor` (quantizer.py), on one linear layer, as
 * the golden README (../shared/golden/gptq_awq) describes them:
 *
 *  - scale search: for ratio = i/20, i = 0..19, s = max(mean|x|^ratio, 1e-4), normalised to
 *    s / sqrt(max(s) min(s)); the weights W*s are quantized and divided back by s, and the ratio whose output
 *    error on the calibration tokens is lowest wins (strict <: ratio 0, s = 1, is plain round-to-nearest, so
 *    AWQ never does worse than RTN on the calibration set);
 *  - clip search, on W*s and X/s: per row and group, max|w| shrunk by 1 - i/20, i = 0..9, the one whose
 *    output error on the clip sample (every k-th token, k = floor(n / 512)) is lowest is kept;
 *  - the final quantization of the clipped W*s.
 *
 * Output errors are computed from Gram matrices (d^T G d per row, src/quant/output-error.ts) in float64,
 * where the reference multiplies the activations in float32: the same minimisation, more exactly. The
 * quantizer itself follows the reference in float32 (its grid decides which codes exist).
 *
 * The chosen scales s are returned with the result: a checkpoint stores the quantized W*s (`qScaled`) and the
 * model folds 1/s into the operation before the layer (the RMSNorm weight, or the rows of the previous
 * linear layer). `q` = qScaled / s is the same layer expressed on the original inputs, comparable with W.
 *
 * zeroPoint false (symmetric) is the reference's intent (codes -2^(b-1)..2^(b-1)-1 times absmax / (2^(b-1)-1)),
 * which its own code cannot run (README, "reference behaviours" 3).
 */
import { QuantInputError } from "./errors.ts";
import type { MatrixShape } from "./format.ts";
import { calibrationWarnings, type CalibrationStats } from "./hessian.ts";
import { assertGroupSize, assertLayerInputs, assertMethodBits, gptqQuantize, type GptqOptions, type GptqResult } from "./gptq.ts";
import { gramQuadratic, sumGramQuadratic } from "./output-error.ts";
import { nearestInt } from "./ggml/common.ts";

const fr = Math.fround;

export interface AwqOptions {
  /** 2..8 */
  bits: number;
  /** Columns per group (must divide the row); -1 for one group per row. 128 by default. */
  group?: number;
  /** Run the clip search (default true). */
  clip?: boolean;
  /** Asymmetric with a zero point (default true), or symmetric. */
  zeroPoint?: boolean;
  /** Ratios tried by the scale search, and the clip search's step (1/20). */
  gridSize?: number;
  /**
   * Search the scales (default true). False keeps s = 1 (ratio 0 only) while the clip search still runs: for
   * layers whose scales cannot be folded anywhere (AutoAWQ leaves them unscaled).
   */
  searchScales?: boolean;
  /** Smallest clip factor (0.5): shrink factors 1 - i/20 down to above it. */
  maxShrink?: number;
}

export type AwqCalibration = Pick<CalibrationStats, "gram" | "tokens" | "meanAbs" | "clipSample">;

export interface AwqSearch {
  /** The chosen ratio. */
  alpha: number;
  /** The relative output error on the calibration tokens of scale-only quantization at every ratio. */
  alphaErrors: number[];
  /** s per input channel (float32). */
  scales: Float32Array;
  /** Chosen max |w| per (row, group) of W*s, when clipping. */
  clipMax: Float32Array | undefined;
}

export interface AwqResult extends AwqSearch {
  shape: MatrixShape;
  bits: number;
  group: number;
  zeroPoint: boolean;
  nGroups: number;
  /** Quantizer of the final (clipped) W*s per (row, group): qScaled = qscales * (codes - qzeros). */
  qscales: Float32Array;
  qzeros: Float32Array;
  /** Integer codes in [0, 2^bits - 1], [rows, cols]. */
  codes: Uint8Array;
  /** The dequantized W*s (what a checkpoint stores). */
  qScaled: Float32Array;
  /** qScaled / s: comparable with W. */
  q: Float32Array;
  warnings: string[];
}

export const AWQ_DEFAULT_GROUP = 128;
const AWQ_GRID = 20;
const AWQ_MAX_SHRINK = 0.5;
const RANGE_FLOOR = fr(1e-5);

/**
 * llm-awq's pseudo_quantize_tensor on one group: values v[at .. at+len) (float32 values) quantized into
 * out/codes at the same positions. Returns the group's scale and zero point.
 */
export function awqQuantizeGroup(
  v: ArrayLike<number>,
  at: number,
  len: number,
  bits: number,
  zeroPoint: boolean,
  out: Float32Array | Float64Array,
  codes: Uint8Array | undefined,
): { scale: number; zero: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = at; i < at + len; i++) {
    const x = v[i]!;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  let scale: number;
  let zero: number;
  let maxCode: number;
  if (zeroPoint) {
    maxCode = 2 ** bits - 1;
    scale = fr(Math.max(fr(hi - lo), RANGE_FLOOR) / maxCode);
    zero = -nearestInt(fr(lo / scale));
    zero = zero < 0 ? 0 : zero > maxCode ? maxCode : zero;
  } else {
    const half = 2 ** (bits - 1);
    maxCode = 2 * half - 1;
    scale = fr(Math.max(Math.max(hi, -lo), RANGE_FLOOR) / (half - 1));
    zero = half;
  }
  for (let i = at; i < at + len; i++) {
    let code = nearestInt(fr(v[i]! / scale)) + zero;
    code = code < 0 ? 0 : code > maxCode ? maxCode : code;
    out[i] = fr((code - zero) * scale);
    if (codes) codes[i] = code;
  }
  return { scale, zero };
}

/** The scale vector of one ratio: max(meanAbs^ratio, 1e-4), normalised by sqrt(max * min), as float32. */
export function awqScalesForRatio(meanAbs: Float64Array, ratio: number): Float32Array {
  const s = new Float32Array(meanAbs.length);
  let hi = -Infinity;
  let lo = Infinity;
  for (let c = 0; c < s.length; c++) {
    const v = Math.max(fr(fr(meanAbs[c]!) ** ratio), fr(1e-4));
    s[c] = v;
    hi = Math.max(hi, s[c]!);
    lo = Math.min(lo, s[c]!);
  }
  const norm = fr(Math.sqrt(fr(hi * lo)));
  for (let c = 0; c < s.length; c++) s[c] = fr(s[c]! / norm);
  return s;
}

function resolveOptions(options: AwqOptions, cols: number) {
  const group = options.group ?? AWQ_DEFAULT_GROUP;
  assertMethodBits("AWQ", options.bits);
  assertGroupSize("AWQ", group, cols);
  if (group !== -1 && cols % group !== 0) {
    throw new QuantInputError("settings", `AWQ: group size ${group} does not divide the ${cols} input columns`);
  }
  return {
    bits: options.bits,
    group,
    size: group === -1 ? cols : group,
    clip: options.clip ?? true,
    zeroPoint: options.zeroPoint ?? true,
    gridSize: options.gridSize ?? AWQ_GRID,
    searchScales: options.searchScales ?? true,
    maxShrink: options.maxShrink ?? AWQ_MAX_SHRINK,
  };
}

/** Quantizes every group of every row of w (float32 values) into out; the building block of both searches. */
function quantizeRows(w: Float32Array, shape: MatrixShape, size: number, bits: number, zeroPoint: boolean, out: Float32Array): void {
  for (let at = 0; at < shape.rows * shape.cols; at += size) awqQuantizeGroup(w, at, size, bits, zeroPoint, out, undefined);
}

/** Round-to-nearest with AWQ's quantizer (no scales, no clipping): the baseline AWQ is measured against. */
export function awqRtn(weights: Float32Array, shape: MatrixShape, options: AwqOptions): Float32Array {
  const o = resolveOptions(options, shape.cols);
  const out = new Float32Array(shape.rows * shape.cols);
  quantizeRows(weights, shape, o.size, o.bits, o.zeroPoint, out);
  return out;
}

/**
 * What the searches ask of whoever measures output errors (the CPU reference below in float64, or the GPU
 * with its matmul kernel, src/gpu/awq.ts): one search algorithm, two executors.
 *  - "total": sum over rows of d_r^T G d_r, D [rows, cols], G the Gram matrix of the calibration tokens;
 *  - "groups": per (row, group), d^T G'_k d over the group's columns, G' the clip sample's Gram matrix of X/s.
 */
export type AwqMeasure = { kind: "total"; d: Float64Array } | { kind: "groups"; d: Float64Array; s: Float32Array; size: number };
export type AwqMeasured = number | Float64Array;

/**
 * The scale search and then the clip search, as a generator that yields each measurement it needs and
 * receives its result (a number for "total", per-(row, group) errors for "groups").
 */
export function* awqSearchSteps(weights: Float32Array, shape: MatrixShape, calib: AwqCalibration, options: AwqOptions): Generator<AwqMeasure, AwqSearch, AwqMeasured> {
  const { rows, cols } = shape;
  assertLayerInputs(weights, shape, calib.gram, calib.tokens);
  if (calib.meanAbs.length !== cols) throw new QuantInputError("calibration", `${calib.meanAbs.length} channel statistics for ${cols} input columns`);
  const o = resolveOptions(options, cols);

  // Scale search: the error of W - Q where Q = quantize(W*s)/s.
  const ws = new Float32Array(rows * cols);
  const qs = new Float32Array(rows * cols);
  const energy = (yield { kind: "total", d: Float64Array.from(weights) }) as number;
  const alphaErrors: number[] = [];
  let best = Infinity;
  let bestRatio = 0;
  let bestScales: Float32Array = new Float32Array(cols).fill(1);
  for (let i = 0; i < (o.searchScales ? o.gridSize : 1); i++) {
    const ratio = i / o.gridSize;
    const s = awqScalesForRatio(calib.meanAbs, ratio);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) ws[r * cols + c] = fr(weights[r * cols + c]! * s[c]!);
    quantizeRows(ws, shape, o.size, o.bits, o.zeroPoint, qs);
    const diff = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) diff[r * cols + c] = weights[r * cols + c]! - fr(qs[r * cols + c]! / s[c]!);
    const loss = (yield { kind: "total", d: diff }) as number;
    alphaErrors.push(loss / energy);
    if (loss < best) {
      best = loss;
      bestRatio = ratio;
      bestScales = s;
    }
  }
  const scales = bestScales;
  if (!o.clip) return { alpha: bestRatio, alphaErrors, scales, clipMax: undefined };

  // Clip search, on W*s: per (row, group) the shrink of max |w| with the lowest error (strict <, in step order).
  const size = o.size;
  const nGroups = cols / size;
  const steps = Math.round(o.gridSize * o.maxShrink);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) ws[r * cols + c] = fr(weights[r * cols + c]! * scales[c]!);
  const orgMax = new Float32Array(rows * nGroups);
  for (let g = 0; g < rows * nGroups; g++) {
    let m = 0;
    for (let i = g * size; i < (g + 1) * size; i++) m = Math.max(m, Math.abs(ws[i]!));
    orgMax[g] = m;
  }
  const clipMax = orgMax.slice();
  const bestErr = new Float64Array(rows * nGroups).fill(Infinity);
  const cur = new Float32Array(rows * cols);
  for (let step = 0; step < steps; step++) {
    const factor = fr(1 - step / o.gridSize);
    for (let g = 0; g < rows * nGroups; g++) {
      const maxVal = fr(orgMax[g]! * factor);
      for (let i = g * size; i < (g + 1) * size; i++) cur[i] = Math.min(Math.max(ws[i]!, -maxVal), maxVal);
    }
    quantizeRows(cur, shape, size, o.bits, o.zeroPoint, qs);
    const d = new Float64Array(rows * cols);
    for (let i = 0; i < d.length; i++) d[i] = qs[i]! - ws[i]!;
    const errs = (yield { kind: "groups", d, s: scales, size }) as Float64Array;
    for (let g = 0; g < rows * nGroups; g++) {
      if (errs[g]! < bestErr[g]!) {
        bestErr[g] = errs[g]!;
        clipMax[g] = fr(orgMax[g]! * factor);
      }
    }
  }
  return { alpha: bestRatio, alphaErrors, scales, clipMax };
}

/**
 * The Gram matrix of the clip sample of X/s over group k's columns (size x size): G'_ij = G_ij / (s_i s_j).
 * Without a clip sample (statistics gathered without one), all tokens stand in for it.
 */
export function clipGroupGram(calib: AwqCalibration, cols: number, s: Float32Array, size: number, k: number): Float64Array {
  const sample = calib.clipSample?.gram ?? calib.gram;
  const c0 = k * size;
  const block = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) block[i * size + j] = sample[(c0 + i) * cols + c0 + j]! / (s[c0 + i]! * s[c0 + j]!);
  }
  return block;
}

/** The scale search and the clip search (no final quantization), measured on the CPU in float64. */
export function awqSearch(weights: Float32Array, shape: MatrixShape, calib: AwqCalibration, options: AwqOptions): AwqSearch {
  const { rows, cols } = shape;
  const steps = awqSearchSteps(weights, shape, calib, options);
  let blocks: Float64Array[] | undefined;
  let next = steps.next();
  while (!next.done) {
    const m = next.value;
    if (m.kind === "total") {
      next = steps.next(sumGramQuadratic(calib.gram, m.d, rows, cols));
      continue;
    }
    const nGroups = cols / m.size;
    blocks ??= Array.from({ length: nGroups }, (_, k) => clipGroupGram(calib, cols, m.s, m.size, k));
    const errs = new Float64Array(rows * nGroups);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < nGroups; k++) errs[r * nGroups + k] = gramQuadratic(blocks[k]!, m.d.subarray(r * cols + k * m.size, r * cols + (k + 1) * m.size), m.size);
    }
    next = steps.next(errs);
  }
  return next.value;
}

/** AWQ of weights [rows, cols] (row-major float32) given the layer's calibration statistics. */
export function awqQuantize(weights: Float32Array, shape: MatrixShape, calib: AwqCalibration, options: AwqOptions): AwqResult {
  return awqFinish(weights, shape, calib, options, awqSearch(weights, shape, calib, options));
}

/** The final quantization of the (clipped) W*s once the searches have chosen (cheap: O(rows x cols)). */
export function awqFinish(weights: Float32Array, shape: MatrixShape, calib: Pick<AwqCalibration, "tokens">, options: AwqOptions, search: AwqSearch): AwqResult {
  const o = resolveOptions(options, shape.cols);
  const { rows, cols } = shape;
  const nGroups = cols / o.size;
  const ws = scaledClippedWeights(weights, shape, search, o.size);
  const qScaled = new Float32Array(rows * cols);
  const codes = new Uint8Array(rows * cols);
  const qscales = new Float32Array(rows * nGroups);
  const qzeros = new Float32Array(rows * nGroups);
  for (let g = 0; g < rows * nGroups; g++) {
    const p = awqQuantizeGroup(ws, g * o.size, o.size, o.bits, o.zeroPoint, qScaled, codes);
    qscales[g] = p.scale;
    qzeros[g] = p.zero;
  }
  const q = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + c] = fr(qScaled[r * cols + c]! / search.scales[c]!);
  return {
    ...search,
    shape,
    bits: o.bits,
    group: o.group,
    zeroPoint: o.zeroPoint,
    nGroups,
    qscales,
    qzeros,
    codes,
    qScaled,
    q,
    warnings: calibrationWarnings({ cols, tokens: calib.tokens }),
  };
}

/** W*s, clamped to +-clipMax per (row, group) when the search clipped. */
function scaledClippedWeights(weights: Float32Array, shape: MatrixShape, search: AwqSearch, size: number): Float32Array {
  const { rows, cols } = shape;
  const nGroups = cols / size;
  const ws = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let v = fr(weights[r * cols + c]! * search.scales[c]!);
      if (search.clipMax) {
        const m = search.clipMax[r * nGroups + Math.floor(c / size)]!;
        v = Math.min(Math.max(v, -m), m);
      }
      ws[r * cols + c] = v;
    }
  }
  return ws;
}

export interface AwqGptqResult {
  awq: AwqSearch;
  /** GPTQ of the (clipped) W*s with the Hessian of X/s: its q, codes, scales are in the scaled domain. */
  gptq: GptqResult;
  /** gptq.q / s: comparable with W. */
  q: Float32Array;
}

/**
 * AWQ followed by GPTQ: AWQ's scales (and clipping) chosen as usual, then GPTQ quantizes W*s against the
 * inputs X/s (Gram matrix G_ij / (s_i s_j)) with its own quantizer; the model folds 1/s as for AWQ.
 */
export function awqGptqQuantize(
  weights: Float32Array,
  shape: MatrixShape,
  calib: AwqCalibration,
  awqOptions: AwqOptions,
  gptqOptions: Omit<GptqOptions, "bits" | "group">,
): AwqGptqResult {
  const awq = awqSearch(weights, shape, calib, awqOptions);
  const input = awqGptqInput(weights, shape, calib, awqOptions, gptqOptions, awq);
  return awqGptqFinish(awq, gptqQuantize(input.weights, shape, input.calibration, input.options), shape);
}

/** What GPTQ quantizes after AWQ's search: the (clipped) W*s, the Gram matrix of X/s and AWQ's grid settings. */
export function awqGptqInput(
  weights: Float32Array,
  shape: MatrixShape,
  calib: AwqCalibration,
  awqOptions: AwqOptions,
  gptqOptions: Omit<GptqOptions, "bits" | "group">,
  awq: AwqSearch,
): { weights: Float32Array; calibration: { gram: Float64Array; tokens: number }; options: GptqOptions } {
  const o = resolveOptions(awqOptions, shape.cols);
  const { cols } = shape;
  const ws = scaledClippedWeights(weights, shape, awq, o.size);
  const s = awq.scales;
  const gram = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) gram[i * cols + j] = calib.gram[i * cols + j]! / (s[i]! * s[j]!);
  return { weights: ws, calibration: { gram, tokens: calib.tokens }, options: { ...gptqOptions, bits: o.bits, group: o.group, sym: !o.zeroPoint } };
}

/** AWQ+GPTQ's result from GPTQ's on the scaled domain: q = gptq.q / s. */
export function awqGptqFinish(awq: AwqSearch, gptq: GptqResult, shape: MatrixShape): AwqGptqResult {
  const { rows, cols } = shape;
  const s = awq.scales;
  const q = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + c] = fr(gptq.q[r * cols + c]! / s[c]!);
  return { awq, gptq, q };
}
