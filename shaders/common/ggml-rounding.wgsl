// The float -> integer conversions of ggml's C code (ggml/src/ggml-quants.c), as src/quant/ggml
// reproduces them. Each names the C construct it stands for.

// True unless v is +-inf or NaN. Tested on the bits: WGSL lets compilers assume float arithmetic
// never meets inf or NaN, so `v == v` style tests could be folded away.
fn is_finite_f32(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// C's (int)v for a float (truncation toward zero), as x86 does it where the reference meets it:
// only +-inf and NaN (from a scale whose reciprocal overflowed) fall out of range, and after the
// int8/uint8 store they are 0 (cvttss2si gives 0x80000000). Same as truncToInt in legacy.ts.
fn trunc_to_int(v: f32) -> i32 {
  return select(0, i32(trunc(v)), is_finite_f32(v));
}

// C's roundf: nearest integer, ties away from zero. v - trunc(v) is exact in f32, so comparing the
// fraction with 0.5 is exact too (v + 0.5 would not be: 0.49999997 + 0.5 rounds to 1).
fn round_half_away(v: f32) -> f32 {
  let t = trunc(v);
  return select(t, t + sign(v), abs(v - t) >= 0.5);
}

// ggml's nearest_int: v + 1.5 * 2^23 puts the integer part in the low mantissa bits (round to
// nearest, ties to even). ggml asserts |v| <= 4194303; outside that (an inf from an overflowed
// scale, say) this returns what the C bit trick returns, as src/quant/ggml/common.ts does.
fn nearest_int(v: f32) -> i32 {
  if (!is_finite_f32(v) && (bitcast<u32>(v) & 0x7fffffu) != 0u) {
    return 0; // NaN: the C code gets (0x7fc00000 & 0x7fffff) - 0x400000 = 0
  }
  let shifted = v + 12582912.0;
  return i32(bitcast<u32>(shifted) & 0x7fffffu) - 0x400000;
}

// x, hidden from the compiler. Drivers may treat f32 division as approximate (SPIR-V allows 2.5 ulp)
// and rewrite it: SwiftShader turns x / 15.0 into x * (1/15) and 1 / (c / y) into y * (1/c), neither
// correctly rounded, while ggml's C divides exactly. Passing a divisor that is, or is built from, a
// constant through this function stops that: `zero_bits` must be a runtime 0 the compiler cannot know
// (a uniform field the host sets to 0), so the OR is opaque and the division stays a division.
fn opaque_f32(x: f32, zero_bits: u32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) | zero_bits);
}

// trunc_to_int and round_half_away on four values at once (the same per element).
fn trunc_to_int4(v: vec4<f32>) -> vec4<i32> {
  let finite = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
  return select(vec4<i32>(0), vec4<i32>(trunc(v)), finite);
}
fn round_half_away4(v: vec4<f32>) -> vec4<f32> {
  let t = trunc(v);
  return select(t, t + sign(v), abs(v - t) >= vec4<f32>(0.5));
}
