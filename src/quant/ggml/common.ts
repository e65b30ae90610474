/**
 * Arithmetic helpers shared by the llama.cpp (ggml) block formats: the only copies of ggml's rounding
 * functions, fp16 and u32 field access, and the small loops every encoder starts with.
 *
 * Bit-exactness with ggml's C code rests on one rule: every float operation must be a float32
 * operation. In JS, Math.fround(a op b) for float32 a, b equals the C float result for + - * / and
 * sqrt (double has more than twice float's precision, so rounding twice is harmless). Every
 * intermediate the C code keeps in a `float` must therefore pass through fround; accumulators C keeps in
 * `float` too. A fround may be left out only where the double result is provably already a float32
 * (e.g. a product of an fp16 value and a small integer); each such place says why.
 *
 * Speed notes (V8): hot functions take `Math.fround` into a local `fr` and keep constants in locals;
 * module-level bindings are reloaded and re-checked on every loop iteration by TurboFan.
 */
import { bitsToF32, f16BitsToF32, f32Bits, f32ToF16Bits } from "../../formats/float-bits.ts";
import { LITTLE_ENDIAN_HOST } from "../../formats/dtypes.ts";

export const fr = Math.fround;

/** GROUP_MAX_EPS (1e-15f): groups whose largest |x| is below it count as all zero. */
export const GROUP_MAX_EPS = fr(1e-15);

// ---------------------------------------------------------------------------------------------------------
// C's float -> int conversions

/** 1.5 * 2^52: adding and subtracting it rounds a double to an integer, ties to even. */
export const ROUND_MAGIC = 6755399441055744;

/**
 * ggml's nearest_int for a float32 v whose |v| <= 4194303 (the range ggml asserts): round to nearest, ties
 * to even. ggml adds 12582912.0f and reads the low mantissa bits; for such v that sum lies in [2^23, 2^24),
 * where the float32 spacing is 1, so it is exactly the rounding done here in double. Use it where the
 * caller can bound |v| (say so there); otherwise use nearestInt.
 */
export function nearestIntInRange(v: number): number {
  return (v + ROUND_MAGIC - ROUND_MAGIC) | 0;
}

/**
 * ggml's nearest_int for any float32 v: nearestIntInRange inside ggml's range; outside it (and for NaN and
 * inf) the float bit trick replayed, so the garbage C produces is the same garbage.
 */
export function nearestInt(v: number): number {
  if (v <= 4194303 && v >= -4194303) return (v + ROUND_MAGIC - ROUND_MAGIC) | 0;
  return (f32Bits(fr(v + 12582912)) & 0x007fffff) - 0x00400000;
}

/**
 * C's roundf: nearest integer, ties away from zero. floor(v + 0.5) is that except at negative ties
 * (-2.5 -> -2), fixed by a branch that is almost never taken: a sign-dependent branch per value would
 * mispredict half the time. Exact here because v + 0.5 is computed in double; an f32 WGSL port must not do
 * that (0.49999997f + 0.5f rounds to 1) and should compare v - trunc(v) with ±0.5 instead.
 */
export function roundHalfAway(v: number): number {
  const t = v + 0.5;
  const r = Math.floor(t);
  return r === t && v < 0 ? r - 1 : r;
}

/**
 * C's (int8_t) / (uint8_t) cast of a float: truncation toward zero. Only ±Inf and NaN (from a scale whose
 * reciprocal overflowed) fall out of range here; they give 0, as x86's cvttss2si plus the byte store does.
 */
export function truncToInt(v: number): number {
  return v | 0;
}

// ---------------------------------------------------------------------------------------------------------
// fp16 and u32 fields

/** The float32 value of every fp16 code (256 KiB), so reading a scale is one load. */
export const F16_TO_F32: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32(h);
  return table;
})();

/** The float32 value that ggml stores as fp16 and reads back: GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x)). */
export function roundToF16(x: number): number {
  return F16_TO_F32[f32ToF16Bits(x)]!;
}

/** Little-endian fp16 write at a byte offset (round to nearest even, as GGML_FP32_TO_FP16). */
export function writeF16(out: Uint8Array, offset: number, x: number): void {
  const h = f32ToF16Bits(x);
  out[offset] = h & 0xff;
  out[offset + 1] = h >>> 8;
}

/** Little-endian fp16 read at a byte offset. */
export function readF16(q: Uint8Array, offset: number): number {
  return F16_TO_F32[q[offset]! | (q[offset + 1]! << 8)]!;
}

