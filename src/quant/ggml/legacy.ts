/**
 * llama.cpp's "legacy" 32-weight block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and Q8_K (the 256-weight
 * intermediate ggml quantizes activations to for K-quant dot products; GGUF files never store it).
 *
 * Bit-exact ports of ggml/src/ggml-quants.c: quantize_row_<fmt>_ref (no imatrix), quantize_row_<fmt>_impl
 * (what ggml_quantize_chunk runs when given an importance matrix; q8_0 and q8_K have none) and
 * dequantize_row_<fmt>. Every C float operation is one fr()-rounded float32 operation in C's order.
 *
 * Shaped for a WGSL port: one function per block over (array, offset) pairs, scratch arrays of fixed size,
 * no allocation or closures per block.
 *
 * Block layouts (little-endian, packed back to back, rows never padded; fp16 = IEEE binary16):
 *
 *   q4_0  32 weights, 18 bytes: d fp16 @0 | qs u8[16] @2
 *   q4_1  32 weights, 20 bytes: d fp16 @0 | m fp16 @2 | qs u8[16] @4
 *   q5_0  32 weights, 22 bytes: d fp16 @0 | qh u32 @2 (unaligned) | qs u8[16] @6
 *   q5_1  32 weights, 24 bytes: d fp16 @0 | m fp16 @2 | qh u32 @4 | qs u8[16] @8
 *   q8_0  32 weights, 34 bytes: d fp16 @0 | qs i8[32] @2
 *   q8_K 256 weights, 292 bytes: d f32 @0 | qs i8[256] @4 | bsums i16[16] @260
 *
 * In the 4/5-bit formats, weight e < 16 of a block is the low nibble of qs[e], weight e >= 16 the high
 * nibble of qs[e-16]; the 5th bit of weight e is bit e of qh. Values:
 *   q4_0 (q-8)*d   q4_1 q*d+m   q5_0 (q-16)*d   q5_1 q*d+m   q8_0 q*d   q8_K d*q, bsums[g] = sum of qs[16g..16g+15].
 */
import { decodeOutput, encodeOutput, type EncodeOptions, type MatrixShape, type QuantFormat, type RowLengthCheck } from "../format.ts";
import { assertFinite, assertImatrix, assertShape, QuantInputError } from "../errors.ts";
import { f32Bits, bitsToF32 } from "../../formats/float-bits.ts";
import { f16BitsToF32, fr, nearestInt, writeF16 } from "./common.ts";

const QK = 32;
const QK_K = 256;

/** ggml's GROUP_MAX_EPS: groups whose largest |x| is below it count as all zero. */
const GROUP_MAX_EPS = fr(1e-15);
const F32_0_1 = fr(0.1);

// ---------------------------------------------------------------------------------------------------------
// Scalar helpers for C conversions

/**
 * C's (int8_t) / (uint8_t) cast of a float: truncation toward zero. Only ±Inf and NaN (from a scale whose
 * reciprocal overflowed) fall out of range here; they give 0, as x86's cvttss2si plus the byte store does.
 */
function truncToInt(v: number): number {
  return v | 0;
}

/**
 * C's roundf: nearest integer, ties away from zero. floor(v + 0.5) is that except at negative ties
 * (-2.5 -> -2), fixed by a branch that is almost never taken: a sign-dependent branch per value would
 * mispredict half the time. Exact here because v + 0.5 is computed in double; an f32 WGSL port must not do
 * that (0.49999997f + 0.5f rounds to 1) and should compare v - trunc(v) with ±0.5 instead.
 */
function roundHalfAway(v: number): number {
  const t = v + 0.5;
  const r = Math.floor(t);
  return r === t && v < 0 ? r - 1 : r;
}

/**
 * ggml's nearest_int (round to nearest, ties to even) without a memory round trip: for |v| < 2^22,
 * v + 1.5*2^23 lands where the float32 spacing is exactly 1. Anything else (ggml's undefined range) goes
 * through the bit-level version in common.ts, which reproduces ggml's result there too.
 */
function nearestIntFast(v: number): number {
  return Math.abs(v) < 4194304 ? fr(v + 12582912) - 12582912 : nearestInt(v);
}

/** nearest_int for arguments known to satisfy |v| < 2^22 (ggml asserts |v| <= 4194303). */
function nearestIntSmall(v: number): number {
  return fr(v + 12582912) - 12582912;
}

