// Element-wise casts: f16, bf16, fp8 E4M3 (saturating) and fp8 E5M2, encode and decode. Ports of the CPU
// reference src/quant/casts.ts (with src/formats/float-bits.ts and src/formats/float8.ts), in integer
// operations on the float32 bits, and one float32 addition for the targets' subnormals (exact: see below),
// so the bytes are the CPU's on every device, whether it flushes subnormals or not. Needs
// shaders/common/*.wgsl (f16.wgsl, bytes.wgsl, grid.wgsl, ggml-rounding.wgsl).
//
// Layout (casts.ts): the codes row-major, little-endian, 2 bytes (f16, bf16) or 1 byte (fp8) per weight;
// the tensor is one flat run of codes. An encoder invocation converts 4 weights (one 16-byte load) into
// 2 words (f16, bf16) or 1 word (fp8) of codes: whole words, so no two invocations share one. The
// conversions are written on vec4 lanes without branches (selects): one invocation per 4 weights and no
// divergence is what keeps a cast as fast as a copy. A decoder invocation writes one weight. Each cast
// has its own entry points rather than a switch on a uniform: SwiftShader runs every case of such a
// switch (measured: 3-4x slower).
//
// Bindings, per entry point:
//   encode_f16, encode_bf16             0 params | 1 values (f32 bits) | 2 encoded16 | 3 flags
//   encode_fp8_e4m3, encode_fp8_e5m2    0 params | 1 values (f32 bits) | 2 encoded8  | 3 flags
//   decode_<cast>                       0 params | 1 encoded_in       | 2 decoded (f32 bits)

struct Params {
  count: u32, // weights in this chunk (encoders: the buffer is zero-padded to a multiple of 4)
  zero: u32,  // always 0: the runtime zero of opaque_f32 (common/ggml-rounding.wgsl)
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

// ---------------------------------------------------------------------------------------------------
// Rounding a float32 to a narrower float (casts.ts, float-bits.ts f32ToF16Bits, float8.ts encodeMini), on
// 4 lanes without branches: both cases below are computed for every lane and the lane's own selected.
//
// Normal range of the target: drop the low bits of the magnitude to nearest, ties to even (the bf16 trick
// at another bit), and rebias the exponent; a carry into the exponent is right, up to the target's inf.
// Subnormal range: the value in units of the target's smallest subnormal q is what the float32 sum
// |x| + 2^23 q holds in its low bits, rounded to nearest even by the addition itself (one correctly
// rounded f32 add: at 2^23 q the float32 step is q). A float32 subnormal |x| rounds to 0 either way, so a
// device that flushes it to 0 gives the same code.

fn round_rebias4(magnitude: vec4<u32>, drop: u32, rebias: u32) -> vec4<u32> {
  let half_minus_one = vec4((1u << (drop - 1u)) - 1u);
  return ((magnitude + half_minus_one + ((magnitude >> vec4(drop)) & vec4(1u))) >> vec4(drop)) - vec4(rebias);
}

// round(|x| / q) for |x| below the target's normal range; `magic` = 2^23 q (an opaque constant, so no
// compiler folds the addition away).
fn subnormal_units4(magnitude: vec4<u32>, magic: f32) -> vec4<u32> {
  let m = opaque_f32(magic, params.zero);
  return bitcast<vec4<u32>>(bitcast<vec4<f32>>(magnitude) + vec4(m)) - vec4(bitcast<u32>(m));
}

// f16: normal from 2^-14 (13 bits dropped, bias 127 -> 15), subnormal step 2^-24 (magic 0.5); 65520 and
// up become inf (0x7c00).
fn f16_bits4(bits: vec4<u32>) -> vec4<u32> {
  let sign = (bits >> vec4(16u)) & vec4(0x8000u);
  let magnitude = bits & vec4(0x7fffffffu);
  let normal = min(round_rebias4(magnitude, 13u, 112u << 10u), vec4(0x7c00u));
  let subnormal = subnormal_units4(magnitude, 0.5);
  return sign | select(normal, subnormal, magnitude < vec4(0x38800000u));
}

// bf16: the top half of a float32, rounded to nearest even (float-bits.ts f32ToBf16Bits, finite input).
fn bf16_bits4(bits: vec4<u32>) -> vec4<u32> {
  return ((bits + vec4(0x7fffu) + ((bits >> vec4(16u)) & vec4(1u))) >> vec4(16u)) & vec4(0xffffu);
}

// ---------------------------------------------------------------------------------------------------
// fp8 (float8.ts encodeMini / decodeMini): 1 sign, `exp_bits` exponent, `man_bits` mantissa bits.
// E5M2 (has_inf) is IEEE-like; E4M3 is e4m3fn: no inf, only x.1111.111 is NaN.

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

// e4m3fn, saturating (casts.ts f32ToE4m3Sat): |x| > 448 becomes +-448; normal from 2^-6 (20 bits dropped,
// bias 127 -> 7), subnormal step 2^-9 (magic 2^14).
fn e4m3_4(bits: vec4<u32>) -> vec4<u32> {
  let sign = (bits >> vec4(24u)) & vec4(0x80u);
  let magnitude = min(bits & vec4(0x7fffffffu), vec4(E4M3_MAX_BITS));
  let normal = round_rebias4(magnitude, 20u, 120u << 3u);
  let subnormal = subnormal_units4(magnitude, 16384.0);
  return sign | select(normal, subnormal, magnitude < vec4(0x3c800000u));
}

// e5m2 (torch's cast): normal from 2^-14 (21 bits dropped, bias 127 -> 15), subnormal step 2^-16 (magic
// 2^7); anything rounding past the largest finite value (57344) becomes inf (0x7c).
fn e5m2_4(bits: vec4<u32>) -> vec4<u32> {
  let sign = (bits >> vec4(24u)) & vec4(0x80u);
  let magnitude = bits & vec4(0x7fffffffu);
  let normal = min(round_rebias4(magnitude, 21u, 112u << 2u), vec4(0x7cu));
  let subnormal = subnormal_units4(magnitude, 128.0);
  return sign | select(normal, subnormal, magnitude < vec4(0x38800000u));
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
