/**
 * GPTQ (Frantar et al., 2022), the CPU reference: the algorithm of IST-DASLab/gptq's `GPTQ.fasterquant`
 * with its `Quantizer` (perchannel, no MSE search), step for step, in float64 where the reference is float32
 * (more exact, same decisions). The golden README (../shared/golden/gptq_awq) documents every step; in order:
 *
 *  1. group -1: one quantizer per row from the whole original row;
 *  2. dead columns (zero Hessian diagonal): H_jj = 1 and W[:, j] = 0;
 *  3. static groups: one quantizer per natural group of columns, from W before any update;
 *  4. act-order: columns (and H) in order of descending diag(H) (ties: lower index first);
 *  5. dampening: percdamp * mean(diag H) added to the diagonal (retried at 10x while H is not positive
 *     definite, with a warning: the reference would stop there);
 *  6. U = upper Cholesky factor of H^-1 (src/quant/cholesky.ts);
 *  7. the sweep in blocks of 128 columns: column i is quantized, its error (w - q) / U_ii is fed back into the
 *     block's later columns through row i of U, and after the block into every later column (the lazy batch
 *     update, a matrix multiply). A group's quantizer (without static groups) is found when the sweep reaches
 *     its first column, from the full matrix W: so, like the reference, a group starting inside a block does
 *     not see the updates from the block's earlier columns (README, "reference behaviours" 1);
 *  8. everything is returned in the original column order.
 *
 * The quantizer grid is the reference's (README, "GPTQ reference quantizer"): the range is widened to hold 0,
 * scale = (xmax - xmin) / maxq as a float32, zero = round(-xmin / scale), or (maxq + 1) / 2 when symmetric (at
 * 4 bits: levels -8..7 times the scale), q = clamp(round(x / scale) + zero, 0, maxq) with round half to even,
 * and Q = fround(scale * (q - zero)). So scales, zeros, codes and g_idx reconstruct Q exactly in float32.
 */
import { assertFinite, assertShape, QuantInputError } from "./errors.ts";
import type { MatrixShape } from "./format.ts";
import { calibrationWarnings } from "./hessian.ts";
import { upperCholeskyOfInverse } from "./cholesky.ts";
import { nearestInt } from "./ggml/common.ts";

const fr = Math.fround;

export interface GptqOptions {
  /** 2..8 */
  bits: number;
  /** Columns per group; -1 for one group per row (per-channel). */
  group: number;
  sym?: boolean;
  actOrder?: boolean;
  staticGroups?: boolean;
  /** Fraction of the mean Hessian diagonal added to it (percdamp); 0.01. */
  percDamp?: number;
  /** Columns per lazy batch; 128. */
  blockSize?: number;
}

/** What the calibration pass gives GPTQ: the Gram matrix X^T X and the number of tokens. */
export interface GptqCalibration {
  gram: Float64Array;
  tokens: number;
}

export interface GptqResult {
  shape: MatrixShape;
  bits: number;
  group: number;
  sym: boolean;
  nGroups: number;
  /** The dequantized weights [rows, cols]. */
  q: Float32Array;
  /** Integer codes in [0, 2^bits - 1], [rows, cols]. */
  codes: Uint8Array;
  /** Per (row, group) [rows, nGroups]; Q[o, j] = scales[o, g] * (codes[o, j] - zeros[o, g]) with g = gIdx[j]. */
  scales: Float32Array;
  zeros: Float32Array;
  /** The group of each input column [cols]. */
  gIdx: Int32Array;
  /** Act-order: perm[p] = the column quantized p-th. */
  perm: Int32Array | undefined;
  /** The damping added to the diagonal of H = 2/n X^T X (after any retries). */
  damp: number;
  /** The percdamp that worked (the requested one unless H needed more). */
  percDamp: number;
  deadColumns: number;
  warnings: string[];
}

export const DEFAULT_PERC_DAMP = 0.01;
export const DEFAULT_BLOCK_SIZE = 128;
/** Times the dampening is multiplied by 10 before giving up on a Hessian that is not positive definite. */
const DAMP_RETRIES = 4;

/** Throws "settings" unless bits is an integer from 2 to 8. */
export function assertMethodBits(method: string, bits: number): void {
  if (!(Number.isInteger(bits) && bits >= 2 && bits <= 8)) {
    throw new QuantInputError("settings", `${method} cannot quantize to ${bits} bits: use an integer from 2 to 8`);
  }
}

/** Throws "settings" unless group is -1 or a whole number of columns from 1 to cols. */
export function assertGroupSize(method: string, group: number, cols: number): void {
  if (group === -1) return;
  if (!(Number.isInteger(group) && group >= 1 && group <= cols)) {
    throw new QuantInputError("settings", `${method}: group size ${group} is not -1 (per channel) or a number of columns from 1 to ${cols}`);
  }
}