/** fp16 bits -> float32 value for all 65536 codes (256 KiB), so decoders read scales with one load. */
let f16Table: Float32Array | undefined;
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** Little-endian u32 at any byte offset (q5_0's qh is not 4-byte aligned). */
function readU32(q: Uint8Array, off: number): number {
  return (q[off]! | (q[off + 1]! << 8) | (q[off + 2]! << 16) | (q[off + 3]! << 24)) >>> 0;
}
function writeU32(out: Uint8Array, off: number, v: number): void {
  out[off] = v & 0xff;
  out[off + 1] = (v >>> 8) & 0xff;
  out[off + 2] = (v >>> 16) & 0xff;
  out[off + 3] = v >>> 24;
}

// ---------------------------------------------------------------------------------------------------------
// Reference encoders (quantize_row_<fmt>_ref), one block each. x[xo..xo+block) -> out[oo..oo+blockBytes).

/** q4_0: d = (signed value of largest |x|) / -8; q = min(15, (int8)(x/d + 8.5)). */
export function encodeBlockQ4_0(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    const av = Math.abs(v);
    if (amax < av) {
      amax = av;
      max = v;
    }
  }
  const d = fr(max / -8);
  // id comes from the fp32 d, not the fp16 one stored.
  const id = d !== 0 ? fr(1 / d) : 0;
  writeF16(out, oo, d);
  for (let j = 0; j < QK / 2; j++) {
    const x0 = fr(x[xo + j]! * id);
    const x1 = fr(x[xo + QK / 2 + j]! * id);
    const q0 = Math.min(15, truncToInt(fr(x0 + 8.5)));
    const q1 = Math.min(15, truncToInt(fr(x1 + 8.5)));
    out[oo + 2 + j] = q0 | (q1 << 4);
  }
}

/** q4_1: d = (max-min)/15, m = min; q = min(15, (int8)((x-min)/d + 0.5)). */
export function encodeBlockQ4_1(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let min = 3.4028234663852886e38;
  let max = -3.4028234663852886e38;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d = fr(fr(max - min) / 15);
  const id = d !== 0 ? fr(1 / d) : 0;
  writeF16(out, oo, d);
  writeF16(out, oo + 2, min);
  for (let j = 0; j < QK / 2; j++) {
    const x0 = fr(fr(x[xo + j]! - min) * id);
    const x1 = fr(fr(x[xo + QK / 2 + j]! - min) * id);
    const q0 = Math.min(15, truncToInt(fr(x0 + 0.5)));
    const q1 = Math.min(15, truncToInt(fr(x1 + 0.5)));
    out[oo + 4 + j] = q0 | (q1 << 4);
  }
}

/** q5_0: d = (signed value of largest |x|) / -16; q = min(31, (int8)(x/d + 16.5)). */
export function encodeBlockQ5_0(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    const av = Math.abs(v);
    if (amax < av) {
      amax = av;
      max = v;
    }
  }
  const d = fr(max / -16);
  const id = d !== 0 ? fr(1 / d) : 0;
  writeF16(out, oo, d);
  let qh = 0;
  for (let j = 0; j < QK / 2; j++) {
    const x0 = fr(x[xo + j]! * id);
    const x1 = fr(x[xo + QK / 2 + j]! * id);
    const q0 = Math.min(31, truncToInt(fr(x0 + 16.5)));
    const q1 = Math.min(31, truncToInt(fr(x1 + 16.5)));
    out[oo + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + QK / 2);
  }
  writeU32(out, oo + 2, qh);
}

/** q5_1: d = (max-min)/31, m = min; q = (uint8)((x-min)/d + 0.5), with no clamp (ggml has none). */
export function encodeBlockQ5_1(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let min = 3.4028234663852886e38;
  let max = -3.4028234663852886e38;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d = fr(fr(max - min) / 31);
  const id = d !== 0 ? fr(1 / d) : 0;
  writeF16(out, oo, d);
  writeF16(out, oo + 2, min);
  let qh = 0;
  for (let j = 0; j < QK / 2; j++) {
    const x0 = fr(fr(x[xo + j]! - min) * id);
    const x1 = fr(fr(x[xo + QK / 2 + j]! - min) * id);
    const q0 = truncToInt(fr(x0 + 0.5)) & 0xff;
    const q1 = truncToInt(fr(x1 + 0.5)) & 0xff;
    out[oo + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + QK / 2);
  }
  writeU32(out, oo + 4, qh);
}

