/**
 * q4_K: 4-bit K-quant (GGML_TYPE_Q4_K = 12), 4.5 bits per weight.
 *
 * Block: 256 weights in 144 bytes, 8 sub-blocks of 32 weights, y = (d*sc_j)*q - dmin*m_j with q in 0..15.
 *   offset  size  field
 *        0     2  d       fp16, super-block scale of the scales
 *        2     2  dmin    fp16, super-block scale of the mins
 *        4    12  scales  8 6-bit scales sc_j and 8 6-bit mins m_j (packing: putScaleMinK4 / getScaleMinK4)
 *       16   128  qs      u8[128]: weight e = 64c + 32t + l (c<4, t<2, l<32) is qs[32c+l] low nibble (t=0)
 *                         or high nibble (t=1)
 */
import { nearestInt, readF16, writeF16 } from "./common.ts";
import { makeKQuantFormat, type KQuantScratch } from "./kquant-format.ts";
import { makeQkx2Quants, makeQkx3Quants, makeQpQuants } from "./kquant-search.ts";

export const Q4_K_BLOCK_BYTES = 144;
const D = 0;
const DMIN = 2;
const SCALES = 4;
const QS = 16;

// make_qkx*_quants' candidate grids: rmin + rdelta*is for is = 0..nstep.
const RMIN_REF = Math.fround(-1);
const RDELTA_REF = Math.fround(0.1);
const RMIN_IMATRIX = Math.fround(-0.9);
const RDELTA_IMATRIX = Math.fround(0.05);

/**
 * The 12-byte scale/min packing of q4_K and q5_K, sub-block j (call with j = 0..7 in order): j<4 keeps
 * 6 bits in scales[j] (scale) and scales[j+4] (min); j>=4 puts the low nibbles in scales[j+4] and the top
 * 2 bits in the spare top bits of scales[j-4] (scale) and scales[j] (min).
 */
export function putScaleMinK4(out: Uint8Array, sc: number, j: number, ls: number, lm: number): void {
  if (j < 4) {
    out[sc + j] = ls;
    out[sc + j + 4] = lm;
  } else {
    out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
    out[sc + j - 4] = out[sc + j - 4]! | ((ls >> 4) << 6);
    out[sc + j] = out[sc + j]! | ((lm >> 4) << 6);
  }
}

/** get_scale_min_k4: sub-block j's 6-bit scale. */
export function getScaleK4(q: Uint8Array, sc: number, j: number): number {
  return j < 4 ? q[sc + j]! & 63 : (q[sc + j + 4]! & 0xf) | ((q[sc + j - 4]! >> 6) << 4);
}

/** get_scale_min_k4: sub-block j's 6-bit min. */
export function getMinK4(q: Uint8Array, sc: number, j: number): number {
  return j < 4 ? q[sc + j + 4]! & 63 : (q[sc + j + 4]! >> 4) | ((q[sc + j]! >> 6) << 4);
}

/**
 * The reference encoders' scale step (q4_K and q5_K): quantize the 8 sub-block scales and mins to 6
 * bits against the largest of each, store d = max_scale/63 and dmin = max_min/63.
 */
export function packScalesRefK4(out: Uint8Array, oo: number, scales: Float32Array, mins: Float32Array): void {
  const fr = Math.fround;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    if (scales[j]! > maxScale) maxScale = scales[j]!;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    const ls = nearestInt(fr(invScale * scales[j]!)) & 0xff; // uint8_t ls = nearest_int(...)
    const lm = nearestInt(fr(invMin * mins[j]!)) & 0xff;
    putScaleMinK4(out, oo + SCALES, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
  }
  writeF16(out, oo + D, fr(maxScale / 63));
  writeF16(out, oo + DMIN, fr(maxMin / 63));
}

/**
 * The imatrix encoders' weights and per-sub-block search (q4_K and q5_K): weights
 * qw * sqrt(sigma2 + x^2) with sigma2 = 2*mean(x^2) over the super-block, then make_qkx3_quants.
 */
