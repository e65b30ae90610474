// Element-wise casts: f16, bf16, fp8 E4M3 (saturating) and fp8 E5M2, encode and decode. Ports of the CPU
// reference src/quant/casts.ts (with src/formats/float-bits.ts and src/formats/float8.ts), in integer
// operations on the float32 bits only: no float arithmetic, so the bytes are the CPU's on every device,
// whether it flushes subnormals or not. Needs shaders/common/*.wgsl (f16.wgsl).
//
// Layout (casts.ts): the codes row-major, little-endian, 2 bytes (f16, bf16) or 1 byte (fp8) per weight;
// the tensor is one flat run of codes. An encoder invocation writes one u32 word of codes (2 or 4
// weights), so no two invocations share a word; the last word is zero-padded. A decoder invocation
// writes one weight.
//
// Bindings, per entry point:
//   encode_<cast>   0 params | 1 values (f32 bits) | 2 encoded | 3 flags
//   decode_<cast>   0 params | 1 encoded_in       | 2 decoded (f32 bits)

struct Params {
  count: u32, // weights in this chunk
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights as float32 bit patterns.
@group(0) @binding(1) var<storage, read> values: array<u32>;
// Encoders: the codes, 2 (f16, bf16) or 4 (fp8) to a word, the first in the low bits.
@group(0) @binding(2) var<storage, read_write> encoded: array<u32>;
// Encoders: FLAG_NON_FINITE is raised when a weight is NaN or +-inf (the caller then reports where, as
// the CPU does).
@group(0) @binding(3) var<storage, read_write> flags: atomic<u32>;
// Decoders: the codes.
@group(0) @binding(1) var<storage, read> encoded_in: array<u32>;
// Decoders: the decoded weights as float32 bit patterns (written as bits so NaN payloads and -0 survive).
@group(0) @binding(2) var<storage, read_write> decoded: array<u32>;

const WORKGROUP_SIZE = 256u;
const FLAG_NON_FINITE = 1u; // kernel-chunks.ts ENCODER_FLAG.nonFinite
const SIGN = 0x80000000u;
const F32_INF = 0x7f800000u;
const F32_QUIET_NAN = 0x7fc00000u; // what JS stores for NaN (the CPU decoders return NaN)
const E4M3_MAX_BITS = 0x43e00000u; // 448.0, casts.ts E4M3_MAX: the largest e4m3fn value

// The weight's bits, or 0 (after raising the flag) for NaN and +-inf, which the caller rejects.
fn finite_bits(i: u32) -> u32 {
  let bits = values[i];
  if ((bits & F32_INF) == F32_INF) {
    atomicOr(&flags, FLAG_NON_FINITE);
    return 0u;
  }
  return bits;
}

// ---------------------------------------------------------------------------------------------------
// bf16: the top half of a float32, rounded to nearest even (float-bits.ts f32ToBf16Bits, finite input).

fn f32_to_bf16_bits(bits: u32) -> u32 {
  return ((bits + 0x7fffu + ((bits >> 16u) & 1u)) >> 16u) & 0xffffu;
}

// ---------------------------------------------------------------------------------------------------
// fp8 (float8.ts encodeMini / decodeMini): 1 sign, `exp_bits` exponent, `man_bits` mantissa bits.
// E5M2 (has_inf) is IEEE-like; E4M3 is e4m3fn: no inf, only x.1111.111 is NaN.

fn minifloat_from_f32(bits: u32, exp_bits: u32, man_bits: u32, has_inf: bool) -> u32 {
  let sign = (bits >> 31u) << (exp_bits + man_bits);
  let exp_max = (1u << exp_bits) - 1u;
  let man_max = (1u << man_bits) - 1u;
  let bias = i32((1u << (exp_bits - 1u)) - 1u);
  let abs_bits = bits & 0x7fffffffu;
  // Zero, and float32 subnormals (below 2^-126, far under half the smallest fp8 subnormal): +-0.
  if (abs_bits < 0x00800000u) {
    return sign;
  }
  // Express the value in units of the target's quantum at its exponent e (at least the smallest
  // normal exponent, below which the target is subnormal): significand * 2^(e32 - 23) / 2^(e - man_bits).
  let e32 = i32(abs_bits >> 23u) - 127;
  var e = max(e32, 1 - bias);
  let shift = u32(23 - i32(man_bits) + (e - e32));
  var r = 0u;
  if (shift <= 25u) {
    r = round_shift_even(0x800000u | (abs_bits & 0x7fffffu), shift, false);
  }
  if (r == (2u << man_bits)) {
    // Rounding carried into the next binade.
    r = 1u << man_bits;
    e += 1;
  }
  if (r < (1u << man_bits)) {
    return sign | r; // subnormal or zero: exponent field 0
  }
  let exp_field = e + bias;
  let man = r - (1u << man_bits);
  let nan_code = sign | (exp_max << man_bits) | man_max;
  if (has_inf) {
    if (exp_field >= i32(exp_max)) {
      return sign | (exp_max << man_bits); // overflow -> inf
    }
  } else if (exp_field > i32(exp_max) || (exp_field == i32(exp_max) && man == man_max)) {
    return nan_code; // above 448 (not reached after saturation)
  }
  return sign | (u32(exp_field) << man_bits) | man;
}

fn minifloat_to_f32_bits(code: u32, exp_bits: u32, man_bits: u32, has_inf: bool) -> u32 {
  let sign = ((code >> (exp_bits + man_bits)) & 1u) << 31u;
  let exp_max = (1u << exp_bits) - 1u;
  let man_max = (1u << man_bits) - 1u;
  let bias = i32((1u << (exp_bits - 1u)) - 1u);
  let e = (code >> man_bits) & exp_max;
  let m = code & man_max;
  if (has_inf && e == exp_max) {
    return select(F32_QUIET_NAN, sign | F32_INF, m == 0u);
  }
  if (!has_inf && e == exp_max && m == man_max) {
    return F32_QUIET_NAN;
  }
  if (e == 0u) {
    if (m == 0u) {
      return sign;
    }
    // m * 2^(1 - bias - man_bits), normalised: its top bit becomes the implicit one.
    let top = 31u - countLeadingZeros(m);
    let exponent = i32(top) + 1 - bias - i32(man_bits);
    return sign | (u32(exponent + 127) << 23u) | ((m << (23u - top)) & 0x7fffffu);
  }
  return sign | (u32(i32(e) - bias + 127) << 23u) | (m << (23u - man_bits));
}

// e4m3fn, saturating: |x| > 448 becomes +-448 (casts.ts f32ToE4m3Sat).
fn e4m3_from_f32(bits: u32) -> u32 {
  let saturated = select(bits, (bits & SIGN) | E4M3_MAX_BITS, (bits & 0x7fffffffu) > E4M3_MAX_BITS);
  return minifloat_from_f32(saturated, 4u, 3u, false);
}
fn e5m2_from_f32(bits: u32) -> u32 {
  return minifloat_from_f32(bits, 5u, 2u, true);
}

// ---------------------------------------------------------------------------------------------------
// Entry points. Encoders: one output word each; decoders: one weight each.

// Linear invocation index over a (possibly 2-D) grid of workgroups.
fn invocation(lane: u32, group: vec3<u32>, groups: vec3<u32>) -> u32 {
  return linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
}

// Weight i's bits for an encoder word; past the end of the chunk 0, whose code is 0 (the padding of
// the last word).
fn weight_or_pad(i: u32) -> u32 {
  if (i >= params.count) {
    return 0u;
  }
  return finite_bits(i);
}

// Word w of a 2-byte cast's codes: weights 2w (low half) and 2w + 1.
fn word_of_16bit_codes(w: u32, bf16: bool) -> u32 {
  var word = 0u;
  for (var k = 0u; k < 2u; k++) {
    let bits = weight_or_pad(2u * w + k);
    let code = select(f32_to_f16_bits(bitcast<f32>(bits)), f32_to_bf16_bits(bits), bf16);
    word |= code << (16u * k);
  }
  return word;
}

// Word w of an fp8 cast's codes: weights 4w (low byte) to 4w + 3.
fn word_of_8bit_codes(w: u32, e4m3: bool) -> u32 {
  var word = 0u;
  for (var k = 0u; k < 4u; k++) {
    let bits = weight_or_pad(4u * w + k);
    let code = select(e5m2_from_f32(bits), e4m3_from_f32(bits), e4m3);
    word |= code << (8u * k);
  }
  return word;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_f16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = invocation(lane, group, groups);
  if (2u * w < params.count) {
    encoded[w] = word_of_16bit_codes(w, false);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_bf16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = invocation(lane, group, groups);
  if (2u * w < params.count) {
    encoded[w] = word_of_16bit_codes(w, true);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_fp8_e4m3(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = invocation(lane, group, groups);
  if (4u * w < params.count) {
    encoded[w] = word_of_8bit_codes(w, true);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_fp8_e5m2(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = invocation(lane, group, groups);
  if (4u * w < params.count) {
    encoded[w] = word_of_8bit_codes(w, false);
  }
}

// Code i of a 2-byte cast.
fn code16(i: u32) -> u32 {
  return (encoded_in[i / 2u] >> (16u * (i & 1u))) & 0xffffu;
}
// Code i of a 1-byte cast.
fn code8(i: u32) -> u32 {
  return byte_of(encoded_in[i / 4u], i);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_f16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (i >= params.count) {
    return;
  }
  let h = code16(i);
  let is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0u;
  decoded[i] = select(bitcast<u32>(f16_bits_to_f32(h)), F32_QUIET_NAN, is_nan);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_bf16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (i >= params.count) {
    return;
  }
  let bits = code16(i) << 16u;
  // A NaN keeps its sign and payload and is made quiet, as the CPU's float32 round trip does.
  let is_nan = (bits & 0x7fffffffu) > F32_INF;
  decoded[i] = select(bits, bits | 0x00400000u, is_nan);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_fp8_e4m3(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (i < params.count) {
    decoded[i] = minifloat_to_f32_bits(code8(i), 4u, 3u, false);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_fp8_e5m2(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (i < params.count) {
    decoded[i] = minifloat_to_f32_bits(code8(i), 5u, 2u, true);
  }
}
