/**
 * llama.cpp's "legacy" 32-weight block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and Q8_K (the 256-weight
 * intermediate ggml quantizes activations to for K-quant dot products; GGUF files never store it).
 *
 * Bit-exact ports of ggml/src/ggml-quants.c: quantize_row_<fmt>_ref (no imatrix), quantize_row_<fmt>_impl
 * (what ggml_quantize_chunk runs when given an importance matrix; q8_0 and q8_K have none) and
 * dequantize_row_<fmt>. Every C float operation is one fr()-rounded float32 operation in C's order.
 *
 * Shaped for a WGSL port: one function per format and direction whose loop body is one block (a WGSL
 * invocation's work), over (array, offset) pairs; scratch arrays of fixed size; no allocation or closures
 * per block. The loop over blocks sits inside each function so the block code is inlined into it: a loop
 * shared by six formats would call through a megamorphic site every 32 weights.
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
import { bitsToF32, f32Bits, f32BitsToF16Bits, f32ToF16Bits } from "../../formats/float-bits.ts";
import {
  type BlocksDecoder,
  type BlocksEncoder,
  decodeInSpans,
  encodeInSpans,
  F16_TO_F32,
  fr,
  bitsView,
  importanceWeights,
  int8View,
  nearestIntInRange,
  readU32,
  roundHalfAway,
  scaleInt8x16,
  minMaxBits,
  signedAbsMax,
  sumOfSquares,
  truncToInt,
  writeF16,
  writeU32,
  wordView,
} from "./common.ts";
import { makeQkxQuants, makeQxQuants, QKX3_IMATRIX, qxLevelsLength, qxScratchLength } from "./kquant-search.ts";

const QK = 32;
const QK_K = 256;

// ---------------------------------------------------------------------------------------------------------
// Reference encoders (quantize_row_<fmt>_ref): `blocks` blocks from x[xo..] into out[oo..]. Each returns
// false, leaving out unspecified, when it meets a NaN or an infinity (the driver then reports it): the
// block's max or min shows it, so no separate pass over the weights is needed.

/** float32's largest finite value: |v| <= FLT_MAX is false exactly for NaN and ±inf. */
const FLT_MAX = 3.4028234663852886e38;

/**
 * The encoders' inner loops are written out (V8 does not unroll; see common.ts's decoder steps): q4_0's and
 * q4_1's whole blocks; the others four bytes (eight weights) per iteration, each byte by a helper V8
 * inlines. `Math.fround` is read into a local, not through the module-level `fr`: TurboFan re-checks a
 * module-level binding on every use, and a module-level constant is reloaded and unboxed on every use
 * (FLT_MAX, HALF_UP: the hottest loops write them as literals).
 *
 * Level ranges the code relies on (for their clamps and for `| 0`, which is truncToInt): with a finite
 * id, d is the block's extreme over -8, -16, 15 or 31 rounded to float32 (relative error below 2^-20 even
 * when d is subnormal, since id = 1/d would overflow below 2^-128), so x/d + 8.5 stays in [0.49, 16.51]
 * for q4_0, x/d + 16.5 in [0.49, 32.51] for q5_0, and (x-min)/d in [0, 15.0001] or [0, 31.0001]. An
 * infinite id makes every x*id ±inf or NaN, which `| 0` turns into 0, as C's (int8_t) cast does on x86.
 */

/**
 * q4_0: d = (signed value of largest |x|) / -8; q = min(15, (int8)(x/d + 8.5)). The level is at most 16, so
 * min(15, q) = q - (q >> 4). The 16 bytes are written out, as q4_1's words are (1.15x; see there why).
 */