export function searchImatrixK4(
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  nmax: number,
  s: KQuantScratch,
): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins, sw } = s;
  let sumX2 = 0;
  for (let l = 0; l < 256; l++) sumX2 = fr(sumX2 + fr(x[xo + l]! * x[xo + l]!));
  const sigma2 = fr(fr(2 * sumX2) / 256);
  for (let j = 0; j < 8; j++) {
    for (let l = 0; l < 32; l++) {
      const xi = x[xo + 32 * j + l]!;
      weights[l] = fr(qw[qwo + 32 * j + l]! * fr(Math.sqrt(fr(sigma2 + fr(xi * xi)))));
    }
    let sumw = 0;
    for (let l = 0; l < 32; l++) sumw = fr(sumw + weights[l]!);
    sw[j] = sumw;
    scales[j] = makeQkx3Quants(32, nmax, x, xo + 32 * j, weights, L, 32 * j, Laux, s.xm, RMIN_IMATRIX, RDELTA_IMATRIX, 36, false, mins, j);
  }
}

/** The reference encoders' per-sub-block search (q4_K and q5_K): weights av_x + |x|, make_qkx2_quants. */
export function searchRefK4(
  x: Float32Array,
  xo: number,
  nmax: number,
  rmin: number,
  rdelta: number,
  nstep: number,
  s: KQuantScratch,
): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins } = s;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + 32 * j + l]! * x[xo + 32 * j + l]!));
    const avX = fr(Math.sqrt(fr(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = fr(avX + Math.abs(x[xo + 32 * j + l]!));
    scales[j] = makeQkx2Quants(32, nmax, x, xo + 32 * j, weights, L, 32 * j, Laux, s.xm, rmin, rdelta, nstep, false, mins, j);
  }
}

/** Requantize every weight against the stored fp16 scales (q4_K: nmax 15, q5_K: nmax 31) into L. */
export function requantizeK4(x: Float32Array, xo: number, out: Uint8Array, oo: number, nmax: number, L: Uint8Array): void {
  const fr = Math.fround;
  const d = readF16(out, oo + D);
  const dmin = readF16(out, oo + DMIN);
  const sc = oo + SCALES;
  const top = nmax | 0;
  for (let j = 0; j < 8; j++) {
    const dl = fr(d * getScaleK4(out, sc, j));
    if (dl === 0) continue; // keeps the search's levels, as ggml does
    const ml = fr(dmin * getMinK4(out, sc, j));
    const xj = xo + 32 * j;
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(fr(fr(x[xj + ii]! + ml) / dl));
      L[32 * j + ii] = l < 0 ? 0 : l > top ? top : l;
    }
  }
}

