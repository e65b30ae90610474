// Element-wise casts: f16, bf16, fp8 E4M3 (saturating) and fp8 E5M2, encode and decode. Ports of the CPU
// reference src/quant/casts.ts (with src/formats/float-bits.ts and src/formats/float8.ts), in integer
// operations on the float32 bits only: no float arithmetic, so the bytes are the CPU's on every device,
// whether it flushes subnormals or not. Needs shaders/common/*.wgsl (f16.wgsl).
//
// Layout (casts.ts): the codes row-major, little-endian, 2 bytes (f16, bf16) or 1 byte (fp8) per weight;
// the tensor is one flat run of codes. An encoder invocation converts 4 weights (one 16-byte load) into
// 2 words (f16, bf16) or 1 word (fp8) of codes: whole words, so no two invocations share one. The
// conversions are written on vec4 lanes without branches (selects): one invocation per 4 weights and no
// divergence is what keeps a cast as fast as a copy. A decoder invocation writes one weight.
//
// Bindings, per entry point:
//   encode_f16, encode_bf16             0 params | 1 values (f32 bits) | 2 encoded16 | 3 flags
//   encode_fp8_e4m3, encode_fp8_e5m2    0 params | 1 values (f32 bits) | 2 encoded8  | 3 flags
//   decode_<cast>                       0 params | 1 encoded_in       | 2 decoded (f32 bits)

