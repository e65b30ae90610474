// fp32 <-> IEEE binary16 bit patterns, with integer operations only.
//
// Why not pack2x16float/unpack2x16float: WGSL leaves their rounding and subnormal handling to the
// implementation, and ggml (GGML_FP32_TO_FP16) rounds to nearest even with fp16 subnormals. These
// are line-for-line ports of src/formats/float-bits.ts (f32ToF16Bits, f16BitsToF32), so the GPU
// stores the same scale bits as the CPU reference on every device, flushing or not.

// float32 -> binary16 bits: round to nearest, ties to even; subnormals kept; overflow -> inf;
// NaN -> 0x7E00 with its sign (as ggml).
fn f32_to_f16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let exponent = (b >> 23u) & 0xffu;
  let mantissa = b & 0x7fffffu;
  if (exponent == 0xffu) {
    return sign | select(0x7c00u, 0x7e00u, mantissa != 0u);
  }
  let e = i32(exponent) - 127; // unbiased; binary16's normal range is [-14, 15]
  if (e > 15) {
    return sign | 0x7c00u;
  }
  if (e >= -14) {
    // Normal: keep 10 mantissa bits, round the 13 dropped ones to nearest even (a carry into the
    // exponent is correct, up to inf).
    var h = (u32(e + 15) << 10u) | (mantissa >> 13u);
    let rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0u)) {
      h += 1u;
    }
    return sign | h;
  }
  if (e < -25) {
    return sign; // below half the smallest subnormal
  }
  // Subnormal: the 24-bit significand in units of 2^-24, rounded to nearest even.
  let significand = 0x800000u | mantissa;
  let shift = u32(-e - 1); // 14..24 dropped bits
  var h = significand >> shift;
  let rest = significand & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (h & 1u) != 0u)) {
    h += 1u;
  }
  return sign | h;
}

// binary16 bits (low 16 bits of h) -> the float32 of the same value (exact; fp16 subnormals become
// normal float32 numbers, built bit by bit so a flushing device still gets them).
fn f16_bits_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) {
    return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); // inf, NaN
  }
  if (exponent != 0u) {
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
  }
  if (mantissa == 0u) {
    return bitcast<f32>(sign); // +-0
  }
  // mantissa * 2^-24 with its top bit at position p: 1.f * 2^(p - 24).
  let p = 31u - countLeadingZeros(mantissa);
  return bitcast<f32>(sign | ((p + 103u) << 23u) | ((mantissa << (23u - p)) & 0x7fffffu));
}