/** Number of groups per row. */
export function groupCount(group: number, cols: number): number {
  return group === -1 ? 1 : Math.ceil(cols / group);
}

/** The GPTQ reference quantizer's parameters for values in [lo, hi]. */
export function gptqGroupParams(lo: number, hi: number, maxq: number, sym: boolean): { scale: number; zero: number } {
  let xmin = Math.min(lo, 0);
  let xmax = Math.max(hi, 0);
  if (sym) {
    xmax = Math.max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = fr(fr(xmax - xmin) / maxq);
  const zero = sym ? (maxq + 1) / 2 : nearestInt(-xmin / scale);
  return { scale, zero };
}

/**
 * The code of x on the grid (scale, zero). x / scale is taken in float32 as the reference does: at the grid's
 * ties (a symmetric group's absmax sits exactly at code -0.5 below its range) float64 would round differently.
 */
export function gptqCode(x: number, scale: number, zero: number, maxq: number): number {
  const q = nearestInt(fr(fr(x) / scale)) + zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** The row-wise GPTQ quantizer of columns [c0, c1) of a column-major matrix, written to scale[o], zero[o]. */
function findParams(wt: Float64Array, rows: number, c0: number, c1: number, maxq: number, sym: boolean, scale: Float64Array, zero: Float64Array): void {
  const lo = new Float64Array(rows).fill(Infinity);
  const hi = new Float64Array(rows).fill(-Infinity);
  for (let c = c0; c < c1; c++) {
    const col = c * rows;
    for (let o = 0; o < rows; o++) {
      const v = wt[col + o]!;
      if (v < lo[o]!) lo[o] = v;
      if (v > hi[o]!) hi[o] = v;
    }
  }
  for (let o = 0; o < rows; o++) {
    const p = gptqGroupParams(fr(lo[o]!), fr(hi[o]!), maxq, sym);
    scale[o] = p.scale;
    zero[o] = p.zero;
  }
}

/** Validates the inputs every calibrated method shares: weights, and a Gram matrix of the right size. */
export function assertLayerInputs(weights: Float32Array, shape: MatrixShape, gram: Float64Array, tokens: number): void {
  assertShape(weights, shape, "weights");
  assertFinite(weights, shape, "weights");
  const { cols } = shape;
  if (gram.length !== cols * cols) {
    const side = Math.round(Math.sqrt(gram.length));
    throw new QuantInputError(
      "calibration",
      `the activations have ${side * side === gram.length ? side : Math.sqrt(gram.length).toFixed(1)} channels, the weights ${cols} input columns`,
    );
  }
  if (!(tokens > 0)) throw new QuantInputError("calibration", "no calibration tokens were given");
}

/**
 * Everything before the factorization (steps 1-4 of the file comment), shared by the CPU reference and the
 * WebGPU path: settings checked, H = 2/n X^T X with dead columns fixed and act-order applied, W column-major
 * in processing order, and the quantizer parameters known up front (group -1, static groups).
 */
export interface GptqPlan {
  rows: number;
  cols: number;
  bits: number;
  group: number;
  sym: boolean;
  maxq: number;
  nGroups: number;
  blockSize: number;
  staticGroups: boolean;
  /** Act-order: perm[p] = the column quantized p-th. */
  perm: Int32Array | undefined;
  /** H in processing order, not damped yet. */
  h: Float64Array;
  meanDiag: number;
  requestedDamp: number;
  /** W in processing order, column-major (column p at p * rows). */
  wt: Float64Array;
  /** Per (row, group); filled here for group -1 and static groups, during the sweep otherwise. */
  scales: Float32Array;
  zeros: Float32Array;
  gIdx: Int32Array;
  deadColumns: number;
  warnings: string[];
}

export function planGptq(weights: Float32Array, shape: MatrixShape, calib: GptqCalibration, options: GptqOptions): GptqPlan {
  const { rows, cols } = shape;
  const { bits, group } = options;
  const sym = options.sym ?? false;
  const actOrder = options.actOrder ?? false;
  const staticGroups = (options.staticGroups ?? false) && group !== -1;
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  assertLayerInputs(weights, shape, calib.gram, calib.tokens);
  assertMethodBits("GPTQ", bits);
  assertGroupSize("GPTQ", group, cols);
  const requestedDamp = options.percDamp ?? DEFAULT_PERC_DAMP;
  if (!(requestedDamp >= 0 && requestedDamp < Infinity)) throw new QuantInputError("settings", `GPTQ: dampening ${requestedDamp} is not a number >= 0`);
  if (!(Number.isInteger(blockSize) && blockSize >= 1)) throw new QuantInputError("settings", `GPTQ: block size ${blockSize} is not a positive integer`);
  const maxq = 2 ** bits - 1;
  const nGroups = groupCount(group, cols);
  const warnings = calibrationWarnings({ cols, tokens: calib.tokens });

  // H = 2/n X^T X (the scale matters only for the dead columns' 1 on the diagonal) and W, column-major.
  const h = calib.gram.map((v) => (v * 2) / calib.tokens);
  let wt = new Float64Array(cols * rows);
  for (let o = 0; o < rows; o++) for (let c = 0; c < cols; c++) wt[c * rows + o] = weights[o * cols + c]!;

  const scales = new Float32Array(rows * nGroups);
  const zeros = new Float32Array(rows * nGroups);
  const scale = new Float64Array(rows);
  const zero = new Float64Array(rows);
  if (group === -1) {
    findParams(wt, rows, 0, cols, maxq, sym, scale, zero);
    storeGroup(scales, zeros, nGroups, 0, scale, zero);
  }

  let deadColumns = 0;
  for (let j = 0; j < cols; j++) {
    if (h[j * cols + j] !== 0) continue;
    deadColumns++;
    h[j * cols + j] = 1;
    wt.fill(0, j * rows, (j + 1) * rows);
  }

  if (staticGroups) {
    for (let k = 0; k < nGroups; k++) {
      findParams(wt, rows, k * group, Math.min(cols, (k + 1) * group), maxq, sym, scale, zero);
      storeGroup(scales, zeros, nGroups, k, scale, zero);
    }
  }

  let perm: Int32Array | undefined;
  let hp = h;
  if (actOrder) {
    const order = Array.from({ length: cols }, (_, j) => j);
    order.sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
    perm = Int32Array.from(order);
    hp = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) hp[i * cols + j] = h[perm[i]! * cols + perm[j]!]!;
    const permuted = new Float64Array(cols * rows);
    for (let p = 0; p < cols; p++) permuted.set(wt.subarray(perm[p]! * rows, (perm[p]! + 1) * rows), p * rows);
    wt = permuted;
  }

  let meanDiag = 0;
  for (let j = 0; j < cols; j++) meanDiag += hp[j * cols + j]!;
  meanDiag /= cols;

  const gIdx = new Int32Array(cols);
  for (let p = 0; p < cols; p++) {
    const j = perm ? perm[p]! : p;
    gIdx[j] = group === -1 ? 0 : staticGroups ? Math.floor(j / group) : Math.floor(p / group);
  }
  return { rows, cols, bits, group, sym, maxq, nGroups, blockSize, staticGroups, perm, h: hp, meanDiag, requestedDamp, wt, scales, zeros, gIdx, deadColumns, warnings };
}

function storeGroup(scales: Float32Array, zeros: Float32Array, nGroups: number, k: number, scale: Float64Array, zero: Float64Array): void {
  for (let o = 0; o < scale.length; o++) {
    scales[o * nGroups + k] = scale[o]!;
    zeros[o * nGroups + k] = zero[o]!;
  }
}

/** H + percDamp * mean(diag H) * I. */
export function dampedHessian(plan: GptqPlan, percDamp: number): { damped: Float64Array; damp: number } {
  const { cols } = plan;
  const damp = percDamp * plan.meanDiag;
  const damped = plan.h.slice();
  for (let j = 0; j < cols; j++) damped[j * cols + j] = damped[j * cols + j]! + damp;
  return { damped, damp };
}

/**
 * The next dampening after a failed factorization (x10; 0.01 after 0), with the warning that says so, or the
 * error when the retries are used up.
 */
export function nextDamping(plan: GptqPlan, percDamp: number, attempt: number): number {
  if (attempt >= DAMP_RETRIES) {
    throw new QuantInputError("calibration", `the Hessian is not positive definite even with dampening ${percDamp} (x mean diagonal): the activations are degenerate`);
  }
  const next = percDamp === 0 ? DEFAULT_PERC_DAMP : percDamp * 10;
  plan.warnings.push(`the Hessian is not positive definite with dampening ${percDamp}: retried with ${next}`);
  return next;
}

/** GPTQ of weights [rows, cols] (row-major float32) given the Gram matrix of the layer's inputs. */
export function gptqQuantize(weights: Float32Array, shape: MatrixShape, calib: GptqCalibration, options: GptqOptions): GptqResult {
  const plan = planGptq(weights, shape, calib, options);
  const { rows, cols, group, maxq, nGroups, blockSize, staticGroups, perm, wt, scales, zeros, gIdx } = plan;
  let percDamp = plan.requestedDamp;
  let u: Float64Array | undefined;
  let damp = 0;
  for (let attempt = 0; ; attempt++) {
    const d = dampedHessian(plan, percDamp);
    damp = d.damp;
    u = upperCholeskyOfInverse(d.damped, cols);
    if (u) break;
    percDamp = nextDamping(plan, percDamp, attempt);
  }

  const curScale = new Float64Array(rows);
  const curZero = new Float64Array(rows);
  if (group === -1) for (let o = 0; o < rows; o++) [curScale[o], curZero[o]] = [scales[o]!, zeros[o]!];
  const q = new Float32Array(rows * cols);
  const codes = new Uint8Array(rows * cols);

  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(cols, i1 + blockSize);
    const count = i2 - i1;
    const w1 = wt.slice(i1 * rows, i2 * rows);
    const err1 = new Float64Array(count * rows);
    for (let i = 0; i < count; i++) {
      const p = i1 + i;
      if (staticGroups) {
        const k = Math.floor((perm ? perm[p]! : p) / group);
        for (let o = 0; o < rows; o++) [curScale[o], curZero[o]] = [scales[o * nGroups + k]!, zeros[o * nGroups + k]!];
      } else if (group !== -1 && p % group === 0) {
        // From W, not the block copy w1 (the reference's stale-weights behaviour).
        findParams(wt, rows, p, Math.min(cols, p + group), maxq, plan.sym, curScale, curZero);
        storeGroup(scales, zeros, nGroups, p / group, curScale, curZero);
      }
      const scale = curScale;
      const zero = curZero;
      const d = u[p * cols + p]!;
      const col = i * rows;
      const j = perm ? perm[p]! : p;
      for (let o = 0; o < rows; o++) {
        const s = scale[o]!;
        const z = zero[o]!;
        const code = gptqCode(w1[col + o]!, s, z, maxq);
        const value = fr(s * (code - z));
        codes[o * cols + j] = code;
        q[o * cols + j] = value;
        err1[col + o] = (w1[col + o]! - value) / d;
      }
      const uRow = p * cols;
      for (let k = i + 1; k < count; k++) {
        const f = u[uRow + i1 + k]!;
        if (f === 0) continue;
        const target = k * rows;
        for (let o = 0; o < rows; o++) w1[target + o] = w1[target + o]! - (f * err1[col + o]!);
      }
    }
    // W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    for (let c = i2; c < cols; c++) {
      const target = c * rows;
      for (let i = 0; i < count; i++) {
        const f = u[(i1 + i) * cols + c]!;
        if (f === 0) continue;
        const src = i * rows;
        for (let o = 0; o < rows; o++) wt[target + o] = wt[target + o]! - (f * err1[src + o]!);
      }
    }
  }
  return { shape, bits: plan.bits, group, sym: plan.sym, nGroups, q, codes, scales, zeros, gIdx, perm, damp, percDamp, deadColumns: plan.deadColumns, warnings: plan.warnings };
}