struct Params {
  count: u32, // weights in this chunk (encoders: the buffer is zero-padded to a multiple of 4)
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights as float32 bit patterns, 4 to an element.
@group(0) @binding(1) var<storage, read> values: array<vec4<u32>>;
// f16/bf16 encoders: the codes of weights 4i..4i+3 in element i (2 to a word, the first in the low bits).
@group(0) @binding(2) var<storage, read_write> encoded16: array<vec2<u32>>;
// fp8 encoders: the codes of weights 4i..4i+3 in word i (the first in the low byte).
@group(0) @binding(2) var<storage, read_write> encoded8: array<u32>;
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

// 4 weights' bits; raises FLAG_NON_FINITE when one is NaN or +-inf (the caller then throws the CPU's error).
fn load4(i: u32) -> vec4<u32> {
  let bits = values[i];
  if (any((bits & vec4(F32_INF)) == vec4(F32_INF))) {
    atomicOr(&flags, FLAG_NON_FINITE);
  }
  return bits;
}

// x rounded right by `shift` (1..31) bits to nearest, ties to even, lane by lane.
fn round_shift_even4(x: vec4<u32>, shift: vec4<u32>) -> vec4<u32> {
  let kept = x >> shift;
  let dropped = x & ((vec4(1u) << shift) - vec4(1u));
  let half = vec4(1u) << (shift - vec4(1u));
  let up = (dropped > half) | ((dropped == half) & ((kept & vec4(1u)) != vec4(0u)));
  return kept + select(vec4(0u), vec4(1u), up);
}

// ---------------------------------------------------------------------------------------------------
// f16: float-bits.ts f32ToF16Bits (common/f16.wgsl f32_to_f16_bits) on 4 lanes.

// Rounds away the low `drop` bits of a float32 magnitude to nearest, ties to even, and rebiases the exponent:
// for a target float with 23 - drop mantissa bits whose normal range the value is in, the result is its
// code (a carry into the exponent is right, up to the target's inf). The bf16 trick, at another bit.
fn round_rebias4(magnitude: vec4<u32>, drop: u32, rebias: u32) -> vec4<u32> {
  let half_minus_one = vec4((1u << (drop - 1u)) - 1u);
  return ((magnitude + half_minus_one + ((magnitude >> vec4(drop)) & vec4(1u))) >> vec4(drop)) - vec4(rebias);
}

fn f16_bits4(bits: vec4<u32>) -> vec4<u32> {
  let sign = (bits >> vec4(16u)) & vec4(0x8000u);
  let magnitude = bits & vec4(0x7fffffffu);
  // Normal range [2^-14, 2^16): 13 bits dropped, exponent bias 127 -> 15 (112 << 10); 65520 and up carry into inf.
  var h = round_rebias4(magnitude, 13u, 112u << 10u);
  // The rest is rare in weights: computed only when a lane needs it.
  let small = magnitude < vec4(0x38800000u); // below 2^-14
  let large = magnitude >= vec4(0x47800000u); // 2^16 and up
  if (any(small | large)) {
    // Subnormal: the 24-bit significand in units of 2^-24, rounded (below 2^-25: 0).
    let e = vec4<i32>(magnitude >> vec4(23u)) - vec4(127);
    let significand = (magnitude & vec4(0x7fffffu)) | vec4(0x800000u);
    let subnormal = round_shift_even4(significand, vec4<u32>(clamp(-e - vec4(1), vec4(14), vec4(24))));
    h = select(h, select(subnormal, vec4(0u), e < vec4(-25)), small);
    h = select(h, vec4(0x7c00u), large); // overflow -> inf
  }
  return sign | h;
}

// bf16: the top half of a float32, rounded to nearest even (float-bits.ts f32ToBf16Bits, finite input).
fn bf16_bits4(bits: vec4<u32>) -> vec4<u32> {
  return ((bits + vec4(0x7fffu) + ((bits >> vec4(16u)) & vec4(1u))) >> vec4(16u)) & vec4(0xffffu);
}

// ---------------------------------------------------------------------------------------------------
// fp8 (float8.ts encodeMini / decodeMini): 1 sign, `exp_bits` exponent, `man_bits` mantissa bits.
// E5M2 (has_inf) is IEEE-like; E4M3 is e4m3fn: no inf, only x.1111.111 is NaN.

fn minifloat4(bits: vec4<u32>, exp_bits: u32, man_bits: u32, has_inf: bool) -> vec4<u32> {
  let sign = (bits >> vec4(31u)) << vec4(exp_bits + man_bits);
  let exp_max = (1u << exp_bits) - 1u;
  let man_max = (1u << man_bits) - 1u;
  let bias = i32((1u << (exp_bits - 1u)) - 1u);
  let abs_bits = bits & vec4(0x7fffffffu);
  // Express the value in units of the target's quantum at its exponent e (at least the smallest normal
  // exponent, below which the target is subnormal): significand * 2^(e32 - 23) / 2^(e - man_bits).
  let e32 = vec4<i32>(abs_bits >> vec4(23u)) - vec4(127);
  let e = max(e32, vec4(1 - bias));
  // A shift past 25 leaves nothing of a 24-bit significand: 25 gives the same 0.
  let shift = vec4<u32>(min(vec4(23 - i32(man_bits)) + (e - e32), vec4(25)));
  var r = round_shift_even4(vec4(0x800000u) | (abs_bits & vec4(0x7fffffu)), shift);
  // Rounding that carried into the next binade.
  let carry = r == vec4(2u << man_bits);
  r = select(r, vec4(1u << man_bits), carry);
  let exp_field = e + bias + select(vec4(0), vec4(1), carry);
  let man = r - vec4(1u << man_bits);
  var code = sign | (vec4<u32>(max(exp_field, vec4(0))) << vec4(man_bits)) | man;
  if (has_inf) {
    code = select(code, sign | vec4(exp_max << man_bits), exp_field >= vec4(i32(exp_max))); // overflow -> inf
  } else {
    let too_big = (exp_field > vec4(i32(exp_max))) | ((exp_field == vec4(i32(exp_max))) & (man == vec4(man_max)));
    code = select(code, sign | vec4((exp_max << man_bits) | man_max), too_big); // NaN (not reached after saturation)
  }
  code = select(code, sign | r, r < vec4(1u << man_bits)); // subnormal or zero: exponent field 0
  // Zero, and float32 subnormals (below 2^-126, far under half the smallest fp8 subnormal): +-0.
  return select(code, sign, abs_bits < vec4(0x00800000u));
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
fn e4m3_4(bits: vec4<u32>) -> vec4<u32> {
  let saturated = select(bits, (bits & vec4(SIGN)) | vec4(E4M3_MAX_BITS), (bits & vec4(0x7fffffffu)) > vec4(E4M3_MAX_BITS));
  return minifloat4(saturated, 4u, 3u, false);
}

// e5m2: when every lane is in its normal range (2^-14 and up), 21 bits dropped, bias 127 -> 15, and
// anything past the largest finite value (57344) becomes inf (0x7c) as torch's cast does.
fn e5m2_4(bits: vec4<u32>) -> vec4<u32> {
  let magnitude = bits & vec4(0x7fffffffu);
  if (any(magnitude < vec4(0x38800000u))) {
    return minifloat4(bits, 5u, 2u, true);
  }
  let sign = (bits >> vec4(24u)) & vec4(0x80u);
  return sign | min(round_rebias4(magnitude, 21u, 112u << 2u), vec4(0x7cu));
}

// ---------------------------------------------------------------------------------------------------
// Entry points. Encoders: one output word each; decoders: one weight each.

// Linear invocation index over a (possibly 2-D) grid of workgroups.
fn invocation(lane: u32, group: vec3<u32>, groups: vec3<u32>) -> u32 {
  return linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
}

// Two 16-bit codes to a word, four 8-bit codes to a word, the first in the low bits.
fn pack16(h: vec4<u32>) -> vec2<u32> {
  return vec2(h.x | (h.y << 16u), h.z | (h.w << 16u));
}
fn pack8(c: vec4<u32>) -> u32 {
  return c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_f16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (4u * i < params.count) {
    encoded16[i] = pack16(f16_bits4(load4(i)));
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_bf16(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (4u * i < params.count) {
    encoded16[i] = pack16(bf16_bits4(load4(i)));
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_fp8_e4m3(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (4u * i < params.count) {
    encoded8[i] = pack8(e4m3_4(load4(i)));
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_fp8_e5m2(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = invocation(lane, group, groups);
  if (4u * i < params.count) {
    encoded8[i] = pack8(e5m2_4(load4(i)));
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