/** q8_0: d = max|x| / 127; q = roundf(x/d) (ties away from zero). */
export function encodeBlockQ8_0(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let amax = 0;
  for (let j = 0; j < QK; j++) {
    const av = Math.abs(x[xo + j]!);
    // MAX(amax, av) in C keeps amax unless av is larger.
    amax = amax > av ? amax : av;
  }
  const d = fr(amax / 127);
  const id = d !== 0 ? fr(1 / d) : 0;
  writeF16(out, oo, d);
  for (let j = 0; j < QK; j++) {
    out[oo + 2 + j] = roundHalfAway(fr(x[xo + j]! * id)) & 0xff;
  }
}

/**
 * q8_K: d = (signed value of largest |x|) / -127 kept as f32; q = min(127, nearest_int(x * -127/max)).
 * An all-zero block gets d = 0 and q = 0; ggml leaves its bsums unwritten, we write their true value, 0.
 */
export function encodeBlockQ8_K(x: Float32Array, xo: number, out: Uint8Array, oo: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK_K; j++) {
    const v = x[xo + j]!;
    const av = Math.abs(v);
    if (av > amax) {
      amax = av;
      max = v;
    }
  }
  if (amax === 0) {
    writeU32(out, oo, 0);
    for (let j = 0; j < QK_K + 32; j++) out[oo + 4 + j] = 0;
    return;
  }
  const iscale = fr(-127 / max);
  for (let g = 0; g < QK_K / 16; g++) {
    let sum = 0;
    for (let j = 16 * g; j < 16 * g + 16; j++) {
      // |iscale*x| <= 127 unless -127/max overflowed (|max| < 3.7e-37): then nearest_int's bit trick
      // decides, and the (int8_t) store wraps. bsums add the stored int8 values.
      const q = (Math.min(127, nearestIntFast(fr(iscale * x[xo + j]!))) << 24) >> 24;
      out[oo + 4 + j] = q & 0xff;
      sum += q;
    }
    out[oo + 260 + 2 * g] = sum & 0xff;
    out[oo + 260 + 2 * g + 1] = (sum >> 8) & 0xff;
  }
  writeU32(out, oo, f32Bits(fr(1 / iscale)));
}

// ---------------------------------------------------------------------------------------------------------
// Importance-weighted encoders (quantize_row_<fmt>_impl). The caller computes per-block weights
// w[j] = imatrix[col] * sqrt(sigma2 + x[j]^2), sigma2 = mean of x^2 over the whole row.

// Per-block scratch of the searches (fixed size: function-local arrays in a WGSL port).
const levels = new Uint8Array(QK);
const levelsAux = new Uint8Array(QK);
const weightedX = new Float32Array(QK);
const shiftedX = new Float32Array(QK);

/**
 * ggml's make_qx_quants with rmse_type 1 and explicit weights: symmetric levels -nmax..nmax-1, the
 * scale picked among 19 candidates -(nmax + 0.1*is)/max by weighted least squares. Writes L[i] = level + nmax
 * and returns the scale (0 for an all-zero group).
 */