export function encodeQ4_0(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const fr = Math.fround;
  const xBits = bitsView(x);
  for (let b = 0; b < blocks; b++, xo += QK, oo += 18) {
    const max = signedAbsMax(xBits, xo, QK);
    if (!(Math.abs(max) <= 3.4028234663852886e38)) return false; // FLT_MAX
    const d = fr(max / -8);
    // id comes from the fp32 d, not the fp16 one stored.
    const id = d !== 0 ? fr(1 / d) : 0;
    writeF16(out, oo, d);
    const p = xo & 0x3fffffff;
    const o = (oo + 2) & 0x3fffffff;
    let q0: number;
    let q1: number;
    q0 = fr(fr(x[p]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 16]! * id) + 8.5) | 0;
    out[o + 0] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 1]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 17]! * id) + 8.5) | 0;
    out[o + 1] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 2]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 18]! * id) + 8.5) | 0;
    out[o + 2] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 3]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 19]! * id) + 8.5) | 0;
    out[o + 3] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 4]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 20]! * id) + 8.5) | 0;
    out[o + 4] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 5]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 21]! * id) + 8.5) | 0;
    out[o + 5] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 6]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 22]! * id) + 8.5) | 0;
    out[o + 6] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 7]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 23]! * id) + 8.5) | 0;
    out[o + 7] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 8]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 24]! * id) + 8.5) | 0;
    out[o + 8] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 9]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 25]! * id) + 8.5) | 0;
    out[o + 9] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 10]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 26]! * id) + 8.5) | 0;
    out[o + 10] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 11]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 27]! * id) + 8.5) | 0;
    out[o + 11] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 12]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 28]! * id) + 8.5) | 0;
    out[o + 12] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 13]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 29]! * id) + 8.5) | 0;
    out[o + 13] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 14]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 30]! * id) + 8.5) | 0;
    out[o + 14] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
    q0 = fr(fr(x[p + 15]! * id) + 8.5) | 0;
    q1 = fr(fr(x[p + 31]! * id) + 8.5) | 0;
    out[o + 15] = (q0 - (q0 >> 4)) | ((q1 - (q1 >> 4)) << 4);
  }
  return true;
}

/** Blocks whose min and max one minMaxBits call finds (q4_1, q5_1; a power of 2): block b's at 2b, 2b + 1. */
const RANGE_BATCH = 128;
const rangeBits = new Int32Array(2 * RANGE_BATCH);
const range = new Float32Array(rangeBits.buffer);

/**
 * 0.5 + 2^-25. For a float32 v in [0, 2^23), C's (int)(v + 0.5f) (the sum rounded to float32) equals
 * (int)(v + HALF_UP) computed in double: the float32 rounding of v + 0.5 can only carry it up to the next
 * integer at v = 0.49999997 (0.5 - 2^-25, where 0.99999997 ties to 1.0); above 0.5 the sum's float32
 * spacing never exceeds v's own except right after a power of two, which is no integer's neighbourhood.
 * Adding 2^-25 moves exactly that one v across 1 and no other v across any integer. Saves a fround.
 */
const HALF_UP = 0.5000000298023224;

/** The level of q4_1 and q5_1: (int8)((x-min)*id + 0.5), in 0..15 or 0..31 (see above, so no clamp). */
function levelFromMin(x: Float32Array, p: number, min: number, id: number): number {
  const fr = Math.fround;
  return (fr(fr(x[p]! - min) * id) + HALF_UP) | 0;
}

/**
 * q4_1: d = (max-min)/15, m = min; q = min(15, (int8)((x-min)/d + 0.5)).
 * The block's 20 bytes are 5 aligned little-endian u32 stores (d | m << 16, then 8 nibbles each): a fifth of
 * the bounds-checked byte stores, 1.25x. Outputs at an offset that is not 4-aligned go through a copy.
 *
 * The 32 levels are written out, HALF_UP as a literal (1.1x, bench/cpu-formats.ts): TurboFan re-checks a
 * module-level function at each call (levelFromMin) and reloads and unboxes a module-level constant, or a
 * local copy of one, at each use; a helper per word is not inlined past the second call (V8's cumulative
 * inlining budget); an inner loop costs its counter, a stack check and re-checks of x. `& 0x3fffffff` tells
 * TurboFan that p + 31 cannot overflow (encodeInSpans keeps offsets below 2^30).
 */
