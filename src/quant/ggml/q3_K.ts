/**
 * q3_K: 3-bit K-quant (GGML_TYPE_Q3_K = 11), 3.4375 bits per weight.
 *
 * Block: 256 weights in 110 bytes, 16 sub-blocks of 16 weights, y = (d*(sc_j-32))*q with q in -4..3.
 *   offset  size  field
 *        0    32  hmask   u8[32]: high bit of weight e is hmask[e%32] bit e/32 (set: q = low2, clear: q = low2-4)
 *       32    64  qs      u8[64]: low 2 bits of weight e = 128h + 32s + l are (qs[32h+l] >> 2s) & 3
 *       96    12  scales  16 6-bit scales sc_j: low 4 bits in scales[j] (j<8) or scales[j-8]>>4 (j>=8),
 *                         high 2 bits in (scales[8 + j%4] >> 2*(j/4)) & 3
 *      108     2  d       fp16 super-block scale
 */
import { importanceWeights, nearestInt, readF16, signedAbsMax, sumOfSquares, writeF16 } from "./common.ts";
import { makeKQuantFormat, requantizeSubBlock, type KBlockEncoder, type KQuantScratch } from "./kquant-format.ts";
import { makeQ3Quants, makeQxQuants } from "./kquant-search.ts";

export const Q3_K_BLOCK_BYTES = 110;
const HMASK = 0;
const QS = 32;
const SCALES = 96;
const D = 108;

/** Stores 6-bit value l (0..63) as sub-block j's scale, into scales bytes that start zeroed. */
function putScale(out: Uint8Array, sc: number, j: number, l: number): void {
  if (j < 8) out[sc + j] = l & 0xf;
  else out[sc + j - 8] = out[sc + j - 8]! | ((l & 0xf) << 4);
  out[sc + 8 + (j % 4)] = out[sc + 8 + (j % 4)]! | ((l >> 4) << (2 * (j >> 2)));
}

/** Sub-block j's signed scale sc_j - 32. */
function getScale(q: Uint8Array, sc: number, j: number): number {
  const low = j < 8 ? q[sc + j]! & 0xf : q[sc + j - 8]! >> 4;
  return (low | (((q[sc + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
}

/** Shared tail: requantize against the stored scales, split off the high bits, pack. */
function requantizeAndPack(x: Float32Array, xo: number, out: Uint8Array, oo: number, L: Int8Array): void {
  const fr = Math.fround;
  const dAll = readF16(out, oo + D);
  const sc = oo + SCALES;
  for (let j = 0; j < 16; j++) {
    requantizeSubBlock(x, xo + 16 * j, 16, fr(dAll * getScale(out, sc, j)), 0, -4, 3, L, 16 * j);
  }
  // Levels are 0..7: bit 2 goes to hmask (weight e: hmask[e%32] bit e/32; ggml sets it where L > 3 and
  // subtracts 4), the low 2 bits to qs.
  const hmask = oo + HMASK;
  for (let m = 0; m < 32; m++) {
    let h = 0;
    for (let k = 0; k < 8; k++) h |= (L[32 * k + m]! >> 2) << k;
    out[hmask + m] = h;
  }
  for (let j = 0; j < 256; j += 128) {
    const q = oo + QS + j / 4;
    for (let l = 0; l < 32; l++) {
      out[q + l] =
        (L[j + l]! & 3) | ((L[j + l + 32]! & 3) << 2) | ((L[j + l + 64]! & 3) << 4) | ((L[j + l + 96]! & 3) << 6);
    }
  }
}

/** quantize_row_q3_K_ref, one super-block. */
export const encodeBlockQ3KRef: KBlockEncoder = (x, xo, _qw, _qwo, out, oo, s) => {
  const fr = Math.fround;
  const { L8: L, scales } = s;
  for (let j = 0; j < 16; j++) scales[j] = makeQ3Quants(16, 4, x, s.xBits, xo + 16 * j, L, 16 * j, true);
  const maxScale = signedAbsMax(s.scalesBits, 0, 16);
  for (let k = 0; k < 12; k++) out[oo + SCALES + k] = 0;
  if (maxScale !== 0) {
    const iscale = fr(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      let l = (nearestInt(fr(iscale * scales[j]!)) << 24) >> 24; // int8_t l = nearest_int(...)
      l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
      putScale(out, oo + SCALES, j, l);
    }
    writeF16(out, oo + D, fr(1 / iscale));
  } else {
    writeF16(out, oo + D, 0);
  }
  requantizeAndPack(x, xo, out, oo, L);
};

/** quantize_row_q3_K_impl with quant_weights, one super-block. */
export const encodeBlockQ3KImatrix: KBlockEncoder = (x, xo, qw, qwo, out, oo, s) => {
  const fr = Math.fround;
  const { L8: L, scales, weights, sw, Ls8: Ls } = s;
  const sigma2 = fr(fr(2 * sumOfSquares(x, xo, 256)) / 256);
  for (let j = 0; j < 16; j++) {
    sw[j] = importanceWeights(x, xo + 16 * j, qw, qwo + 16 * j, sigma2, 16, weights, 0);
    scales[j] = makeQxQuants(16, 4, x, s.xBits, xo + 16 * j, L, 16 * j, weights, 0, s.levels, s.xw);
  }
  for (let k = 0; k < 12; k++) out[oo + SCALES + k] = 0;
  const dBlock = makeQxQuants(16, 32, scales, s.scalesBits, 0, Ls, 0, sw, 0, s.levels, s.xw);
  for (let j = 0; j < 16; j++) putScale(out, oo + SCALES, j, Ls[j]!);
  writeF16(out, oo + D, dBlock);
  requantizeAndPack(x, xo, out, oo, L);
};

/**
 * dequantize_row_q3_K. Sub-block j covers weights 16j..16j+15: low bits in qs[32*(j>>3) + 16*(j&1) + t]
 * at bit 2*((j>>1)&3), high bit in hmask[16*(j&1) + t] bit j>>1 (q = low - 4 where it is clear). The
 * products are exact in float32 (at most 20 significant bits): the store's rounding is C's.
 */
export function decodeQ3K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  for (let b = 0; b < blocks; b++, qo += Q3_K_BLOCK_BYTES, yo += 256) {
    const dAll = readF16(q, qo + D);
    for (let j = 0; j < 16; j++) {
      const dl = dAll * getScale(q, qo + SCALES, j);
      const src = qo + QS + 32 * (j >> 3) + 16 * (j & 1);
      const hm = qo + HMASK + 16 * (j & 1);
      const shift = 2 * ((j >> 1) & 3);
      const hbit = j >> 1;
      const dst = yo + 16 * j;
      for (let t = 0; t < 16; t++) {
        // (hmask bit) * 4 - 4 without a branch: the bit is data, a branch on it mispredicts half the time.
        y[dst + t] = dl * (((q[src + t]! >> shift) & 3) + (((q[hm + t]! >> hbit) & 1) << 2) - 4);
      }
    }
  }
}

export const Q3_K = makeKQuantFormat({
  id: "q3_K",
  ggmlType: 11,
  blockBytes: Q3_K_BLOCK_BYTES,
  description: "3-bit K-quant: super-blocks of 256, 16 sub-blocks with 6-bit scales, no mins (3.4375 bpw)",
  fallback: "q4_0",
  encodeRef: encodeBlockQ3KRef,
  encodeImatrix: encodeBlockQ3KImatrix,
  decode: decodeQ3K,
});
