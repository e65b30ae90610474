/**
 * q6_K: 6-bit K-quant (GGML_TYPE_Q6_K = 14), 6.5625 bits per weight.
 *
 * Block: 256 weights in 210 bytes, 16 sub-blocks of 16 weights, y = (d*sc_j)*q with q in -32..31.
 *   offset  size  field
 *        0   128  ql      u8[128]: low 4 bits of weight e = 128h + 32s + l (h<2, s<4, l<32) are
 *                         ql[64h + l + 32(s&1)], low nibble for s<2, high nibble for s>=2
 *      128    64  qh      u8[64]: high 2 bits are (qh[32h+l] >> 2s) & 3; q = (low | high<<4) - 32
 *      192    16  scales  i8[16]: sub-block scale sc_j
 *      208     2  d       fp16 super-block scale
 */
import { GROUP_MAX_EPS, int8View, nearestInt, readF16, signedAbsMax, writeF16 } from "./common.ts";
import { makeKQuantFormat, requantizeSubBlock, type KBlockEncoder, type KQuantScratch } from "./kquant-format.ts";
import { makeQxQuants } from "./kquant-search.ts";

export const Q6_K_BLOCK_BYTES = 210;
const QL = 0;
const QH = 128;
const SCALES = 192;
const D = 208;

/**
 * Shared by both encoders once the 16 sub-block scales are in s.scales and the search's levels in s.L8:
 * quantize the scales to int8 against the largest |scale|, requantize, pack.
 */
function finishBlock(x: Float32Array, xo: number, out: Uint8Array, oo: number, s: KQuantScratch): void {
  const fr = Math.fround;
  const { L8: L, scales } = s;
  const maxScale = signedAbsMax(s.scalesBits, 0, 16);
  if (Math.abs(maxScale) < GROUP_MAX_EPS) {
    for (let k = 0; k < Q6_K_BLOCK_BYTES; k++) out[oo + k] = 0; // an all-zero block: d = 0, everything 0
    return;
  }
  const iscale = fr(-128 / maxScale);
  writeF16(out, oo + D, fr(1 / iscale));
  const sc = oo + SCALES;
  for (let ib = 0; ib < 16; ib++) {
    const l = nearestInt(fr(iscale * scales[ib]!));
    out[sc + ib] = l < 127 ? l : 127; // int8_t store
  }
  const dAll = readF16(out, oo + D);
  for (let j = 0; j < 16; j++) {
    requantizeSubBlock(x, xo + 16 * j, 16, fr(dAll * ((out[sc + j]! << 24) >> 24)), 0, -32, 31, L, 16 * j);
  }
  let ql = oo + QL;
  let qh = oo + QH;
  for (let j = 0; j < 256; j += 128) {
    for (let l = 0; l < 32; l++) {
      const l0 = L[j + l]!;
      const l1 = L[j + l + 32]!;
      const l2 = L[j + l + 64]!;
      const l3 = L[j + l + 96]!;
      out[ql + l] = (l0 & 0xf) | ((l2 & 0xf) << 4);
      out[ql + l + 32] = (l1 & 0xf) | ((l3 & 0xf) << 4);
      out[qh + l] = (l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6);
    }
    ql += 64;
    qh += 32;
  }
}

/** quantize_row_q6_K_ref, one super-block: make_qx_quants weighted by x^2. */
export const encodeBlockQ6KRef: KBlockEncoder = (x, xo, _qw, _qwo, out, oo, s) => {
  const fr = Math.fround;
  const w = s.weights;
  for (let ib = 0; ib < 16; ib++) {
    for (let i = 0; i < 16; i++) w[i] = fr(x[xo + 16 * ib + i]! * x[xo + 16 * ib + i]!); // qw NULL: x^2
    s.scales[ib] = makeQxQuants(16, 32, x, s.xBits, xo + 16 * ib, s.L8, 16 * ib, w, 0, s.levels, s.xw);
  }
  finishBlock(x, xo, out, oo, s);
};

/** quantize_row_q6_K_impl with quant_weights, one super-block: make_qx_quants weighted by the imatrix itself. */
export const encodeBlockQ6KImatrix: KBlockEncoder = (x, xo, qw, qwo, out, oo, s) => {
  for (let ib = 0; ib < 16; ib++) s.scales[ib] = makeQxQuants(16, 32, x, s.xBits, xo + 16 * ib, s.L8, 16 * ib, qw, qwo + 16 * ib, s.levels, s.xw);
  finishBlock(x, xo, out, oo, s);
};

/**
 * dequantize_row_q6_K. Weight e = 128h + 32s + l is in sub-block 8h + 2s + (l>>4). C computes (d*sc)*q:
 * d*sc is exact in float32, and the product (at most 25 significant bits) is exact in double, so the
 * Float32Array store rounds it once, as C does.
 */
export function decodeQ6K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const sc8 = int8View(q);
  for (let b = 0; b < blocks; b++, qo += Q6_K_BLOCK_BYTES, yo += 256) {
    const d = readF16(q, qo + D);
    for (let h = 0; h < 2; h++) {
      const qh = qo + QH + 32 * h;
      for (let s = 0; s < 4; s++) {
        const ql = qo + QL + 64 * h + 32 * (s & 1);
        const nibble = s < 2 ? 0 : 4;
        const shift = 2 * s;
        const sc = qo + SCALES + 8 * h + 2 * s;
        const dst = yo + 128 * h + 32 * s;
        const d1 = d * sc8[sc]!;
        const d2 = d * sc8[sc + 1]!;
        for (let l = 0; l < 16; l++) {
          y[dst + l] = d1 * ((((q[ql + l]! >> nibble) & 0xf) | (((q[qh + l]! >> shift) & 3) << 4)) - 32);
        }
        for (let l = 16; l < 32; l++) {
          y[dst + l] = d2 * ((((q[ql + l]! >> nibble) & 0xf) | (((q[qh + l]! >> shift) & 3) << 4)) - 32);
        }
      }
    }
  }
}

export const Q6_K = makeKQuantFormat({
  id: "q6_K",
  ggmlType: 14,
  blockBytes: Q6_K_BLOCK_BYTES,
  description: "6-bit K-quant: super-blocks of 256, 16 sub-blocks with 8-bit scales, no mins (6.5625 bpw)",
  fallback: "q8_0",
  encodeRef: encodeBlockQ6KRef,
  encodeImatrix: encodeBlockQ6KImatrix,
  decode: decodeQ6K,
});
