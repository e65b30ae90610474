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
import { importanceWeights, nearestInt, readF16, sumOfSquares, writeF16 } from "./common.ts";
import { makeKQuantFormat, requantizeSubBlock, type KBlockEncoder, type KQuantScratch } from "./kquant-format.ts";
import { makeQkxQuants, makeQpQuants, QKX3_IMATRIX, type QkxSearch } from "./kquant-search.ts";

export const Q4_K_BLOCK_BYTES = 144;
const D = 0;
const DMIN = 2;
const SCALES = 4;
const QS = 16;

/** quantize_row_q4_K_ref's search: make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1.f, 0.1f, 20, false). */
const SEARCH_REF: QkxSearch = { fn: "make_qkx2_quants", rmin: Math.fround(-1), rdelta: Math.fround(0.1), nstep: 20, useMad: false };

/**
 * The 12-byte scale/min packing of q4_K and q5_K, sub-block j (call with j = 0..7 in order): j<4 keeps
 * 6 bits in scales[j] (scale) and scales[j+4] (min); j>=4 puts the low nibbles in scales[j+4] and the top
 * 2 bits in the spare top bits of scales[j-4] (scale) and scales[j] (min).
 */
function putScaleMinK4(out: Uint8Array, sc: number, j: number, ls: number, lm: number): void {
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
function packScalesRefK4(out: Uint8Array, oo: number, scales: Float32Array, mins: Float32Array): void {
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
function searchImatrixK4(
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  nmax: number,
  s: KQuantScratch,
): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins, sw } = s;
  const sigma2 = fr(fr(2 * sumOfSquares(x, xo, 256)) / 256);
  for (let j = 0; j < 8; j++) {
    sw[j] = importanceWeights(x, xo + 32 * j, qw, qwo + 32 * j, sigma2, 32, weights, 0);
    scales[j] = makeQkxQuants(32, nmax, x, xo + 32 * j, weights, L, 32 * j, Laux, s.xm, QKX3_IMATRIX, mins, j);
  }
}

/** The reference encoders' per-sub-block search (q4_K and q5_K): weights av_x + |x|, make_qkx2_quants. */
function searchRefK4(x: Float32Array, xo: number, nmax: number, search: QkxSearch, s: KQuantScratch): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins } = s;
  for (let j = 0; j < 8; j++) {
    const avX = fr(Math.sqrt(fr(sumOfSquares(x, xo + 32 * j, 32) / 32)));
    for (let l = 0; l < 32; l++) weights[l] = fr(avX + Math.abs(x[xo + 32 * j + l]!));
    scales[j] = makeQkxQuants(32, nmax, x, xo + 32 * j, weights, L, 32 * j, Laux, s.xm, search, mins, j);
  }
}

/** Requantize every weight against the stored fp16 scales (q4_K: nmax 15, q5_K: nmax 31) into L. */
function requantizeK4(x: Float32Array, xo: number, out: Uint8Array, oo: number, nmax: number, L: Uint8Array): void {
  const fr = Math.fround;
  const d = readF16(out, oo + D);
  const dmin = readF16(out, oo + DMIN);
  const sc = oo + SCALES;
  for (let j = 0; j < 8; j++) {
    requantizeSubBlock(x, xo + 32 * j, 32, fr(d * getScaleK4(out, sc, j)), fr(dmin * getMinK4(out, sc, j)), 0, nmax, L, 32 * j);
  }
}

function pack(out: Uint8Array, oo: number, L: Uint8Array): void {
  let q = oo + QS;
  for (let j = 0; j < 256; j += 64) {
    for (let l = 0; l < 32; l++) out[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
    q += 32;
  }
}

/** What q4_K and q5_K do differently around the same steps: the level range, the reference search, the packing. */
export interface K4Variant {
  readonly nmax: number;
  readonly searchRef: QkxSearch;
  /** Writes the 256 levels L (0..nmax) into the block's qs (and qh). */
  readonly pack: (out: Uint8Array, oo: number, L: Uint8Array) => void;
}

/** quantize_row_q4_K_ref / quantize_row_q5_K_ref, one super-block. */
export function k4RefEncoder(v: K4Variant): KBlockEncoder {
  return (x, xo, _qw, _qwo, out, oo, s) => {
    searchRefK4(x, xo, v.nmax, v.searchRef, s);
    packScalesRefK4(out, oo, s.scales, s.mins);
    requantizeK4(x, xo, out, oo, v.nmax, s.L);
    v.pack(out, oo, s.L);
  };
}

/**
 * quantize_row_q4_K_impl / quantize_row_q5_K_impl with quant_weights, one super-block. (q5_K's C clamps the
 * 6-bit scale levels with MIN(63, ...), a no-op: make_qp_quants' levels are at most nmax = 63.)
 */
export function k4ImatrixEncoder(v: K4Variant): KBlockEncoder {
  return (x, xo, qw, qwo, out, oo, s) => {
    searchImatrixK4(x, xo, qw, qwo, v.nmax, s);
    const dBlock = makeQpQuants(8, 63, s.scales, s.Ls, s.sw);
    const mBlock = makeQpQuants(8, 63, s.mins, s.Lm, s.sw);
    for (let j = 0; j < 8; j++) putScaleMinK4(out, oo + SCALES, j, s.Ls[j]!, s.Lm[j]!);
    writeF16(out, oo + D, dBlock);
    writeF16(out, oo + DMIN, mBlock);
    requantizeK4(x, xo, out, oo, v.nmax, s.L);
    v.pack(out, oo, s.L);
  };
}

const Q4_K_VARIANT: K4Variant = { nmax: 15, searchRef: SEARCH_REF, pack };

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
  encodeRef: k4RefEncoder(Q4_K_VARIANT),
  encodeImatrix: k4ImatrixEncoder(Q4_K_VARIANT),
  decode: decodeQ4K,
});