export function encodeQ4_1(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const words = wordView(out, oo);
  if (!words) return encodeThroughAlignedCopy(encodeQ4_1, 20, x, xo, out, oo, blocks);
  const fr = Math.fround;
  const xBits = bitsView(x);
  for (let b = 0, w = oo >> 2; b < blocks; b++, xo += QK, w += 5) {
    const r = 2 * (b & (RANGE_BATCH - 1));
    if (r === 0 && !minMaxBits(xBits, xo, QK, rangeBits, 0, Math.min(RANGE_BATCH, blocks - b))) return false;
    const min = range[r]!;
    const d = fr(fr(range[r + 1]! - min) / 15);
    const id = d !== 0 ? fr(1 / d) : 0;
    words[w] = f32ToF16Bits(d) | (f32BitsToF16Bits(rangeBits[r]!) << 16);
    const p = xo & 0x3fffffff;
    words[w + 1] =
      ((fr(fr(x[p]! - min) * id) + 0.5000000298023224) | 0) |
      (((fr(fr(x[p + 16]! - min) * id) + 0.5000000298023224) | 0) << 4) |
      (((fr(fr(x[p + 1]! - min) * id) + 0.5000000298023224) | 0) << 8) |
      (((fr(fr(x[p + 17]! - min) * id) + 0.5000000298023224) | 0) << 12) |
      (((fr(fr(x[p + 2]! - min) * id) + 0.5000000298023224) | 0) << 16) |
      (((fr(fr(x[p + 18]! - min) * id) + 0.5000000298023224) | 0) << 20) |
      (((fr(fr(x[p + 3]! - min) * id) + 0.5000000298023224) | 0) << 24) |
      (((fr(fr(x[p + 19]! - min) * id) + 0.5000000298023224) | 0) << 28);
    words[w + 2] =
      ((fr(fr(x[p + 4]! - min) * id) + 0.5000000298023224) | 0) |
      (((fr(fr(x[p + 20]! - min) * id) + 0.5000000298023224) | 0) << 4) |
      (((fr(fr(x[p + 5]! - min) * id) + 0.5000000298023224) | 0) << 8) |
      (((fr(fr(x[p + 21]! - min) * id) + 0.5000000298023224) | 0) << 12) |
      (((fr(fr(x[p + 6]! - min) * id) + 0.5000000298023224) | 0) << 16) |
      (((fr(fr(x[p + 22]! - min) * id) + 0.5000000298023224) | 0) << 20) |
      (((fr(fr(x[p + 7]! - min) * id) + 0.5000000298023224) | 0) << 24) |
      (((fr(fr(x[p + 23]! - min) * id) + 0.5000000298023224) | 0) << 28);
    words[w + 3] =
      ((fr(fr(x[p + 8]! - min) * id) + 0.5000000298023224) | 0) |
      (((fr(fr(x[p + 24]! - min) * id) + 0.5000000298023224) | 0) << 4) |
      (((fr(fr(x[p + 9]! - min) * id) + 0.5000000298023224) | 0) << 8) |
      (((fr(fr(x[p + 25]! - min) * id) + 0.5000000298023224) | 0) << 12) |
      (((fr(fr(x[p + 10]! - min) * id) + 0.5000000298023224) | 0) << 16) |
      (((fr(fr(x[p + 26]! - min) * id) + 0.5000000298023224) | 0) << 20) |
      (((fr(fr(x[p + 11]! - min) * id) + 0.5000000298023224) | 0) << 24) |
      (((fr(fr(x[p + 27]! - min) * id) + 0.5000000298023224) | 0) << 28);
    words[w + 4] =
      ((fr(fr(x[p + 12]! - min) * id) + 0.5000000298023224) | 0) |
      (((fr(fr(x[p + 28]! - min) * id) + 0.5000000298023224) | 0) << 4) |
      (((fr(fr(x[p + 13]! - min) * id) + 0.5000000298023224) | 0) << 8) |
      (((fr(fr(x[p + 29]! - min) * id) + 0.5000000298023224) | 0) << 12) |
      (((fr(fr(x[p + 14]! - min) * id) + 0.5000000298023224) | 0) << 16) |
      (((fr(fr(x[p + 30]! - min) * id) + 0.5000000298023224) | 0) << 20) |
      (((fr(fr(x[p + 15]! - min) * id) + 0.5000000298023224) | 0) << 24) |
      (((fr(fr(x[p + 31]! - min) * id) + 0.5000000298023224) | 0) << 28);
  }
  return true;
}

/** q5_0's level: min(31, (int8)(x*id + 16.5)); at most 32, so min(31, q) = q - (q >> 5). */
function q5_0Level(x: Float32Array, p: number, id: number): number {
  const fr = Math.fround;
  const q = fr(fr(x[p]! * id) + 16.5) | 0;
  return q - (q >> 5);
}

