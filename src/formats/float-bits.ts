/**
 * Scalar conversions between float32 values and the bit patterns of narrower IEEE-style floats.
 * Exact: round to nearest, ties to even, with subnormals, inf and NaN, as C's (_Float16) cast and
 * ggml's GGML_FP32_TO_FP16 do. These are the only copies; the dtype decoders and the quantizers use them.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE binary32 bit pattern of x (after rounding x to float32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The float32 value of a bit pattern. */
export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** float32 -> binary16 bits, round to nearest even; NaN -> 0x7E00 with the sign kept (as ggml does). */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

/** f32ToF16Bits from the float32's bit pattern (for callers that hold the bits already). */
export function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  // Unbiased exponent; binary16 normal range is [-14, 15].
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00; // overflow -> inf
  if (e >= -14) {
    // Normal: keep 10 mantissa bits, round the 13 dropped bits to nearest even.
    const h = ((e + 15) << 10) | (mant >>> 13);
    // Round up when rest > half, or rest == half and h is odd, without a branch (on data it mispredicts
    // half the time; 2x slower). The carry may run into the exponent: correct, up to inf.
    const rest = mant & 0x1fff;
    return sign | (h + ((rest + 0xfff + (h & 1)) >>> 13));
  }
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  // Subnormal: value = (1.mant) * 2^e = m * 2^-24 with m = (0x800000|mant) >> (-e - 24 + 23)... shift below.
  const full = 0x800000 | mant; // 24-bit significand, value = full * 2^(e-23)
  const shift = -e - 1; // number of bits dropped to express in units of 2^-24: (e-23) - (-24) = e+1 -> drop -(e+1)
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1))) h++;
  return sign | h;
}

/** binary16 bits -> float32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** float32 -> bfloat16 bits, round to nearest even (the rule torch and safetensors writers use); NaN stays NaN. */
export function f32ToBf16Bits(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // quiet NaN, sign kept
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> float32 value (exact: bf16 is the top half of a float32). */
export function bf16BitsToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}