function pack(out: Uint8Array, oo: number, L: Uint8Array): void {
  let q = oo + QS;
  for (let j = 0; j < 256; j += 64) {
    for (let l = 0; l < 32; l++) out[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
    q += 32;
  }
}

/** quantize_row_q4_K_ref, one super-block. */
export function encodeBlockQ4KRef(
  x: Float32Array,
  xo: number,
  _qw: Float32Array,
  _qwo: number,
  out: Uint8Array,
  oo: number,
  s: KQuantScratch,
): void {
  searchRefK4(x, xo, 15, RMIN_REF, RDELTA_REF, 20, s);
  packScalesRefK4(out, oo, s.scales, s.mins);
  requantizeK4(x, xo, out, oo, 15, s.L);
  pack(out, oo, s.L);
}

/** quantize_row_q4_K_impl with quant_weights, one super-block. */
export function encodeBlockQ4KImatrix(
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  out: Uint8Array,
  oo: number,
  s: KQuantScratch,
): void {
  searchImatrixK4(x, xo, qw, qwo, 15, s);
  const dBlock = makeQpQuants(8, 63, s.scales, s.Ls, s.sw);
  const mBlock = makeQpQuants(8, 63, s.mins, s.Lm, s.sw);
  for (let j = 0; j < 8; j++) putScaleMinK4(out, oo + SCALES, j, s.Ls[j]!, s.Lm[j]!);
  writeF16(out, oo + D, dBlock);
  writeF16(out, oo + DMIN, mBlock);
  requantizeK4(x, xo, out, oo, 15, s.L);
  pack(out, oo, s.L);
}

/**
 * dequantize_row_q4_K. (d*sc)*q is exact in float32 (at most 21 significant bits), so the only rounding
 * is the subtraction's, done by the Float32Array store as in C.
 */
export function decodeQ4K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  for (let b = 0; b < blocks; b++, qo += Q4_K_BLOCK_BYTES, yo += 256) {
    const d = readF16(q, qo + D);
    const dmin = readF16(q, qo + DMIN);
    for (let c = 0; c < 4; c++) {
      const qs = qo + QS + 32 * c;
      const d1 = d * getScaleK4(q, qo + SCALES, 2 * c);
      const m1 = dmin * getMinK4(q, qo + SCALES, 2 * c);
      const d2 = d * getScaleK4(q, qo + SCALES, 2 * c + 1);
      const m2 = dmin * getMinK4(q, qo + SCALES, 2 * c + 1);
      for (let l = 0; l < 32; l += 8) decodeNibbles8(q, qs + l, d1, m1, d2, m2, y, yo + 64 * c + l);
    }
  }
}

/**
 * Bytes q[qs..qs+8) of a 32-byte qs group: low nibbles are weights yo..yo+8 (scale d1, min m1), high
 * nibbles weights yo+32.. (d2, m2). Written out 8 wide, as common.ts's decoder steps (see there why).
 */
function decodeNibbles8(q: Uint8Array, qs: number, d1: number, m1: number, d2: number, m2: number, y: Float32Array, yo: number): void {
  const v0 = q[qs]!;
  y[yo] = d1 * (v0 & 0xf) - m1;
  y[yo + 32] = d2 * (v0 >> 4) - m2;
  const v1 = q[qs + 1]!;
  y[yo + 1] = d1 * (v1 & 0xf) - m1;
  y[yo + 33] = d2 * (v1 >> 4) - m2;
  const v2 = q[qs + 2]!;
  y[yo + 2] = d1 * (v2 & 0xf) - m1;
  y[yo + 34] = d2 * (v2 >> 4) - m2;
  const v3 = q[qs + 3]!;
  y[yo + 3] = d1 * (v3 & 0xf) - m1;
  y[yo + 35] = d2 * (v3 >> 4) - m2;
  const v4 = q[qs + 4]!;
  y[yo + 4] = d1 * (v4 & 0xf) - m1;
  y[yo + 36] = d2 * (v4 >> 4) - m2;
  const v5 = q[qs + 5]!;
  y[yo + 5] = d1 * (v5 & 0xf) - m1;
  y[yo + 37] = d2 * (v5 >> 4) - m2;
  const v6 = q[qs + 6]!;
  y[yo + 6] = d1 * (v6 & 0xf) - m1;
  y[yo + 38] = d2 * (v6 >> 4) - m2;
  const v7 = q[qs + 7]!;
  y[yo + 7] = d1 * (v7 & 0xf) - m1;
  y[yo + 39] = d2 * (v7 >> 4) - m2;
}

export const Q4_K = makeKQuantFormat({
  id: "q4_K",
  ggmlType: 12,
  blockBytes: Q4_K_BLOCK_BYTES,
  description: "4-bit K-quant: super-blocks of 256, 8 sub-blocks with 6-bit scales and mins (4.5 bpw)",
  fallback: "q5_0",
  encodeRef: encodeBlockQ4KRef,
  encodeImatrix: encodeBlockQ4KImatrix,
  decode: decodeQ4K,
});