/** Q from the stored pieces: scales[o, g] * (codes[o, j] - zeros[o, g]) with g = gIdx[j], in float32. */
export function dequantizeGrouped(codes: Uint8Array, scales: Float32Array, zeros: Float32Array, gIdx: Int32Array, shape: MatrixShape): Float32Array {
  const { rows, cols } = shape;
  const nGroups = scales.length / rows;
  const out = new Float32Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    for (let j = 0; j < cols; j++) {
      const g = o * nGroups + gIdx[j]!;
      out[o * cols + j] = fr(scales[g]! * (codes[o * cols + j]! - zeros[g]!));
    }
  }
  return out;
}

/** Round-to-nearest with the GPTQ reference quantizer on natural groups: the baseline GPTQ is measured against. */
export function gptqRtn(weights: Float32Array, shape: MatrixShape, options: Pick<GptqOptions, "bits" | "group" | "sym">): Float32Array {
  const { rows, cols } = shape;
  assertShape(weights, shape, "weights");
  assertMethodBits("RTN", options.bits);
  assertGroupSize("RTN", options.group, cols);
  const maxq = 2 ** options.bits - 1;
  const g = options.group === -1 ? cols : options.group;
  const out = new Float32Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    for (let c0 = 0; c0 < cols; c0 += g) {
      const c1 = Math.min(cols, c0 + g);
      let lo = Infinity;
      let hi = -Infinity;
      for (let c = c0; c < c1; c++) {
        const v = weights[o * cols + c]!;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const { scale, zero } = gptqGroupParams(lo, hi, maxq, options.sym ?? false);
      for (let c = c0; c < c1; c++) out[o * cols + c] = fr(scale * (gptqCode(weights[o * cols + c]!, scale, zero, maxq) - zero));
    }
  }
  return out;
}
