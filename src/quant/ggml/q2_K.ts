/**
 * q2_K: 2-bit K-quant (GGML_TYPE_Q2_K = 10), 2.625 bits per weight.
 *
 * Block: 256 weights in 84 bytes, 16 sub-blocks of 16 weights, y = (d*sc_j)*q - dmin*m_j with q in 0..3.
 *   offset  size  field
 *        0    16  scales  u8[16]: sub-block j: low nibble = scale sc_j, high nibble = min m_j
 *       16    64  qs      u8[64]: weight e = 128h + 32s + l (h<2, s<4, l<32) is (qs[32h+l] >> 2s) & 3
 *       80     2  d       fp16, super-block scale of the scales
 *       82     2  dmin    fp16, super-block scale of the mins
 *
 * (Loops work on local base offsets and a local `fr`: see the speed notes in kquant-search.ts.)
 */
import { importanceWeights, nearestInt, readF16, sumOfSquares, writeF16 } from "./common.ts";
import { makeKQuantFormat, requantizeSubBlock, type KBlockEncoder, type KQuantScratch } from "./kquant-format.ts";
import { makeQkxQuants, makeQpQuants, QKX3_IMATRIX, type QkxSearch } from "./kquant-search.ts";

export const Q2_K_BLOCK_BYTES = 84;
const SCALES = 0;
const QS = 16;
const D = 80;
const DMIN = 82;

/** quantize_row_q2_K_ref's search: make_qkx2_quants(16, 3, x, |x|, L, &min, Laux, -0.5f, 0.1f, 15, true). */
const SEARCH_REF: QkxSearch = { fn: "make_qkx2_quants", rmin: Math.fround(-0.5), rdelta: Math.fround(0.1), nstep: 15, useMad: true };

/** The last step shared by both encoders: requantize against the fp16-rounded scales, then pack. */
function requantizeAndPack(x: Float32Array, xo: number, out: Uint8Array, oo: number, L: Uint8Array): void {
  const fr = Math.fround;
  const sc = oo + SCALES;
  const d = readF16(out, oo + D);
  const dmin = readF16(out, oo + DMIN);
  for (let j = 0; j < 16; j++) {
    const s = out[sc + j]!;
    requantizeSubBlock(x, xo + 16 * j, 16, fr(d * (s & 0xf)), fr(dmin * (s >> 4)), 0, 3, L, 16 * j);
  }
  const qs = oo + QS;
  for (let j = 0; j < 256; j += 128) {
    const q = qs + j / 4;
    for (let l = 0; l < 32; l++) {
      out[q + l] = L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) | (L[j + l + 96]! << 6);
    }
  }
}

/** quantize_row_q2_K_ref, one super-block. */
export const encodeBlockQ2KRef: KBlockEncoder = (x, xo, _qw, _qwo, out, oo, s) => {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins } = s;
  const sc = oo + SCALES;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    const xj = xo + 16 * j;
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xj + l]!);
    const scale = makeQkxQuants(16, 3, x, xj, weights, L, 16 * j, Laux, s.xm, SEARCH_REF, mins, j);
    scales[j] = scale;
    if (scale > maxScale) maxScale = scale;
    const min = mins[j]!;
    if (min > maxMin) maxMin = min;
  }
  if (maxScale > 0) {
    const iscale = fr(15 / maxScale);
    for (let j = 0; j < 16; j++) out[sc + j] = nearestInt(fr(iscale * scales[j]!));
    writeF16(out, oo + D, fr(maxScale / 15));
  } else {
    for (let j = 0; j < 16; j++) out[sc + j] = 0;
    writeF16(out, oo + D, 0);
  }
  if (maxMin > 0) {
    const iscale = fr(15 / maxMin);
    for (let j = 0; j < 16; j++) out[sc + j] = out[sc + j]! | (nearestInt(fr(iscale * mins[j]!)) << 4);
    writeF16(out, oo + DMIN, fr(maxMin / 15));
  } else {
    writeF16(out, oo + DMIN, 0);
  }
  requantizeAndPack(x, xo, out, oo, L);
};

/**
 * quantize_row_q2_K_impl with quant_weights, one super-block: weights qw * sqrt(sigma2 + x^2) with
 * sigma2 = mean(x^2) over the super-block (not 2*mean, unlike q3_K..q5_K), make_qkx3_quants per
 * sub-block, then the 16 scales and 16 mins quantized to 4 bits by make_qp_quants.
 */
export const encodeBlockQ2KImatrix: KBlockEncoder = (x, xo, qw, qwo, out, oo, s) => {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins, sw, Ls, Lm } = s;
  const sigma2 = fr(sumOfSquares(x, xo, 256) / 256);
  for (let j = 0; j < 16; j++) {
    const xj = xo + 16 * j;
    sw[j] = importanceWeights(x, xj, qw, qwo + 16 * j, sigma2, 16, weights, 0);
    scales[j] = makeQkxQuants(16, 3, x, xj, weights, L, 16 * j, Laux, s.xm, QKX3_IMATRIX, mins, j);
  }
  writeF16(out, oo + D, makeQpQuants(16, 15, scales, Ls, sw));
  writeF16(out, oo + DMIN, makeQpQuants(16, 15, mins, Lm, sw));
  const sc = oo + SCALES;
  for (let j = 0; j < 16; j++) out[sc + j] = Ls[j]! | (Lm[j]! << 4);
  requantizeAndPack(x, xo, out, oo, L);
};

/**
 * dequantize_row_q2_K. Sub-block j covers weights 16j..16j+15, whose 2-bit levels sit in
 * qs[32*(j>>3) + 16*(j&1) + t] at bit 2*((j>>1)&3). dl*q is exact in float32 (at most 17 significant
 * bits), so the only rounding is the subtraction's, done by the Float32Array store as in C.
 */
export function decodeQ2K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  for (let b = 0; b < blocks; b++, qo += Q2_K_BLOCK_BYTES, yo += 256) {
    const d = readF16(q, qo + D);
    const dmin = readF16(q, qo + DMIN);
    for (let j = 0; j < 16; j++) {
      const s = q[qo + SCALES + j]!;
      const dl = d * (s & 0xf);
      const ml = dmin * (s >> 4);
      const src = qo + QS + 32 * (j >> 3) + 16 * (j & 1);
      const shift = 2 * ((j >> 1) & 3);
      const dst = yo + 16 * j;
      for (let t = 0; t < 16; t++) y[dst + t] = dl * ((q[src + t]! >> shift) & 3) - ml;
    }
  }
}

export const Q2_K = makeKQuantFormat({
  id: "q2_K",
  ggmlType: 10,
  blockBytes: Q2_K_BLOCK_BYTES,
  description: "2-bit K-quant: super-blocks of 256, 16 sub-blocks with 4-bit scales and mins (2.625 bpw)",
  fallback: "q4_0",
  encodeRef: encodeBlockQ2KRef,
  encodeImatrix: encodeBlockQ2KImatrix,
  decode: decodeQ2K,
});
