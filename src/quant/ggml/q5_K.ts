/**
 * q5_K: 5-bit K-quant (GGML_TYPE_Q5_K = 13), 5.5 bits per weight.
 *
 * Block: 256 weights in 176 bytes, 8 sub-blocks of 32 weights, y = (d*sc_j)*q - dmin*m_j with q in 0..31.
 *   offset  size  field
 *        0     2  d       fp16, super-block scale of the scales
 *        2     2  dmin    fp16, super-block scale of the mins
 *        4    12  scales  8 6-bit scales and 8 6-bit mins, packed as in q4_K
 *       16    32  qh      u8[32]: 5th bit of weight e = 64c + 32t + l is qh[l] bit 2c+t
 *       48   128  qs      u8[128]: low 4 bits, laid out as q4_K's qs
 */
import { readF16 } from "./common.ts";
import { makeKQuantFormat } from "./kquant-format.ts";
import type { QkxSearch } from "./kquant-search.ts";
import { getMinK4, getScaleK4, k4ImatrixEncoder, k4RefEncoder, type K4Variant } from "./q4_K.ts";

export const Q5_K_BLOCK_BYTES = 176;
const D = 0;
const DMIN = 2;
const SCALES = 4;
const QH = 16;
const QS = 48;

/** Levels 0..31: low 4 bits as q4_K's qs, bit 4 of weight 64c + 32t + l into qh[l] bit 2c+t. */
function pack(out: Uint8Array, oo: number, L: Uint8Array): void {
  const qh = oo + QH;
  for (let l = 0; l < 32; l++) {
    let h = 0;
    for (let k = 0; k < 8; k++) h |= (L[32 * k + l]! >> 4) << k;
    out[qh + l] = h;
  }
  let ql = oo + QS;
  for (let n = 0; n < 256; n += 64) {
    for (let j = 0; j < 32; j++) out[ql + j] = (L[n + j]! & 0xf) | ((L[n + j + 32]! & 0xf) << 4);
    ql += 32;
  }
}

/** quantize_row_q5_K_ref's search: make_qkx2_quants(32, 31, x, weights, L, &min, Laux, -0.5f, 0.1f, 15, false). */
const SEARCH_REF: QkxSearch = { fn: "make_qkx2_quants", rmin: Math.fround(-0.5), rdelta: Math.fround(0.1), nstep: 15, useMad: false };

const Q5_K_VARIANT: K4Variant = { nmax: 31, searchRef: SEARCH_REF, pack };

/**
 * dequantize_row_q5_K. (d*sc)*q is exact in float32 (at most 22 significant bits), so the only rounding
 * is the subtraction's, done by the Float32Array store as in C.
 */
export function decodeQ5K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  for (let b = 0; b < blocks; b++, qo += Q5_K_BLOCK_BYTES, yo += 256) {
    const d = readF16(q, qo + D);
    const dmin = readF16(q, qo + DMIN);
    for (let c = 0; c < 4; c++) {
      const ql = qo + QS + 32 * c;
      const d1 = d * getScaleK4(q, qo + SCALES, 2 * c);
      const m1 = dmin * getMinK4(q, qo + SCALES, 2 * c);
      const d2 = d * getScaleK4(q, qo + SCALES, 2 * c + 1);
      const m2 = dmin * getMinK4(q, qo + SCALES, 2 * c + 1);
      for (let l = 0; l < 32; l += 4) decodeFiveBit4(q, ql + l, qo + QH + l, 2 * c, d1, m1, d2, m2, y, yo + 64 * c + l);
    }
  }
}

/**
 * Weights l..l+3 of qs group c: low nibbles q[ql..] with bit `shift` of q[qh..] are weights yo.. (d1, m1),
 * high nibbles with bit shift+1 weights yo+32.. (d2, m2). Written out 4 wide, as common.ts's decoder
 * steps (see there why; 8 wide is too large for V8 to inline).
 */
function decodeFiveBit4(
  q: Uint8Array,
  ql: number,
  qh: number,
  shift: number,
  d1: number,
  m1: number,
  d2: number,
  m2: number,
  y: Float32Array,
  yo: number,
): void {
  const v0 = q[ql]!;
  const h0 = q[qh]! >> shift;
  y[yo] = d1 * ((v0 & 0xf) | ((h0 & 1) << 4)) - m1;
  y[yo + 32] = d2 * ((v0 >> 4) | ((h0 & 2) << 3)) - m2;
  const v1 = q[ql + 1]!;
  const h1 = q[qh + 1]! >> shift;
  y[yo + 1] = d1 * ((v1 & 0xf) | ((h1 & 1) << 4)) - m1;
  y[yo + 33] = d2 * ((v1 >> 4) | ((h1 & 2) << 3)) - m2;
  const v2 = q[ql + 2]!;
  const h2 = q[qh + 2]! >> shift;
  y[yo + 2] = d1 * ((v2 & 0xf) | ((h2 & 1) << 4)) - m1;
  y[yo + 34] = d2 * ((v2 >> 4) | ((h2 & 2) << 3)) - m2;
  const v3 = q[ql + 3]!;
  const h3 = q[qh + 3]! >> shift;
  y[yo + 3] = d1 * ((v3 & 0xf) | ((h3 & 1) << 4)) - m1;
  y[yo + 35] = d2 * ((v3 >> 4) | ((h3 & 2) << 3)) - m2;
}

export const Q5_K = makeKQuantFormat({
  id: "q5_K",
  ggmlType: 13,
  blockBytes: Q5_K_BLOCK_BYTES,
  description: "5-bit K-quant: super-blocks of 256, 8 sub-blocks with 6-bit scales and mins (5.5 bpw)",
  fallback: "q5_1",
  encodeRef: k4RefEncoder(Q5_K_VARIANT),
  encodeImatrix: k4ImatrixEncoder(Q5_K_VARIANT),
  decode: decodeQ5K,
});