/** q5_0: d = (signed value of largest |x|) / -16; q = min(31, (int8)(x/d + 16.5)). */
export function encodeQ5_0(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const fr = Math.fround;
  const xBits = bitsView(x);
  for (let b = 0; b < blocks; b++, xo += QK, oo += 22) {
    const max = signedAbsMax(xBits, xo, QK);
    if (!(Math.abs(max) <= FLT_MAX)) return false;
    const d = fr(max / -16);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeF16(out, oo, d);
    let qh = 0;
    for (let j = 0; j < QK / 2; j += 2) {
      const p = xo + j;
      const q0 = q5_0Level(x, p, id);
      const q1 = q5_0Level(x, p + 16, id);
      const q2 = q5_0Level(x, p + 1, id);
      const q3 = q5_0Level(x, p + 17, id);
      out[oo + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      out[oo + 7 + j] = (q2 & 0x0f) | ((q3 & 0x0f) << 4);
      qh |= (((q0 >> 4) | ((q2 >> 4) << 1)) << j) | (((q1 >> 4) | ((q3 >> 4) << 1)) << (j + 16));
    }
    writeU32(out, oo + 2, qh);
  }
  return true;
}

/** q5_1: d = (max-min)/31, m = min; q = (uint8)((x-min)/d + 0.5), with no clamp (ggml has none). */
export function encodeQ5_1(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const fr = Math.fround;
  const xBits = bitsView(x);
  for (let b = 0; b < blocks; b++, xo += QK, oo += 24) {
    const r = 2 * (b & (RANGE_BATCH - 1));
    if (r === 0 && !minMaxBits(xBits, xo, QK, rangeBits, 0, Math.min(RANGE_BATCH, blocks - b))) return false;
    const min = range[r]!;
    const d = fr(fr(range[r + 1]! - min) / 31);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeF16(out, oo, d);
    writeF16(out, oo + 2, min);
    let qh = 0;
    for (let j = 0; j < QK / 2; j += 2) {
      const p = xo + j;
      const q0 = levelFromMin(x, p, min, id);
      const q1 = levelFromMin(x, p + 16, min, id);
      const q2 = levelFromMin(x, p + 1, min, id);
      const q3 = levelFromMin(x, p + 17, min, id);
      out[oo + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      out[oo + 9 + j] = (q2 & 0x0f) | ((q3 & 0x0f) << 4);
      qh |= (((q0 >> 4) | ((q2 >> 4) << 1)) << j) | (((q1 >> 4) | ((q3 >> 4) << 1)) << (j + 16));
    }
    writeU32(out, oo + 4, qh);
  }
  return true;
}

/** q8_0: d = max|x| / 127; q = roundf(x/d) (ties away from zero). */
export function encodeQ8_0(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const xBits = bitsView(x);
  for (let b = 0; b < blocks; b++, xo += QK, oo += 34) {
    const amax = Math.abs(signedAbsMax(xBits, xo, QK)); // C: amax = MAX(amax, fabsf(x))
    if (!(amax <= FLT_MAX)) return false;
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeF16(out, oo, d);
    for (let j = 0; j < QK; j++) {
      out[oo + 2 + j] = roundHalfAway(fr(x[xo + j]! * id)) & 0xff;
    }
  }
  return true;
}

/** q8_K's 16 levels nearest_int(iscale * x) from x[p..p+16) as 4 words at words[w..w+4); returns their sum. */
function q8KWords(x: Float32Array, p: number, iscale: number, words: Int32Array, w: number): number {
  const fr = Math.fround;
  let sum = 0;
  for (let k = 0; k < 16; k += 4, p += 4) {
    const q0 = nearestIntInRange(fr(iscale * x[p]!));
    const q1 = nearestIntInRange(fr(iscale * x[p + 1]!));
    const q2 = nearestIntInRange(fr(iscale * x[p + 2]!));
    const q3 = nearestIntInRange(fr(iscale * x[p + 3]!));
    words[w + (k >> 2)] = (q0 & 0xff) | ((q1 & 0xff) << 8) | ((q2 & 0xff) << 16) | (q3 << 24);
    sum += q0 + q1 + q2 + q3;
  }
  return sum;
}

/**
 * q8_K: d = (signed value of largest |x|) / -127 kept as f32; q = min(127, nearest_int(x * -127/max)).
 * An all-zero block gets d = 0 and q = 0; ggml leaves its bsums unwritten, we write their true value, 0.
 */
export function encodeQ8_K(x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number): boolean {
  const words = wordView(out, oo);
  if (!words) return encodeThroughAlignedCopy(encodeQ8_K, 292, x, xo, out, oo, blocks);
  const xBits = bitsView(x);
  for (let b = 0; b < blocks; b++, xo += QK_K, oo += 292) {
    const max = signedAbsMax(xBits, xo, QK_K);
    if (!(Math.abs(max) <= FLT_MAX)) return false;
    const iscale = max === 0 ? 0 : fr(-127 / max);
    if (max === 0 || !(Math.abs(iscale) <= FLT_MAX)) {
      // All zero (d = 0), or |max| < 3.7e-37 so that -127/max overflowed: then every iscale*x is ±inf or NaN,
      // nearest_int's bit trick turns those into -4194304 or 0, and the int8_t store into 0. d = 1/iscale.
      for (let j = 0; j < 292; j++) out[oo + j] = 0;
      if (max !== 0) writeU32(out, oo, f32Bits(fr(1 / iscale)));
      continue;
    }
    // |iscale*x| <= |iscale*max| <= 127.00002: nearest_int is in range, and ggml's MIN(127, ...) and the
    // int8_t store change nothing. Four levels a word (qs starts at byte 4 of a 292-byte block, so words
    // stay aligned: 1.55x); bsums add the stored values, two a word.
    const qw = (oo >> 2) + 1;
    for (let g = 0; g < QK_K / 16; g += 2) {
      const sum0 = q8KWords(x, xo + 16 * g, iscale, words, qw + 4 * g);
      const sum1 = q8KWords(x, xo + 16 * g + 16, iscale, words, qw + 4 * g + 4);
      words[qw + 64 + (g >> 1)] = (sum0 & 0xffff) | (sum1 << 16);
    }
    writeU32(out, oo, f32Bits(fr(1 / iscale)));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Importance-weighted encoders (quantize_row_<fmt>_impl), one block each: the scale searches of the
// K-quants (kquant-search.ts) on 32 weights. The caller computes the block's weights w[0..32) =
// imatrix[col] * sqrt(sigma2 + x^2), sigma2 = mean of x^2 over the whole row (rowSigma2).

/** Per-block scratch of the searches (fixed size: function-local arrays in a WGSL port). */
const levels = new Int8Array(QK);
const searchLevels = new Float64Array(qxLevelsLength(QK));
const searchScratch = new Float64Array(qxScratchLength(QK));
const levelsAux = new Uint8Array(QK);
const levelsU8 = new Uint8Array(QK);
const shiftedX = new Float32Array(QK);
/** make_qkx3_quants' second result (ggml's `the_min` pointer): -min. */
const minusMin = new Float32Array(1);


/** q4_0 with weights: levels 0..15 from make_qx_quants(nmax 8); d is the fitted scale. */
export function encodeBlockQ4_0Weighted(x: Float32Array, xBits: Int32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number): void {
  const d = makeQxQuants(QK, 8, x, xBits, xo, levels, 0, w, 0, searchLevels, searchScratch);
  writeF16(out, oo, d);
  for (let j = 0; j < 16; j++) out[oo + 2 + j] = levels[j]! | (levels[j + 16]! << 4);
}

/** q4_1 with weights: levels 0..15 and min from make_qkx3_quants(nmax 15, rmin -0.9, rdelta 0.05, 36 steps). */
export function encodeBlockQ4_1Weighted(x: Float32Array, xBits: Int32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number): void {
  const d = makeQkxQuants(QK, 15, x, xo, w, levelsU8, 0, levelsAux, shiftedX, QKX3_IMATRIX, minusMin, 0);
  writeF16(out, oo, d);
  writeF16(out, oo + 2, -minusMin[0]!);
  for (let j = 0; j < 16; j++) out[oo + 4 + j] = levelsU8[j]! | (levelsU8[j + 16]! << 4);
}

/** Packs 32 5-bit levels: low nibbles into qs at out[qs..qs+16), bit 4 of level j into bit j of qh at out[qhAt]. */
function packFiveBit(L: ArrayLike<number>, out: Uint8Array, qhAt: number, qs: number): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = L[j]!;
    const q1 = L[j + 16]!;
    out[qs + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    qh |= ((q0 & 0x10) >>> 4) << j;
    qh |= ((q1 & 0x10) >>> 4) << (j + 16);
  }
  writeU32(out, qhAt, qh);
}

/** q5_0 with weights: levels 0..31 from make_qx_quants(nmax 16). */
export function encodeBlockQ5_0Weighted(x: Float32Array, xBits: Int32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number): void {
  const d = makeQxQuants(QK, 16, x, xBits, xo, levels, 0, w, 0, searchLevels, searchScratch);
  writeF16(out, oo, d);
  packFiveBit(levels, out, oo + 2, oo + 6);
}

/** q5_1 with weights: levels 0..31 and min from make_qkx3_quants(nmax 31, rmin -0.9, rdelta 0.05, 36 steps). */
export function encodeBlockQ5_1Weighted(x: Float32Array, xBits: Int32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number): void {
  const d = makeQkxQuants(QK, 31, x, xo, w, levelsU8, 0, levelsAux, shiftedX, QKX3_IMATRIX, minusMin, 0);
  writeF16(out, oo, d);
  writeF16(out, oo + 2, -minusMin[0]!);
  packFiveBit(levelsU8, out, oo + 4, oo + 8);
}

/** sigma2 of quantize_row_<fmt>_impl: the mean of x^2 over the whole row, summed in order in float32. */
export function rowSigma2(x: Float32Array, xo: number, cols: number): number {
  return fr(sumOfSquares(x, xo, cols) / cols);
}

// ---------------------------------------------------------------------------------------------------------
// Decoders (dequantize_row_<fmt>): `blocks` blocks from q[qo..] into y[yo..]. Products of an fp16 scale
// and a small integer are exact in float32; the Float32Array store does the single rounding C does.

export function decodeQ4_0(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  for (let b = 0; b < blocks; b++, qo += 18, yo += QK) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    for (let j = 0; j < QK / 2; j++) {
      const v = q[qo + 2 + j]!;
      y[yo + j] = ((v & 0x0f) - 8) * d;
      y[yo + j + QK / 2] = ((v >>> 4) - 8) * d;
    }
  }
}

export function decodeQ4_1(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  for (let b = 0; b < blocks; b++, qo += 20, yo += QK) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    const m = f16[q[qo + 2]! | (q[qo + 3]! << 8)]!;
    for (let j = 0; j < QK / 2; j++) {
      const v = q[qo + 4 + j]!;
      // x*d + m: two float32 roundings in C (no FMA); the first is exact, the store does the second.
      y[yo + j] = (v & 0x0f) * d + m;
      y[yo + j + QK / 2] = (v >>> 4) * d + m;
    }
  }
}

export function decodeQ5_0(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  for (let b = 0; b < blocks; b++, qo += 22, yo += QK) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    const qh = readU32(q, qo + 2);
    for (let j = 0; j < QK / 2; j++) {
      const v = q[qo + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[yo + j] = (((v & 0x0f) | h0) - 16) * d;
      y[yo + j + QK / 2] = (((v >>> 4) | h1) - 16) * d;
    }
  }
}

export function decodeQ5_1(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  for (let b = 0; b < blocks; b++, qo += 24, yo += QK) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    const m = f16[q[qo + 2]! | (q[qo + 3]! << 8)]!;
    const qh = readU32(q, qo + 4);
    for (let j = 0; j < QK / 2; j++) {
      const v = q[qo + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[yo + j] = ((v & 0x0f) | h0) * d + m;
      y[yo + j + QK / 2] = ((v >>> 4) | h1) * d + m;
    }
  }
}

/**
 * The block's 32 products written out in the block loop: a 32-wide helper would be too large for V8 to
 * inline, and two calls of scaleInt8x16 per block were 1.1-1.2x slower (bench). The masks are no-ops under decodeInSpans.
 */
export function decodeQ8_0(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const f16 = F16_TO_F32;
  const s = int8View(q);
  for (let b = 0; b < blocks; b++, qo += 34, yo += QK) {
    const d = f16[q[qo]! | (q[qo + 1]! << 8)]!;
    const i = (qo + 2) & 0x3fffffff;
    const o = yo & 0x3fffffff;
    y[o] = d * s[i]!; y[o + 1] = d * s[i + 1]!; y[o + 2] = d * s[i + 2]!; y[o + 3] = d * s[i + 3]!;
    y[o + 4] = d * s[i + 4]!; y[o + 5] = d * s[i + 5]!; y[o + 6] = d * s[i + 6]!; y[o + 7] = d * s[i + 7]!;
    y[o + 8] = d * s[i + 8]!; y[o + 9] = d * s[i + 9]!; y[o + 10] = d * s[i + 10]!; y[o + 11] = d * s[i + 11]!;
    y[o + 12] = d * s[i + 12]!; y[o + 13] = d * s[i + 13]!; y[o + 14] = d * s[i + 14]!; y[o + 15] = d * s[i + 15]!;
    y[o + 16] = d * s[i + 16]!; y[o + 17] = d * s[i + 17]!; y[o + 18] = d * s[i + 18]!; y[o + 19] = d * s[i + 19]!;
    y[o + 20] = d * s[i + 20]!; y[o + 21] = d * s[i + 21]!; y[o + 22] = d * s[i + 22]!; y[o + 23] = d * s[i + 23]!;
    y[o + 24] = d * s[i + 24]!; y[o + 25] = d * s[i + 25]!; y[o + 26] = d * s[i + 26]!; y[o + 27] = d * s[i + 27]!;
    y[o + 28] = d * s[i + 28]!; y[o + 29] = d * s[i + 29]!; y[o + 30] = d * s[i + 30]!; y[o + 31] = d * s[i + 31]!;
  }
}

/** d is f32 here, and d * q (24 + 8 significant bits) is exact in double: the store rounds once, as C does. */
export function decodeQ8_K(q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number): void {
  const qs = int8View(q);
  for (let b = 0; b < blocks; b++, qo += 292, yo += QK_K) {
    const d = bitsToF32(readU32(q, qo));
    for (let j = 0; j < QK_K; j += 16) scaleInt8x16(qs, qo + 4 + j, d, y, yo + j);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Format records


/** Runs a word-storing encoder on an aligned copy of out's bytes and copies them back (unaligned outputs). */
function encodeThroughAlignedCopy(
  encode: BlocksEncoder,
  blockBytes: number,
  x: Float32Array,
  xo: number,
  out: Uint8Array,
  oo: number,
  blocks: number,
): boolean {
  const aligned = new Uint8Array(blocks * blockBytes);
  const ok = encode(x, xo, aligned, 0, blocks);
  out.set(aligned, oo);
  return ok;
}
type WeightedBlockEncoder = (x: Float32Array, xBits: Int32Array, xo: number, w: Float32Array, out: Uint8Array, oo: number) => void;

interface LegacySpec {
  id: string;
  ggmlType: number;
  blockWeights: number;
  blockBytes: number;
  description: string;
  /** What checkRowLength suggests when the block does not divide a row. */
  fallback: string | undefined;
  fallbackNote: string;
  encode: BlocksEncoder;
  /** quantize_row_<fmt>_impl's block encoder; absent where ggml ignores an importance matrix. */
  encodeWeighted?: WeightedBlockEncoder;
  decode: BlocksDecoder;
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
  if (opts?.imatrix) {
    assertFinite(x, shape, tensor);
    assertImatrix(opts.imatrix, shape.cols, tensor);
  }
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

function encodeWith(spec: LegacySpec, x: Float32Array, shape: MatrixShape, opts: EncodeOptions | undefined): Uint8Array {
  const out = prepareEncode(spec, x, shape, opts);
  const { rows, cols } = shape;
  const nb = cols / spec.blockWeights;
  const imatrix = opts?.imatrix;
  const encodeWeighted = spec.encodeWeighted;
  if (imatrix && encodeWeighted) {
    const xBits = bitsView(x);
    for (let r = 0; r < rows; r++) {
      const xr = r * cols;
      const sigma2 = rowSigma2(x, xr, cols);
      for (let b = 0; b < nb; b++) {
        importanceWeights(x, xr + b * QK, imatrix, b * QK, sigma2, QK, weightScratch, 0);
        encodeWeighted(x, xBits, xr + b * QK, weightScratch, out, (r * nb + b) * spec.blockBytes);
      }
    }
    return out;
  }
  // The block encoders see NaN and infinities on the way (see above); assertFinite names the first.
  if (!encodeInSpans(spec.encode, x, out, rows * nb, spec.blockWeights, spec.blockBytes)) {
    assertFinite(x, shape, opts?.tensorName);
    throw new Error(`${spec.id}: an encoder reported a NaN or infinity that assertFinite did not find`);
  }
  return out;
}

function decodeWith(spec: LegacySpec, q: Uint8Array, shape: MatrixShape, out: Float32Array | undefined): Float32Array {
  const y = prepareDecode(spec, q, shape, out);
  decodeInSpans(spec.decode, q, y, shape.rows * (shape.cols / spec.blockWeights), spec.blockWeights, spec.blockBytes);
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

function makeFormat(spec: LegacySpec): QuantFormat {
  return {
    id: spec.id,
    family: "gguf",
    description: spec.description,
    blockWeights: spec.blockWeights,
    blockBytes: spec.blockBytes,
    ggmlType: spec.ggmlType,
    checkRowLength: (cols) => checkRowLength(spec, cols),
    encodedBytes: (shape) => encodedBytes(spec, shape),
    encode: (x, shape, opts) => encodeWith(spec, x, shape, opts),
    decode: (q, shape, out) => decodeWith(spec, q, shape, out),
  };
}

/** A 32-weight format: llama-quantize has no fallback for it (LEGACY_FALLBACK_NOTE). */
function block32(
  id: string,
  ggmlType: number,
  blockBytes: number,
  description: string,
  codec: Pick<LegacySpec, "encode" | "encodeWeighted" | "decode">,
): QuantFormat {
  return makeFormat({ id, ggmlType, blockWeights: QK, blockBytes, description, fallback: "f16", fallbackNote: LEGACY_FALLBACK_NOTE, ...codec });
}

export const Q4_0: QuantFormat = block32("q4_0", 2, 18, "4-bit, blocks of 32 with one fp16 scale (symmetric)", {
  encode: encodeQ4_0,
  encodeWeighted: encodeBlockQ4_0Weighted,
  decode: decodeQ4_0,
});
export const Q4_1: QuantFormat = block32("q4_1", 3, 20, "4-bit, blocks of 32 with an fp16 scale and minimum", {
  encode: encodeQ4_1,
  encodeWeighted: encodeBlockQ4_1Weighted,
  decode: decodeQ4_1,
});
export const Q5_0: QuantFormat = block32("q5_0", 6, 22, "5-bit, blocks of 32 with one fp16 scale (symmetric)", {
  encode: encodeQ5_0,
  encodeWeighted: encodeBlockQ5_0Weighted,
  decode: decodeQ5_0,
});
export const Q5_1: QuantFormat = block32("q5_1", 7, 24, "5-bit, blocks of 32 with an fp16 scale and minimum", {
  encode: encodeQ5_1,
  encodeWeighted: encodeBlockQ5_1Weighted,
  decode: decodeQ5_1,
});
/** ggml's q8_0 ignores an importance matrix. */
export const Q8_0: QuantFormat = block32("q8_0", 8, 34, "8-bit, blocks of 32 with one fp16 scale (symmetric)", {
  encode: encodeQ8_0,
  decode: decodeQ8_0,
});
/** Not a file format: the activation type of K-quant dot products. No imatrix variant. */
export const Q8_K: QuantFormat = makeFormat({
  id: "q8_K",
  ggmlType: 15,
  blockWeights: QK_K,
  blockBytes: 292,
  description:
    "8-bit, super-blocks of 256 with an f32 scale and 16 block sums (llama.cpp's K-quant dot-product intermediate; not stored in GGUF)",
  fallback: undefined,
  fallbackNote: "q8_K only exists for 256-weight K-quant dot products, so there is no fallback",
  encode: encodeQ8_K,
  decode: decodeQ8_K,
});

export const GGML_LEGACY_FORMATS: QuantFormat[] = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_K];