function makeQxQuantsWeighted(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return 0;
  }
  // C evaluates w*x[i]*l as (w*x[i])*l; the first product is the same for every candidate scale.
  const wx = weightedX;
  for (let i = 0; i < n; i++) wx[i] = fr(w[i]! * x[xo + i]!);
  // Every candidate has |iscale*x| <= nmax + 0.9 (|x| <= |max|, and |max| >= 1e-15 keeps iscale finite),
  // well inside the range where nearest_int is plain arithmetic.
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    let l = nearestIntSmall(fr(iscale * x[xo + i]!));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[i] = l + nmax;
    sumlx = fr(sumlx + fr(wx[i]! * l));
    suml2 = fr(suml2 + fr(fr(w[i]! * l) * l));
  }
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(F32_0_1 * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      let l = nearestIntSmall(fr(iscale * x[xo + i]!));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      sumlx = fr(sumlx + fr(wx[i]! * l));
      suml2 = fr(suml2 + fr(fr(w[i]! * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestIntSmall(fr(iscale * x[xo + i]!));
        L[i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

/** Scratch result of makeQkx3QuantsWeighted: the offset ggml returns through its `the_min` pointer. */
const qkx3Min = new Float32Array(1);

/**
 * ggml's make_qkx3_quants with explicit weights and squared error (use_mad = false): asymmetric levels
 * 0..nmax, scale and min refit by weighted least squares over nstep+1 candidate grids. Writes L, returns the
 * scale, leaves -min in qkx3Min[0]. Note ggml's quirk, kept: after an improvement, later candidates are
 * built from the improved min, not the block's.
 */
function makeQkx3QuantsWeighted(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = w[0]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const wi = w[i]!;
    sumW = fr(sumW + wi);
    sumX = fr(sumX + fr(wi * xi));
  }
  if (min > 0) min = 0;
  if (max <= min) {
    for (let i = 0; i < n; i++) L[i] = 0;
    qkx3Min[0] = -min;
    return 0;
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestErr = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = nearestIntFast(fr(iscale * fr(xi - min)));
    const q = Math.max(0, Math.min(nmax, l));
    L[i] = q;
    let diff = fr(fr(fr(scale * q) + min) - xi);
    diff = fr(diff * diff);
    bestErr = fr(bestErr + fr(w[i]! * diff));
  }
  // x[i] - min for the current min (C recomputes it in every pass; it only changes with min).
  const xm = shiftedX;
  for (let i = 0; i < n; i++) xm[i] = fr(x[xo + i]! - min);
  for (let is = 0; is <= nstep; is++) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      // ggml of the golden vectors' era rounds, then clamps; newer llama.cpp clamps first (identical
      // unless |iscale*(x-min)| > 4194303, where nearest_int is undefined).
      let l = nearestIntFast(fr(iscale * xm[i]!));
      l = Math.max(0, Math.min(nmax, l));
      Laux[i] = l;
      const wl = fr(w[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[xo + i]!));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let err = 0;
      for (let i = 0; i < n; i++) {
        let diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = fr(diff * diff);
        err = fr(err + fr(w[i]! * diff));
      }
      if (err < bestErr) {
        for (let i = 0; i < n; i++) L[i] = Laux[i]!;
        bestErr = err;
        scale = thisScale;
        min = thisMin;
        for (let i = 0; i < n; i++) xm[i] = fr(x[xo + i]! - min);
      }
    }
  }
  qkx3Min[0] = -min;
  return scale;
}


/** q4_0 with weights: levels 0..15 from make_qx_quants(nmax 8); d is the fitted scale. */
export function encodeBlockQ4_0Weighted(
  x: Float32Array,
  xo: number,
  w: Float32Array,
  out: Uint8Array,
  oo: number,
): void {
  const d = makeQxQuantsWeighted(QK, 8, x, xo, w, levels);
  writeF16(out, oo, d);
  for (let j = 0; j < 16; j++) out[oo + 2 + j] = levels[j]! | (levels[j + 16]! << 4);
}

/** q4_1 with weights: levels 0..15 and min from make_qkx3_quants(nmax 15, rmin -0.9, rdelta 0.05, 36 steps). */
export function encodeBlockQ4_1Weighted(
  x: Float32Array,
  xo: number,
  w: Float32Array,
  out: Uint8Array,
  oo: number,
): void {
  const d = makeQkx3QuantsWeighted(QK, 15, x, xo, w, levels, levelsAux, fr(-0.9), fr(0.05), 36);
  writeF16(out, oo, d);
  writeF16(out, oo + 2, -qkx3Min[0]!);
  for (let j = 0; j < 16; j++) out[oo + 4 + j] = levels[j]! | (levels[j + 16]! << 4);
}

/** q5_0 with weights: levels 0..31 from make_qx_quants(nmax 16). */
export function encodeBlockQ5_0Weighted(
  x: Float32Array,
  xo: number,
  w: Float32Array,
  out: Uint8Array,
  oo: number,
): void {
  const d = makeQxQuantsWeighted(QK, 16, x, xo, w, levels);
  writeF16(out, oo, d);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = levels[j]!;
    const q1 = levels[j + 16]!;
    out[oo + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(out, oo + 2, qh);
}

/** q5_1 with weights: levels 0..31 and min from make_qkx3_quants(nmax 31, rmin -0.9, rdelta 0.05, 36 steps). */
export function encodeBlockQ5_1Weighted(
  x: Float32Array,
  xo: number,
  w: Float32Array,
  out: Uint8Array,
  oo: number,
): void {
  const d = makeQkx3QuantsWeighted(QK, 31, x, xo, w, levels, levelsAux, fr(-0.9), fr(0.05), 36);
  writeF16(out, oo, d);
  writeF16(out, oo + 2, -qkx3Min[0]!);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = levels[j]!;
    const q1 = levels[j + 16]!;
    out[oo + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(out, oo + 4, qh);
}

/** sigma2 of quantize_row_<fmt>_impl: the mean of x^2 over the whole row, summed in order in float32. */
export function rowSigma2(x: Float32Array, xo: number, cols: number): number {
  let sumX2 = 0;
  for (let j = 0; j < cols; j++) {
    const v = x[xo + j]!;
    sumX2 = fr(sumX2 + fr(v * v));
  }
  return fr(sumX2 / cols);
}

/** The per-weight importance of quantize_row_<fmt>_impl: qw[j] * sqrt(sigma2 + x[j]^2). */
export function importanceWeights(
  x: Float32Array,
  xo: number,
  imatrix: Float32Array,
  io: number,
  sigma2: number,
  w: Float32Array,
): void {
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j]!;
    w[j] = fr(imatrix[io + j]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoders (dequantize_row_<fmt>), one block each. Products of an fp16 scale and a small integer are
// exact in float32; the Float32Array store does the single rounding C does.

export function decodeBlockQ4_0(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const f16 = f16ToF32Table();
  const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
  for (let j = 0; j < QK / 2; j++) {
    const b = q[qo + 2 + j]!;
    y[yo + j] = ((b & 0x0f) - 8) * d;
    y[yo + j + QK / 2] = ((b >>> 4) - 8) * d;
  }
}

export function decodeBlockQ4_1(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const f16 = f16ToF32Table();
  const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
  const m = f16[q[qo + 2]! | (q[qo + 3]! << 8)]!;
  for (let j = 0; j < QK / 2; j++) {
    const b = q[qo + 4 + j]!;
    // x*d + m: two float32 roundings in C (no FMA); the first is exact, the store does the second.
    y[yo + j] = (b & 0x0f) * d + m;
    y[yo + j + QK / 2] = (b >>> 4) * d + m;
  }
}

export function decodeBlockQ5_0(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const f16 = f16ToF32Table();
  const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
  const qh = readU32(q, qo + 2);
  for (let j = 0; j < QK / 2; j++) {
    const b = q[qo + 6 + j]!;
    const h0 = ((qh >>> j) << 4) & 0x10;
    const h1 = (qh >>> (j + 12)) & 0x10;
    y[yo + j] = (((b & 0x0f) | h0) - 16) * d;
    y[yo + j + QK / 2] = (((b >>> 4) | h1) - 16) * d;
  }
}

export function decodeBlockQ5_1(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const f16 = f16ToF32Table();
  const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
  const m = f16[q[qo + 2]! | (q[qo + 3]! << 8)]!;
  const qh = readU32(q, qo + 4);
  for (let j = 0; j < QK / 2; j++) {
    const b = q[qo + 8 + j]!;
    const h0 = ((qh >>> j) << 4) & 0x10;
    const h1 = (qh >>> (j + 12)) & 0x10;
    y[yo + j] = ((b & 0x0f) | h0) * d + m;
    y[yo + j + QK / 2] = ((b >>> 4) | h1) * d + m;
  }
}

export function decodeBlockQ8_0(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const f16 = f16ToF32Table();
  const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
  for (let j = 0; j < QK; j++) {
    y[yo + j] = ((q[qo + 2 + j]! << 24) >> 24) * d;
  }
}

export function decodeBlockQ8_K(q: Uint8Array, qo: number, y: Float32Array, yo: number): void {
  const d = bitsToF32(readU32(q, qo));
  for (let j = 0; j < QK_K; j++) {
    y[yo + j] = d * ((q[qo + 4 + j]! << 24) >> 24);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Whole-tensor drivers. Each format has its own block loop so the per-block call is monomorphic and
// inlined; a loop shared by six formats would call through a megamorphic site every 32 weights.

/** Encodes `blocks` consecutive blocks of x into out. */
type BlockRunEncoder = (x: Float32Array, out: Uint8Array, blocks: number) => void;
type WeightedBlockEncoder = (x: Float32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number) => void;
/** Decodes `blocks` consecutive blocks of q into y. */
type BlockRunDecoder = (q: Uint8Array, y: Float32Array, blocks: number) => void;

function encodeRunQ4_0(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ4_0(x, b * QK, out, b * 18);
}
function encodeRunQ4_1(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ4_1(x, b * QK, out, b * 20);
}
function encodeRunQ5_0(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ5_0(x, b * QK, out, b * 22);
}
function encodeRunQ5_1(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ5_1(x, b * QK, out, b * 24);
}
function encodeRunQ8_0(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ8_0(x, b * QK, out, b * 34);
}
function encodeRunQ8_K(x: Float32Array, out: Uint8Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) encodeBlockQ8_K(x, b * QK_K, out, b * 292);
}
function decodeRunQ4_0(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ4_0(q, b * 18, y, b * QK);
}
function decodeRunQ4_1(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ4_1(q, b * 20, y, b * QK);
}
function decodeRunQ5_0(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ5_0(q, b * 22, y, b * QK);
}
function decodeRunQ5_1(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ5_1(q, b * 24, y, b * QK);
}
function decodeRunQ8_0(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ8_0(q, b * 34, y, b * QK);
}
function decodeRunQ8_K(q: Uint8Array, y: Float32Array, blocks: number): void {
  for (let b = 0; b < blocks; b++) decodeBlockQ8_K(q, b * 292, y, b * QK_K);
}

interface LegacySpec {
  id: string;
  ggmlType: number;
  blockWeights: number;
  blockBytes: number;
  description: string;
  /** What checkRowLength suggests when the block does not divide a row. */
  fallback: string | undefined;
  fallbackNote: string;
}

function checkRowLength(spec: LegacySpec, cols: number): RowLengthCheck {
  if (Number.isInteger(cols) && cols >= 0 && cols % spec.blockWeights === 0) return { ok: true };
  const reason = `rows of ${cols} weights are not a multiple of ${spec.blockWeights}, the ${spec.id} block size; ${spec.fallbackNote}`;
  return spec.fallback === undefined ? { ok: false, reason } : { ok: false, reason, fallback: spec.fallback };
}

/** Validates the input and returns the zero-filled output, or throws QuantInputError. */
function prepareEncode(spec: LegacySpec, x: Float32Array, shape: MatrixShape, opts: EncodeOptions | undefined): Uint8Array {
  const tensor = opts?.tensorName;
  assertShape(x, shape, tensor);
  const check = checkRowLength(spec, shape.cols);
  if (!check.ok) {
    throw new QuantInputError("row-length", check.reason, { tensor, fallback: check.fallback });
  }
  assertFinite(x, shape, tensor);
  if (opts?.imatrix) assertImatrix(opts.imatrix, shape.cols, tensor);
  // Every block encoder stores all of its block's bytes.
  return encodeOutput(opts?.out, encodedBytes(spec, shape), false, tensor);
}

function prepareDecode(spec: LegacySpec, q: Uint8Array, shape: MatrixShape, out: Float32Array | undefined): Float32Array {
  const check = checkRowLength(spec, shape.cols);
  if (!check.ok) throw new QuantInputError("row-length", check.reason, { fallback: check.fallback });
  const expected = encodedBytes(spec, shape);
  if (q.length !== expected) {
    throw new QuantInputError(
      "shape",
      `${q.length} bytes of ${spec.id} do not make a ${shape.rows}x${shape.cols} tensor (expected ${expected})`,
    );
  }
  return decodeOutput(out, shape.rows * shape.cols);
}

function encodedBytes(spec: LegacySpec, shape: MatrixShape): number {
  return shape.rows * Math.ceil(shape.cols / spec.blockWeights) * spec.blockBytes;
}

const weightScratch = new Float32Array(QK);

function encodeWith(
  spec: LegacySpec,
  encodeRun: BlockRunEncoder,
  encodeWeighted: WeightedBlockEncoder | undefined,
  x: Float32Array,
  shape: MatrixShape,
  opts: EncodeOptions | undefined,
): Uint8Array {
  const out = prepareEncode(spec, x, shape, opts);
  const { rows, cols } = shape;
  const nb = cols / spec.blockWeights;
  const imatrix = opts?.imatrix;
  if (imatrix && encodeWeighted) {
    for (let r = 0; r < rows; r++) {
      const xr = r * cols;
      const sigma2 = rowSigma2(x, xr, cols);
      for (let b = 0; b < nb; b++) {
        importanceWeights(x, xr + b * QK, imatrix, b * QK, sigma2, weightScratch);
        encodeWeighted(x, xr + b * QK, weightScratch, out, (r * nb + b) * spec.blockBytes);
      }
    }
    return out;
  }
  encodeRun(x, out, rows * nb);
  return out;
}

function decodeWith(
  spec: LegacySpec,
  decodeRun: BlockRunDecoder,
  q: Uint8Array,
  shape: MatrixShape,
  out: Float32Array | undefined,
): Float32Array {
  const y = prepareDecode(spec, q, shape, out);
  decodeRun(q, y, shape.rows * (shape.cols / spec.blockWeights));
  return y;
}

/**
 * llama.cpp has no fallback for these types: when a tensor's row is not a multiple of 32, llama-quantize's
 * tensor_type_fallback (llama_tensor_get_type in older versions) throws ("no tensor type fallback is defined
 * for type q4_0", formerly "Unsupported tensor size encountered"). F16 is what it uses when even a K-quant's
 * 32-block fallback does not fit, so that is what we suggest.
 */
const LEGACY_FALLBACK_NOTE =
  "llama-quantize stops on such a tensor (it has no fallback for 32-weight types); keep it in f16, as it does for K-quants whose fallback does not fit either";

function makeFormat(
  spec: LegacySpec,
  encodeRun: BlockRunEncoder,
  encodeWeighted: WeightedBlockEncoder | undefined,
  decodeRun: BlockRunDecoder,
): QuantFormat {
  return {
    id: spec.id,
    family: "gguf",
    description: spec.description,
    blockWeights: spec.blockWeights,
    blockBytes: spec.blockBytes,
    ggmlType: spec.ggmlType,
    checkRowLength: (cols) => checkRowLength(spec, cols),
    encodedBytes: (shape) => encodedBytes(spec, shape),
    encode: (x, shape, opts) => encodeWith(spec, encodeRun, encodeWeighted, x, shape, opts),
    decode: (q, shape, out) => decodeWith(spec, decodeRun, q, shape, out),
  };
}

function legacySpec(id: string, ggmlType: number, blockBytes: number, description: string): LegacySpec {
  return { id, ggmlType, blockWeights: QK, blockBytes, description, fallback: "f16", fallbackNote: LEGACY_FALLBACK_NOTE };
}

export const Q4_0: QuantFormat = makeFormat(
  legacySpec("q4_0", 2, 18, "4-bit, blocks of 32 with one fp16 scale (symmetric)"),
  encodeRunQ4_0,
  encodeBlockQ4_0Weighted,
  decodeRunQ4_0,
);
export const Q4_1: QuantFormat = makeFormat(
  legacySpec("q4_1", 3, 20, "4-bit, blocks of 32 with an fp16 scale and minimum"),
  encodeRunQ4_1,
  encodeBlockQ4_1Weighted,
  decodeRunQ4_1,
);
export const Q5_0: QuantFormat = makeFormat(
  legacySpec("q5_0", 6, 22, "5-bit, blocks of 32 with one fp16 scale (symmetric)"),
  encodeRunQ5_0,
  encodeBlockQ5_0Weighted,
  decodeRunQ5_0,
);
export const Q5_1: QuantFormat = makeFormat(
  legacySpec("q5_1", 7, 24, "5-bit, blocks of 32 with an fp16 scale and minimum"),
  encodeRunQ5_1,
  encodeBlockQ5_1Weighted,
  decodeRunQ5_1,
);
/** ggml's q8_0 ignores an importance matrix. */
export const Q8_0: QuantFormat = makeFormat(
  legacySpec("q8_0", 8, 34, "8-bit, blocks of 32 with one fp16 scale (symmetric)"),
  encodeRunQ8_0,
  undefined,
  decodeRunQ8_0,
);
/** Not a file format: the activation type of K-quant dot products. No imatrix variant. */
export const Q8_K: QuantFormat = makeFormat(
  {
    id: "q8_K",
    ggmlType: 15,
    blockWeights: QK_K,
    blockBytes: 292,
    description: "8-bit, super-blocks of 256 with an f32 scale and 16 block sums (llama.cpp's K-quant dot-product intermediate; not stored in GGUF)",
    fallback: undefined,
    fallbackNote: "q8_K only exists for 256-weight K-quant dot products, so there is no fallback",
  },
  encodeRunQ8_K,
  undefined,
  decodeRunQ8_K,
);

export const GGML_LEGACY_FORMATS: QuantFormat[] = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_K];
