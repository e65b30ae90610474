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
import { nearestInt, readF16, writeF16 } from "./common.ts";
import { makeKQuantFormat, type KQuantScratch } from "./kquant-format.ts";
import { makeQkx2Quants, makeQkx3Quants, makeQpQuants } from "./kquant-search.ts";

export const Q2_K_BLOCK_BYTES = 84;
const SCALES = 0;
const QS = 16;
const D = 80;
const DMIN = 82;

const RMIN_REF = Math.fround(-0.5);
const RDELTA_REF = Math.fround(0.1);
const RMIN_IMATRIX = Math.fround(-0.9);
const RDELTA_IMATRIX = Math.fround(0.05);

/** The last step shared by both encoders: requantize against the fp16-rounded scales, then pack. */
function requantizeAndPack(x: Float32Array, xo: number, out: Uint8Array, oo: number, L: Uint8Array): void {
  const fr = Math.fround;
  const sc = oo + SCALES;
  const d = readF16(out, oo + D);
  const dmin = readF16(out, oo + DMIN);
  for (let j = 0; j < 16; j++) {
    const s = out[sc + j]!;
    const dl = fr(d * (s & 0xf));
    if (dl === 0) continue; // keeps the search's levels, as ggml does
    const ml = fr(dmin * (s >> 4));
    const xj = xo + 16 * j;
    for (let ii = 0; ii < 16; ii++) {
      const l = nearestInt(fr(fr(x[xj + ii]! + ml) / dl));
      L[16 * j + ii] = l < 0 ? 0 : l > 3 ? 3 : l;
    }
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
export function encodeBlockQ2KRef(
  x: Float32Array,
  xo: number,
  _qw: Float32Array,
  _qwo: number,
  out: Uint8Array,
  oo: number,
  s: KQuantScratch,
): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins } = s;
  const sc = oo + SCALES;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    const xj = xo + 16 * j;
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xj + l]!);
    const scale = makeQkx2Quants(16, 3, x, xj, weights, L, 16 * j, Laux, s.xm, RMIN_REF, RDELTA_REF, 15, true, mins, j);
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
}

/**
 * quantize_row_q2_K_impl with quant_weights, one super-block: weights qw * sqrt(sigma2 + x^2) with
 * sigma2 = mean(x^2) over the super-block (not 2*mean, unlike q3_K..q5_K), make_qkx3_quants per
 * sub-block, then the 16 scales and 16 mins quantized to 4 bits by make_qp_quants.
 */
export function encodeBlockQ2KImatrix(
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  out: Uint8Array,
  oo: number,
  s: KQuantScratch,
): void {
  const fr = Math.fround;
  const { L, Laux, weights, scales, mins, sw, Ls, Lm } = s;
  let sumx2 = 0;
  for (let j = 0; j < 256; j++) sumx2 = fr(sumx2 + fr(x[xo + j]! * x[xo + j]!));
  const sigma2 = fr(sumx2 / 256);
  for (let j = 0; j < 16; j++) {
    const xj = xo + 16 * j;
    const wj = qwo + 16 * j;
    for (let l = 0; l < 16; l++) {
      const xi = x[xj + l]!;
      weights[l] = fr(qw[wj + l]! * fr(Math.sqrt(fr(sigma2 + fr(xi * xi)))));
    }
    let swj = 0;
    for (let l = 0; l < 16; l++) swj = fr(swj + weights[l]!);
    sw[j] = swj;
    scales[j] = makeQkx3Quants(16, 3, x, xj, weights, L, 16 * j, Laux, s.xm, RMIN_IMATRIX, RDELTA_IMATRIX, 36, false, mins, j);
  }
  writeF16(out, oo + D, makeQpQuants(16, 15, scales, Ls, sw));
  writeF16(out, oo + DMIN, makeQpQuants(16, 15, mins, Lm, sw));
  const sc = oo + SCALES;
  for (let j = 0; j < 16; j++) out[sc + j] = Ls[j]! | (Lm[j]! << 4);
  requantizeAndPack(x, xo, out, oo, L);
}

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
