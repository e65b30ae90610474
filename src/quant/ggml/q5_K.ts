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
import { F16_TO_F32, wordView } from "./common.ts";
import { makeKQuantFormat } from "./kquant-format.ts";
import type { QkxSearch } from "./kquant-search.ts";
import { k4ImatrixEncoder, k4RefEncoder, type K4Variant } from "./q4_K.ts";

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
 *
 * Walked by byte position l rather than by sub-block: qh[l] holds bit 4 of the 8 weights 32k + l (k < 8,
 * sub-block k), whose low bits are the nibbles of qs[32(k>>1) + l]; so one step reads qh once and writes
 * one weight of each sub-block, with the 8 scales and mins in locals. The block is read as 44 little-endian
 * words (176 bytes; every field starts a word): one iteration reads the qh word and the 4 qs words of byte
 * positions l..l+3 and writes 32 weights, a fifth of the bounds-checked byte loads (1.2x; 1.3x before that
 * for the byte-position walk over the sub-block walk). The scales are unpacked here rather than by 16
 * getScaleK4/getMinK4 calls, which made this loop 1.6x slower. The masks are no-ops under decodeInSpans.
 */
export function decodeQ5K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const w = wordView(q, qo);
  if (!w) {
    decodeQ5K(q.slice(qo, qo + blocks * Q5_K_BLOCK_BYTES), 0, y, yo, blocks);
    return;
  }
  const f16 = F16_TO_F32;
  for (let b = 0, wo = qo >> 2; b < blocks; b++, wo += Q5_K_BLOCK_BYTES >> 2, yo += 256) {
    const w0 = w[wo]!;
    const d = f16[w0 & 0xffff]!;
    const dmin = f16[w0 >>> 16]!;
    // get_scale_min_k4 for j = 0..7 from the 12 scale bytes
    const S0 = w[wo + 1]!, S1 = w[wo + 2]!, S2 = w[wo + 3]!;
    const s0 = S0 & 255, s1 = (S0 >> 8) & 255, s2 = (S0 >> 16) & 255, s3 = S0 >>> 24;
    const s4 = S1 & 255, s5 = (S1 >> 8) & 255, s6 = (S1 >> 16) & 255, s7 = S1 >>> 24;
    const s8 = S2 & 255, s9 = (S2 >> 8) & 255, s10 = (S2 >> 16) & 255, s11 = S2 >>> 24;
    const d0 = d * (s0 & 63), m0 = dmin * (s4 & 63);
    const d1 = d * (s1 & 63), m1 = dmin * (s5 & 63);
    const d2 = d * (s2 & 63), m2 = dmin * (s6 & 63);
    const d3 = d * (s3 & 63), m3 = dmin * (s7 & 63);
    const d4 = d * ((s8 & 0xf) | ((s0 >> 6) << 4)), m4 = dmin * ((s8 >> 4) | ((s4 >> 6) << 4));
    const d5 = d * ((s9 & 0xf) | ((s1 >> 6) << 4)), m5 = dmin * ((s9 >> 4) | ((s5 >> 6) << 4));
    const d6 = d * ((s10 & 0xf) | ((s2 >> 6) << 4)), m6 = dmin * ((s10 >> 4) | ((s6 >> 6) << 4));
    const d7 = d * ((s11 & 0xf) | ((s3 >> 6) << 4)), m7 = dmin * ((s11 >> 4) | ((s7 >> 6) << 4));
    const qhAt = wo + (QH >> 2); // module constants only outside the inner loop (common.ts's speed notes)
    const qlAt = wo + (QS >> 2);
    for (let k = 0; k < 8; k++) {
      const ql = (qlAt + k) & 0x3fffffff;
      const H = w[(qhAt + k) & 0x3fffffff]!;
      const V0 = w[ql]!;
      const V1 = w[ql + 8]!;
      const V2 = w[ql + 16]!;
      const V3 = w[ql + 24]!;
      const o = (yo + 4 * k) & 0x3fffffff;
      y[o] = d0 * ((V0 & 0xf) | ((H << 4) & 16)) - m0;
      y[o + 32] = d1 * (((V0 >> 4) & 0xf) | ((H << 3) & 16)) - m1;
      y[o + 64] = d2 * ((V1 & 0xf) | ((H << 2) & 16)) - m2;
      y[o + 96] = d3 * (((V1 >> 4) & 0xf) | ((H << 1) & 16)) - m3;
      y[o + 128] = d4 * ((V2 & 0xf) | (H & 16)) - m4;
      y[o + 160] = d5 * (((V2 >> 4) & 0xf) | ((H >> 1) & 16)) - m5;
      y[o + 192] = d6 * ((V3 & 0xf) | ((H >> 2) & 16)) - m6;
      y[o + 224] = d7 * (((V3 >> 4) & 0xf) | ((H >> 3) & 16)) - m7;
      y[o + 1] = d0 * (((V0 >> 8) & 0xf) | ((H >> 4) & 16)) - m0;
      y[o + 33] = d1 * (((V0 >> 12) & 0xf) | ((H >> 5) & 16)) - m1;
      y[o + 65] = d2 * (((V1 >> 8) & 0xf) | ((H >> 6) & 16)) - m2;
      y[o + 97] = d3 * (((V1 >> 12) & 0xf) | ((H >> 7) & 16)) - m3;
      y[o + 129] = d4 * (((V2 >> 8) & 0xf) | ((H >> 8) & 16)) - m4;
      y[o + 161] = d5 * (((V2 >> 12) & 0xf) | ((H >> 9) & 16)) - m5;
      y[o + 193] = d6 * (((V3 >> 8) & 0xf) | ((H >> 10) & 16)) - m6;
      y[o + 225] = d7 * (((V3 >> 12) & 0xf) | ((H >> 11) & 16)) - m7;
      y[o + 2] = d0 * (((V0 >> 16) & 0xf) | ((H >> 12) & 16)) - m0;
      y[o + 34] = d1 * (((V0 >> 20) & 0xf) | ((H >> 13) & 16)) - m1;
      y[o + 66] = d2 * (((V1 >> 16) & 0xf) | ((H >> 14) & 16)) - m2;
      y[o + 98] = d3 * (((V1 >> 20) & 0xf) | ((H >> 15) & 16)) - m3;
      y[o + 130] = d4 * (((V2 >> 16) & 0xf) | ((H >> 16) & 16)) - m4;
      y[o + 162] = d5 * (((V2 >> 20) & 0xf) | ((H >> 17) & 16)) - m5;
      y[o + 194] = d6 * (((V3 >> 16) & 0xf) | ((H >> 18) & 16)) - m6;
      y[o + 226] = d7 * (((V3 >> 20) & 0xf) | ((H >> 19) & 16)) - m7;
      y[o + 3] = d0 * (((V0 >> 24) & 0xf) | ((H >> 20) & 16)) - m0;
      y[o + 35] = d1 * ((V0 >>> 28) | ((H >> 21) & 16)) - m1;
      y[o + 67] = d2 * (((V1 >> 24) & 0xf) | ((H >> 22) & 16)) - m2;
      y[o + 99] = d3 * ((V1 >>> 28) | ((H >> 23) & 16)) - m3;
      y[o + 131] = d4 * (((V2 >> 24) & 0xf) | ((H >> 24) & 16)) - m4;
      y[o + 163] = d5 * ((V2 >>> 28) | ((H >> 25) & 16)) - m5;
      y[o + 195] = d6 * (((V3 >> 24) & 0xf) | ((H >> 26) & 16)) - m6;
      y[o + 227] = d7 * ((V3 >>> 28) | ((H >> 27) & 16)) - m7;
    }
  }
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
