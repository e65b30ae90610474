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
import { F16_TO_F32 } from "./common.ts";
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
 * one weight of each sub-block, with the 8 scales and mins in locals. Two steps per iteration (V8 does not
 * unroll; see common.ts's decoder steps); the masks are no-ops under decodeInSpans. 1.3x the sub-block walk
 * in the bench. The scales are unpacked here rather than by 16 getScaleK4/getMinK4 calls, which made this
 * loop 1.6x slower.
 */
export function decodeQ5K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  for (let b = 0; b < blocks; b++, qo += Q5_K_BLOCK_BYTES, yo += 256) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    const dmin = f16[q[qo + 2]! | (q[qo + 3]! << 8)]!;
    // get_scale_min_k4 for j = 0..7 from the 12 scale bytes
    const sc = qo + SCALES;
    const s0 = q[sc]!, s1 = q[sc + 1]!, s2 = q[sc + 2]!, s3 = q[sc + 3]!;
    const s4 = q[sc + 4]!, s5 = q[sc + 5]!, s6 = q[sc + 6]!, s7 = q[sc + 7]!;
    const s8 = q[sc + 8]!, s9 = q[sc + 9]!, s10 = q[sc + 10]!, s11 = q[sc + 11]!;
    const d0 = d * (s0 & 63), m0 = dmin * (s4 & 63);
    const d1 = d * (s1 & 63), m1 = dmin * (s5 & 63);
    const d2 = d * (s2 & 63), m2 = dmin * (s6 & 63);
    const d3 = d * (s3 & 63), m3 = dmin * (s7 & 63);
    const d4 = d * ((s8 & 0xf) | ((s0 >> 6) << 4)), m4 = dmin * ((s8 >> 4) | ((s4 >> 6) << 4));
    const d5 = d * ((s9 & 0xf) | ((s1 >> 6) << 4)), m5 = dmin * ((s9 >> 4) | ((s5 >> 6) << 4));
    const d6 = d * ((s10 & 0xf) | ((s2 >> 6) << 4)), m6 = dmin * ((s10 >> 4) | ((s6 >> 6) << 4));
    const d7 = d * ((s11 & 0xf) | ((s3 >> 6) << 4)), m7 = dmin * ((s11 >> 4) | ((s7 >> 6) << 4));
    const qhAt = qo + QH; // module constants only outside the inner loop (common.ts's speed notes)
    const qlAt = qo + QS;
    for (let l = 0; l < 32; l += 2) {
      const qh = (qhAt + l) & 0x3fffffff;
      const ql = (qlAt + l) & 0x3fffffff;
      const o = (yo + l) & 0x3fffffff;
      let h = q[qh]!;
      let v0 = q[ql]!;
      let v1 = q[ql + 32]!;
      let v2 = q[ql + 64]!;
      let v3 = q[ql + 96]!;
      y[o] = d0 * ((v0 & 0xf) | ((h << 4) & 16)) - m0;
      y[o + 32] = d1 * ((v0 >> 4) | ((h << 3) & 16)) - m1;
      y[o + 64] = d2 * ((v1 & 0xf) | ((h << 2) & 16)) - m2;
      y[o + 96] = d3 * ((v1 >> 4) | ((h << 1) & 16)) - m3;
      y[o + 128] = d4 * ((v2 & 0xf) | (h & 16)) - m4;
      y[o + 160] = d5 * ((v2 >> 4) | ((h >> 1) & 16)) - m5;
      y[o + 192] = d6 * ((v3 & 0xf) | ((h >> 2) & 16)) - m6;
      y[o + 224] = d7 * ((v3 >> 4) | ((h >> 3) & 16)) - m7;
      h = q[qh + 1]!;
      v0 = q[ql + 1]!;
      v1 = q[ql + 33]!;
      v2 = q[ql + 65]!;
      v3 = q[ql + 97]!;
      y[o + 1] = d0 * ((v0 & 0xf) | ((h << 4) & 16)) - m0;
      y[o + 33] = d1 * ((v0 >> 4) | ((h << 3) & 16)) - m1;
      y[o + 65] = d2 * ((v1 & 0xf) | ((h << 2) & 16)) - m2;
      y[o + 97] = d3 * ((v1 >> 4) | ((h << 1) & 16)) - m3;
      y[o + 129] = d4 * ((v2 & 0xf) | (h & 16)) - m4;
      y[o + 161] = d5 * ((v2 >> 4) | ((h >> 1) & 16)) - m5;
      y[o + 193] = d6 * ((v3 & 0xf) | ((h >> 2) & 16)) - m6;
      y[o + 225] = d7 * ((v3 >> 4) | ((h >> 3) & 16)) - m7;
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