/** Little-endian u32 at any byte offset (q5_0's qh is not 4-byte aligned). */
export function readU32(q: Uint8Array, off: number): number {
  return (q[off]! | (q[off + 1]! << 8) | (q[off + 2]! << 16) | (q[off + 3]! << 24)) >>> 0;
}
export function writeU32(out: Uint8Array, off: number, v: number): void {
  out[off] = v & 0xff;
  out[off + 1] = (v >>> 8) & 0xff;
  out[off + 2] = (v >>> 16) & 0xff;
  out[off + 3] = v >>> 24;
}

/**
 * The bytes of `bytes` as int32 words, for little-endian fields read or written a word at a time (fewer
 * bounds-checked accesses): word i of the view holds bytes[4i..4i+4). undefined on a big-endian host or
 * when the view would not start a word (byteOffset) or `offset` is not a multiple of 4.
 */
export function wordView(bytes: Uint8Array, offset: number): Int32Array | undefined {
  if (!LITTLE_ENDIAN_HOST || bytes.byteOffset % 4 !== 0 || offset % 4 !== 0) return undefined;
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
}

// ---------------------------------------------------------------------------------------------------------
// Loops the encoders share

/** The same bytes as int32: the float32 bit patterns of x (WGSL: bitcast<i32>). */
export function bitsView(x: Float32Array): Int32Array {
  return new Int32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * The signed value with the largest |x| among the finite float32 values whose bits are xBits[xo..xo+n)
 * (xBits = bitsView(x)); the first one on ties, +0 for an all-zero range: ggml's `max` in its
 * `if (ax > amax) { amax = ax; max = x[i]; }` loops. Its |value| is `amax`.
 *
 * On bits, because that comparison can then be made without a branch: |x| orders like the integer
 * bits & 0x7fffffff, and for two such integers (a - b) >> 31 is -1 exactly when a < b (no overflow below
 * 2^31). The branch `ax > amax` depends on the data and mispredicts a few times per block, which costs
 * more than the rest of the loop. Two halves are scanned side by side (each update waits on the previous
 * one, so one chain is bound by its latency); the second half's winner replaces the first's only when
 * strictly larger, which keeps "first on ties".
 */
export function signedAbsMax(xBits: Int32Array, xo: number, n: number): number {
  const half = n >> 1;
  let amax0 = 0;
  let max0 = 0;
  let amax1 = 0;
  let max1 = 0;
  for (let i = xo, end = xo + half; i < end; i++) {
    const bits0 = xBits[i]!;
    const bits1 = xBits[i + half]!;
    const abs0 = bits0 & 0x7fffffff;
    const abs1 = bits1 & 0x7fffffff;
    const larger0 = (amax0 - abs0) >> 31; // -1 where abs0 > amax0, else 0
    const larger1 = (amax1 - abs1) >> 31;
    amax0 ^= (amax0 ^ abs0) & larger0;
    max0 ^= (max0 ^ bits0) & larger0;
    amax1 ^= (amax1 ^ abs1) & larger1;
    max1 ^= (max1 ^ bits1) & larger1;
  }
  if (n & 1) {
    const bits = xBits[xo + n - 1]!;
    const larger = (amax1 - (bits & 0x7fffffff)) >> 31;
    amax1 ^= (amax1 ^ (bits & 0x7fffffff)) & larger;
    max1 ^= (max1 ^ bits) & larger;
  }
  max0 ^= (max0 ^ max1) & ((amax0 - amax1) >> 31);
  return bitsToF32(max0);
}

/** -1 where the int32 a < b, else 0: no branch, and no overflow even when a - b does (Hacker's Delight 2-12). */
export function lessMask(a: number, b: number): number {
  const d = (a - b) | 0;
  return (d ^ ((a ^ b) & (d ^ a))) >> 31;
}

/**
 * An int32 that orders like the float32 whose bits these are (finite values; -0 orders below +0). Its
 * own inverse: orderKey(orderKey(bits)) = bits.
 */
export function orderKey(bits: number): number {
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

/**
 * The min and max of the float32 values whose bits are xBits[xo..xo+n), as ggml's
 * `if (v < min) min = v; if (v > max) max = v;` loop finds them, written as bits to range[ro] and
 * range[ro + 1]; with `groups` > 1, the same for each of `groups` consecutive groups of n values (group g's
 * at range[ro + 2g], range[ro + 2g + 1]). Returns false (ranges then unspecified) when a value is NaN or
 * infinite.
 *
 * Compares order keys without a branch, for the reason signedAbsMax gives. Equal keys are equal floats
 * except +0 and -0, which C's `<` does not tell apart: there C keeps the first zero it meets, and so does
 * the scan this function falls back to when the min or the max is a zero.
 *
 * Weights are almost always below 2 in magnitude; their keys then lie in [-2^30, 2^30), where a - b cannot
 * overflow and its sign is the comparison (lessMask costs three times as much). The loop ORs the bits on the
 * way; if any has bit 30 set (|x| >= 2, inf or NaN) the group is scanned again with lessMask.
 *
 * Eight values a step, as a tournament: each pair is sorted first (its smaller key then only meets the
 * running min and its larger only the running max, three comparisons per pair instead of four), the pairs'
 * lows and highs are merged two by two, and the two halves of the step feed two (min, max) lanes, since each
 * update waits on the previous one. A select is `b + (d & (d >> 31))` with d = a - b (min; `a - (...)` for
 * max): four integer operations where the xor form takes five. 1.35x the four-a-step loop with xor selects.
 * The function is too large for V8 to inline, so encoders ask for many groups in one call (1.1x for q4_1).
 * Offsets must stay below 2^30 (xo + n * groups <= 2^30; encodeInSpans sees to it for the encoders).
 */
export function minMaxBits(xBits: Int32Array, xo: number, n: number, range: Int32Array, ro = 0, groups = 1): boolean {
  for (let g = 0; g < groups; g++, xo += n, ro += 2) {
    let minA = 0x3fffffff;
    let maxA = -0x40000000;
    let minB = 0x3fffffff;
    let maxB = -0x40000000;
    let all = 0;
    const end = xo + n;
    let i = xo;
    // `| 0` on every sum and difference: they cannot overflow (see above), and saying so drops V8's checks.
    // Each pair is finished before the next is loaded: fewer live values, fewer spills (1.1x).
    for (; i + 7 < end; i += 8) {
      const p = i & 0x3fffffff; // offsets stay below 2^30 (see the doc): p + 7 needs no overflow check
      const b0 = xBits[p]!;
      const b1 = xBits[p + 1]!;
      all |= b0 | b1;
      const k0 = b0 ^ ((b0 >> 31) & 0x7fffffff); // orderKey, inlined
      const k1 = b1 ^ ((b1 >> 31) & 0x7fffffff);
      // A pair: m = min(0, a - b); low = b + m, high = a - m.
      const d01 = (k0 - k1) | 0;
      const m01 = d01 & (d01 >> 31);
      const low01 = (k1 + m01) | 0;
      const high01 = (k0 - m01) | 0;
      const b2 = xBits[p + 2]!;
      const b3 = xBits[p + 3]!;
      all |= b2 | b3;
      const k2 = b2 ^ ((b2 >> 31) & 0x7fffffff);
      const k3 = b3 ^ ((b3 >> 31) & 0x7fffffff);
      const d23 = (k2 - k3) | 0;
      const m23 = d23 & (d23 >> 31);
      const low23 = (k3 + m23) | 0;
      const high23 = (k2 - m23) | 0;
      // The two pairs' lows and highs, then lane A.
      const dLowA = (low01 - low23) | 0;
      const lowA = (low23 + (dLowA & (dLowA >> 31))) | 0;
      const dHighA = (high01 - high23) | 0;
      const highA = (high01 - (dHighA & (dHighA >> 31))) | 0;
      const eMinA = (lowA - minA) | 0;
      minA = (minA + (eMinA & (eMinA >> 31))) | 0;
      const eMaxA = (maxA - highA) | 0;
      maxA = (maxA - (eMaxA & (eMaxA >> 31))) | 0;
      // The same for values 4..7 and lane B.
      const b4 = xBits[p + 4]!;
      const b5 = xBits[p + 5]!;
      all |= b4 | b5;
      const k4 = b4 ^ ((b4 >> 31) & 0x7fffffff);
      const k5 = b5 ^ ((b5 >> 31) & 0x7fffffff);
      const d45 = (k4 - k5) | 0;
      const m45 = d45 & (d45 >> 31);
      const low45 = (k5 + m45) | 0;
      const high45 = (k4 - m45) | 0;
      const b6 = xBits[p + 6]!;
      const b7 = xBits[p + 7]!;
      all |= b6 | b7;
      const k6 = b6 ^ ((b6 >> 31) & 0x7fffffff);
      const k7 = b7 ^ ((b7 >> 31) & 0x7fffffff);
      const d67 = (k6 - k7) | 0;
      const m67 = d67 & (d67 >> 31);
      const low67 = (k7 + m67) | 0;
      const high67 = (k6 - m67) | 0;
      const dLowB = (low45 - low67) | 0;
      const lowB = (low67 + (dLowB & (dLowB >> 31))) | 0;
      const dHighB = (high45 - high67) | 0;
      const highB = (high45 - (dHighB & (dHighB >> 31))) | 0;
      const eMinB = (lowB - minB) | 0;
      minB = (minB + (eMinB & (eMinB >> 31))) | 0;
      const eMaxB = (maxB - highB) | 0;
      maxB = (maxB - (eMaxB & (eMaxB >> 31))) | 0;
    }
    for (; i < end; i++) {
      const bits = xBits[i]!;
      all |= bits;
      const key = bits ^ ((bits >> 31) & 0x7fffffff);
      const eMin = (key - minA) | 0;
      minA = (minA + (eMin & (eMin >> 31))) | 0;
      const eMax = (maxA - key) | 0;
      maxA = (maxA - (eMax & (eMax >> 31))) | 0;
    }
    if (all & 0x40000000) {
      if (!minMaxBitsAnyRange(xBits, xo, n, range, ro)) return false;
      continue;
    }
    // Equal keys are equal floats (zeros are resolved below), so either lane or pair member may win a tie.
    const eMin = (minA - minB) | 0;
    const minKey = (minB + (eMin & (eMin >> 31))) | 0;
    const eMax = (maxA - maxB) | 0;
    const maxKey = (maxA - (eMax & (eMax >> 31))) | 0;
    range[ro] = minKey === 0 || minKey === -1 ? firstZeroBits(xBits, xo, n) : orderKey(minKey);
    range[ro + 1] = maxKey === 0 || maxKey === -1 ? firstZeroBits(xBits, xo, n) : orderKey(maxKey);
  }
  return true;
}

/** minMaxBits for values of any size, inf and NaN included. */
function minMaxBitsAnyRange(xBits: Int32Array, xo: number, n: number, range: Int32Array, ro: number): boolean {
  let minKey = 0x7fffffff;
  let maxKey = -0x80000000;
  for (let i = xo; i < xo + n; i++) {
    const key = orderKey(xBits[i]!);
    minKey ^= (minKey ^ key) & lessMask(key, minKey);
    maxKey ^= (maxKey ^ key) & lessMask(maxKey, key);
  }
  // Keys beyond the finite range: +inf and positive NaNs above, -inf and negative NaNs below.
  if (maxKey >= 0x7f800000 || minKey <= orderKey(0xff800000 | 0)) return false;
  range[ro] = minKey === 0 || minKey === -1 ? firstZeroBits(xBits, xo, n) : orderKey(minKey);
  range[ro + 1] = maxKey === 0 || maxKey === -1 ? firstZeroBits(xBits, xo, n) : orderKey(maxKey);
  return true;
}

/** The bits of the first ±0 in xBits[xo..xo+n) (one is there when this is called). */
function firstZeroBits(xBits: Int32Array, xo: number, n: number): number {
  let i = xo;
  while ((xBits[i]! & 0x7fffffff) !== 0 && i < xo + n - 1) i++;
  return xBits[i]!;
}

/** sum of x^2 over x[xo..xo+n), accumulated in order in float32 (ggml's `sum_x2 += x[j]*x[j]`). */
export function sumOfSquares(x: Float32Array, xo: number, n: number): number {
  const fr = Math.fround;
  let sum = 0;
  for (let i = xo; i < xo + n; i++) sum = fr(sum + fr(x[i]! * x[i]!));
  return sum;
}

/**
 * The importance weights of ggml's quantize_row_<fmt>_impl: w[wo + j] = qw[qwo + j] * sqrt(sigma2 + x^2)
 * for the n weights from x[xo] (sigma2 is the row's or super-block's mean square, per format). Returns
 * their float32 sum in order, the K-quants' `sumw` (sw[j]).
 */
export function importanceWeights(
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  sigma2: number,
  n: number,
  w: Float32Array,
  wo: number,
): number {
  const fr = Math.fround;
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    const wj = fr(qw[qwo + j]! * fr(Math.sqrt(fr(sigma2 + fr(v * v)))));
    w[wo + j] = wj;
    sum = fr(sum + wj);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------------------
// Decoder steps. V8 does not unroll loops, and in these decoders the loop overhead (index update, bounds
// checks) costs as much as the work, so the inner steps are written out 4 to 16 values wide (about 2x faster;
// V8 inlines a function only below about 460 bytes of bytecode, which bounds the width).

/** Decodes `blocks` consecutive blocks from q[qo..) into y[yo..). */
export type BlocksDecoder = (q: Uint8Array, qo: number, y: Float32Array, yo: number, blocks: number) => void;

/** Offsets a block codec sees stay below this (inSpans), in weights and in bytes. */
const SPAN_LIMIT = 2 ** 30;

/**
 * Runs `run` over a whole tensor in spans of blocks whose weight and byte offsets stay below `limit` (2^30:
 * one span unless the tensor has a billion weights), passing each span's views of the weights and the
 * bytes; stops at the first span for which it returns false. Offsets below 2^30 let the block codecs write
 * `offset & 0x3fffffff`: that tells TurboFan the offset is small, and every `offset + k` index then goes
 * without its overflow check (35-50% faster for q8_0). The literal must be written out: an imported
 * constant is a runtime load.
 */
function inSpans(
  weights: Float32Array,
  bytes: Uint8Array,
  blocks: number,
  blockWeights: number,
  blockBytes: number,
  limit: number,
  run: (weights: Float32Array, bytes: Uint8Array, blocks: number) => boolean,
): boolean {
  const span = Math.max(1, Math.floor(limit / Math.max(blockWeights, blockBytes)));
  if (blocks <= span) return run(weights, bytes, blocks);
  for (let b = 0; b < blocks; b += span) {
    const n = Math.min(span, blocks - b);
    if (!run(weights.subarray(b * blockWeights, (b + n) * blockWeights), bytes.subarray(b * blockBytes, (b + n) * blockBytes), n)) return false;
  }
  return true;
}

/** Runs a blocks decoder over a whole tensor, in spans (inSpans). */
export function decodeInSpans(
  decode: BlocksDecoder,
  q: Uint8Array,
  y: Float32Array,
  blocks: number,
  blockWeights: number,
  blockBytes: number,
  limit = SPAN_LIMIT,
): void {
  inSpans(y, q, blocks, blockWeights, blockBytes, limit, (ys, qs, n) => {
    decode(qs, 0, ys, 0, n);
    return true;
  });
}

/**
 * Encodes `blocks` consecutive blocks from x[xo..) into out[oo..); false when a NaN or infinity stopped it
 * (out then unspecified).
 */
export type BlocksEncoder = (x: Float32Array, xo: number, out: Uint8Array, oo: number, blocks: number) => boolean;

/** Runs a blocks encoder over a whole tensor, in spans (inSpans); false when a span met a NaN or infinity. */
export function encodeInSpans(
  encode: BlocksEncoder,
  x: Float32Array,
  out: Uint8Array,
  blocks: number,
  blockWeights: number,
  blockBytes: number,
  limit = SPAN_LIMIT,
): boolean {
  return inSpans(x, out, blocks, blockWeights, blockBytes, limit, (xs, os, n) => encode(xs, 0, os, 0, n));
}

/** The same bytes seen as int8 (C's int8_t fields): loads sign-extend. */
export function int8View(q: Uint8Array): Int8Array {
  return new Int8Array(q.buffer, q.byteOffset, q.length);
}

/**
 * y[yo + k] = d * s[so + k] for k < 16. Exact before the store when d is an fp16 value or an f32 whose
 * product with an int8 fits float32 (q8_0, q8_K): the Float32Array store then rounds once, as C does.
 */
export function scaleInt8x16(s: Int8Array, so: number, d: number, y: Float32Array, yo: number): void {
  so &= 0x3fffffff; // no-ops under decodeInSpans; see there
  yo &= 0x3fffffff;
  y[yo] = d * s[so]!;
  y[yo + 1] = d * s[so + 1]!;
  y[yo + 2] = d * s[so + 2]!;
  y[yo + 3] = d * s[so + 3]!;
  y[yo + 4] = d * s[so + 4]!;
  y[yo + 5] = d * s[so + 5]!;
  y[yo + 6] = d * s[so + 6]!;
  y[yo + 7] = d * s[so + 7]!;
  y[yo + 8] = d * s[so + 8]!;
  y[yo + 9] = d * s[so + 9]!;
  y[yo + 10] = d * s[so + 10]!;
  y[yo + 11] = d * s[so + 11]!;
  y[yo + 12] = d * s[so + 12]!;
  y[yo + 13] = d * s[so + 13]!;
  y[yo + 14] = d * s[so + 14]!;
  y[yo + 15] = d * s[so + 15]!;
}
