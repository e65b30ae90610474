// Correctly rounded f32 division with integer operations only.
//
// Why: WGSL lets `x / y` be up to 2.5 ulp off (only SwiftShader-like devices round it correctly), yet a
// quantizer's scale must have the CPU reference's exact bits (fround(1 / absmax), fround(127 / absmax)):
// one ulp changes codes. Scales are computed once per block, so a 25-step long division is cheap there.

// n / d rounded to the nearest f32, ties to even, for finite n >= 0 and d > 0 (either may be subnormal).
// Returns +inf when the quotient overflows, and rounds to subnormals (or 0) when it underflows, exactly
// as Math.fround(n / d) does.
fn div_f32_exact(n: f32, d: f32) -> f32 {
  let nb = bitcast<u32>(n) & 0x7fffffffu;
  let db = bitcast<u32>(d) & 0x7fffffffu;
  if (nb == 0u) {
    return 0.0;
  }
  // n = a * 2^ea and d = b * 2^eb with 24-bit significands a, b in [2^23, 2^24).
  let ns = f32_significand(nb);
  let ds = f32_significand(db);
  var a = ns.x;
  let b = ds.x;
  // The quotient's exponent: a/b * 2^(ea - eb), once a/b is brought into [1, 2).
  var e = bitcast<i32>(ns.y) - bitcast<i32>(ds.y);
  if (a < b) {
    a = a << 1u;
    e -= 1;
  }
  // Long division: 25 quotient bits (24 of significand and one rounding bit); the remainder is the
  // sticky bit. r stays below 2b < 2^25 before each shift, so nothing overflows 32 bits.
  var q = 0u;
  var r = a;
  for (var i = 0u; i < 25u; i++) {
    q = q << 1u;
    if (r >= b) {
      r -= b;
      q |= 1u;
    }
    r = r << 1u;
  }
  let sticky = r != 0u;
  // n / d = q * 2^(e - 24) (+ the remainder); its biased f32 exponent is e + 127. (The result is built
  // in a variable: WGSL rejects a constant +inf, bitcast<f32>(0x7f800000u) included.)
  let biased = e + 127;
  var bits = 0u;
  if (biased >= 255) {
    bits = 0x7f800000u; // overflow: +inf
  } else if (biased >= 1) {
    // Normal: drop the rounding bit. kept = 2^23 + mantissa, or 2^24 after a carry, which moves into
    // the exponent by itself (up to +inf from the largest exponent).
    let kept = round_shift_even(q, 1u, sticky);
    bits = (u32(biased - 1) << 23u) + kept;
  } else {
    // Subnormal: the significand loses 1 - biased more bits (all of them past 25: the result is 0).
    let drop = u32(2 - biased);
    if (drop <= 25u) {
      bits = round_shift_even(q, drop, sticky);
    }
  }
  return bitcast<f32>(bits);
}

// (significand, exponent) of a positive finite non-zero f32 given by its bits: value = s * 2^e with
// s in [2^23, 2^24) (subnormals are normalised). The exponent is returned as the bits of an i32.
fn f32_significand(bits: u32) -> vec2<u32> {
  let exponent = bits >> 23u;
  let mantissa = bits & 0x7fffffu;
  if (exponent != 0u) {
    return vec2<u32>(mantissa | 0x800000u, bitcast<u32>(i32(exponent) - 150));
  }
  let top = 31u - countLeadingZeros(mantissa); // 0..22
  return vec2<u32>(mantissa << (23u - top), bitcast<u32>(-149 - i32(23u - top)));
}

// v >> shift (1 <= shift <= 25), rounded to nearest, ties to even; `sticky` says whether bits below v
// (already dropped) were non-zero, which breaks a tie upwards.
fn round_shift_even(v: u32, shift: u32, sticky: bool) -> u32 {
  let kept = v >> shift;
  let rest = v & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  let up = rest > half || (rest == half && (sticky || (kept & 1u) != 0u));
  return kept + select(0u, 1u, up);
}
