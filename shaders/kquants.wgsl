// llama.cpp's K-quants q2_K, q3_K, q4_K, q5_K, q6_K: encoders (reference and importance-weighted) and
// decoders that produce exactly the bytes and values of the CPU reference, src/quant/ggml/q{2..6}_K.ts
// (which is bit for bit ggml's quantize_row_*_ref / quantize_row_*_impl / dequantize_row_*).
// Needs common/ggml-rounding.wgsl, common/f16.wgsl, common/bytes.wgsl, common/grid.wgsl and
// kquant-search.wgsl before it (src/gpu/kquants.ts concatenates them).
//
// Every format packs rows in super-blocks of 256 weights (QK_K), each split into sub-blocks with their own
// scale (and min), themselves quantized against one fp16 super-block scale. Block layouts (little-endian;
// the byte functions q*_K_byte below are the packing code):
//   q2_K  84 bytes: scales u8[16] (scale | min << 4) @0, qs u8[64] (2 bits) @16, d f16 @80, dmin f16 @82
//   q3_K 110 bytes: hmask u8[32] (3rd bit) @0, qs u8[64] (low 2 bits) @32, scales 16 x 6 bits @96, d f16 @108
//   q4_K 144 bytes: d f16 @0, dmin f16 @2, scales 8 x (6-bit scale, 6-bit min) @4, qs u8[128] (nibbles) @16
//   q5_K 176 bytes: d f16 @0, dmin f16 @2, scales @4 as q4_K, qh u8[32] (5th bit) @16, qs u8[128] @48
//   q6_K 210 bytes: ql u8[128] (low nibbles) @0, qh u8[64] (high 2 bits) @128, scales i8[16] @192, d f16 @208
//
// Encoders: a workgroup encodes GROUP_BLOCKS = 2 super-blocks with one invocation per sub-block (16
// sub-blocks of 16 weights for q2_K, q3_K, q6_K; 8 of 32 for q4_K, q5_K). The steps, between barriers:
//   1. the group's 512 weights are staged in workgroup memory;
//   2. every invocation runs its sub-block's scale search (the costly part) in parallel;
//   3. one invocation per super-block quantizes the sub-block scales against the fp16 super-block scale;
//   4. every invocation requantizes its sub-block against the stored, rounded scales;
//   5. the invocations write the group's bytes, whole u32 words: two blocks of 110 or 210 bytes end on a
//      word boundary, so no word is shared between workgroups.
// Decoders: one invocation per 16 consecutive weights.

// Bindings, per entry point (each uses 0..n-1 of them; the same numbering as ggml-legacy.wgsl):
//   encode_<fmt>_ref       0 params | 1 weights | 2 encoded | 3 status
//   encode_<fmt>_imatrix   0 params | 1 weights | 2 encoded | 3 status | 4 importance
//   decode_<fmt>           0 params | 1 encoded_in | 2 values

struct Params {
  blocks: u32, // super-blocks in this chunk: rows * blocks_per_row
  blocks_per_row: u32, // cols / 256: block b starts at column (b % blocks_per_row) * 256
  zero: u32, // always 0: see no_fold
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32, row-major.
@group(0) @binding(1) var<storage, read> weights: array<f32>;
// Encoders: the packed blocks, exactly as GGUF stores them (the last word zero-padded).
@group(0) @binding(2) var<storage, read_write> encoded: array<u32>;
// Encoders: word 0 is set to 1 when a weight is NaN or +-inf (the caller reports where, as the CPU does);
// bit b % 32 of word 1 + b / 32 marks block b for the CPU reference (see "Subnormal safety" in
// kquant-search.wgsl; the caller re-encodes those blocks).
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
// Importance-weighted encoders: the importance matrix, one weight per column.
@group(0) @binding(4) var<storage, read> importance: array<f32>;
// Decoders: the packed blocks.
@group(0) @binding(1) var<storage, read> encoded_in: array<u32>;
// Decoders: the dequantized weights, rows x cols float32.
@group(0) @binding(2) var<storage, read_write> values: array<f32>;

// The float constant c, hidden from the compiler. Some WebGPU stacks fold arithmetic that has constant
// operands as if it were exact (SwiftShader's, through spirv-opt: x / 63 -> x * (1/63),
// 1 / (15 / x) -> x / 15, (y + c1) + c2 -> y + (c1 + c2)), and each of those changes the rounding that
// ggml's bytes depend on. A value read from a uniform is not known when the shader is compiled, so every
// constant that takes part in float arithmetic here and in kquant-search.wgsl goes through no_fold.
fn no_fold(c: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(c) | params.zero);
}

const QK_K = 256u;
const GROUP_BLOCKS = 2u;
const SUBS_MAX = 16u; // sub-blocks per super-block, at most

// Workgroup state of the GROUP_BLOCKS super-blocks; sub-block j of block b is slot SUBS_MAX*b + j.
var<workgroup> group_x: array<f32, GROUP_BLOCKS * QK_K>; // the weights
var<workgroup> group_levels: array<u32, GROUP_BLOCKS * QK_K>; // the final levels, as packed (unsigned)
var<workgroup> sub_scale: array<f32, GROUP_BLOCKS * SUBS_MAX>; // each sub-block's fitted scale
var<workgroup> sub_min: array<f32, GROUP_BLOCKS * SUBS_MAX>; // ... and its -min (q2_K, q4_K, q5_K)
var<workgroup> sub_weight: array<f32, GROUP_BLOCKS * SUBS_MAX>; // ... and its sum of weights (imatrix)
var<workgroup> scale_bytes: array<u32, GROUP_BLOCKS * SUBS_MAX>; // each block's packed scale bytes, one a word
var<workgroup> super_d: array<u32, GROUP_BLOCKS>; // fp16 bits of d
var<workgroup> super_dmin: array<u32, GROUP_BLOCKS>; // fp16 bits of dmin
var<workgroup> zero_block: array<bool, GROUP_BLOCKS>; // q6_K: the block is stored as all zero bytes

// Where an encoder invocation works.
struct Invocation {
  t: u32, // local invocation index
  group: u32, // linear workgroup index
  b: u32, // block within the group
  block: u32, // block within the dispatch
  sub: u32, // sub-block within the block
  slot: u32, // SUBS_MAX * b + sub
  in_range: bool, // block < params.blocks (the last group may be half empty)
}

fn invocation(t: u32, workgroup_id: vec3<u32>, num_workgroups: vec3<u32>, subs: u32) -> Invocation {
  let group = linear_workgroup(workgroup_id, num_workgroups);
  let b = t / subs;
  let sub = t % subs;
  let block = group * GROUP_BLOCKS + b;
  return Invocation(t, group, b, block, sub, SUBS_MAX * b + sub, block < params.blocks);
}

// Marks block `block` of the chunk for the CPU reference.
fn send_to_cpu(block: u32) {
  atomicOr(&status[1u + block / 32u], 1u << (block % 32u));
}

// Step 1: every invocation copies its share of the group's weights (consecutive addresses together),
// raising the non-finite flag if one is NaN or +-inf, and sending a block with a subnormal weight to the CPU.
fn stage_weights(inv: Invocation, threads: u32) {
  let first = inv.group * GROUP_BLOCKS * QK_K;
  let end = params.blocks * QK_K;
  var bad = false;
  for (var k = inv.t; k < GROUP_BLOCKS * QK_K; k += threads) {
    if (first + k < end) {
      let v = weights[first + k];
      group_x[k] = v;
      bad = bad || !is_finite_f32(v);
      if (is_subnormal(v)) {
        send_to_cpu(inv.group * GROUP_BLOCKS + k / QK_K);
      }
    }
  }
  if (bad) {
    atomicStore(&status[0], 1u);
  }
  workgroupBarrier();
}

// The invocation's sub-block of n weights.
fn sub_weights(inv: Invocation, n: u32) -> SubF32 {
  var x: SubF32;
  let first = inv.b * QK_K + inv.sub * n;
  for (var i = 0u; i < n; i++) {
    x[i] = group_x[first + i];
  }
  return x;
}

// Sum of x^2 over block b, in order (the imatrix encoders' sigma2).
fn block_sum_x2(b: u32) -> f32 {
  var sum = 0.0f;
  for (var i = 0u; i < QK_K; i++) {
    let xi = group_x[b * QK_K + i];
    sum += xi * xi;
  }
  return sum;
}

// The imatrix encoders' weights qw[i] * sqrt(sigma2 + x[i]^2), and their sum into sub_weight. A weight
// that is 0 or tiny where ggml's is not (a subnormal qw, or a product or sqrt argument that a flushing
// device zeroes) sends the block to the CPU: the flush checks assume zero weights are ggml's zeros.
// (Reads `importance`: call it from *_imatrix entry points only, so ref pipelines do not bind it.)
fn importance_weights(inv: Invocation, x: ptr<function, SubF32>, n: u32, sigma2: f32) -> SubF32 {
  var w: SubF32;
  let column = (inv.block % params.blocks_per_row) * QK_K + inv.sub * n;
  var sum = 0.0f;
  var tiny = false;
  for (var i = 0u; i < n; i++) {
    let qw = importance[column + i];
    w[i] = qw * sqrt(sigma2 + x[i] * x[i]);
    sum += w[i];
    tiny = tiny || is_subnormal(qw) || (qw != 0.0f && w[i] < FLUSH_MARGIN);
  }
  if (inv.in_range) {
    sub_weight[inv.slot] = sum;
    if (tiny) {
      send_to_cpu(inv.block);
    }
  }
  return w;
}

// The final levels of the invocation's sub-block, for the packing step.
fn store_levels(inv: Invocation, L: ptr<function, SubI32>, n: u32) {
  let first = inv.b * QK_K + inv.sub * n;
  for (var i = 0u; i < n; i++) {
    group_levels[first + i] = u32(L[i]);
  }
}

fn level(b: u32, e: u32) -> u32 {
  return group_levels[b * QK_K + e];
}

// The first 16 scale bytes of block b, as the scale unpacking functions take them.
fn group_scale_bytes(b: u32) -> array<u32, SUBS_MAX> {
  var s: array<u32, SUBS_MAX>;
  for (var k = 0u; k < SUBS_MAX; k++) {
    s[k] = scale_bytes[SUBS_MAX * b + k];
  }
  return s;
}

const Q2_K = 2u;
const Q3_K = 3u;
const Q4_K = 4u;
const Q5_K = 5u;
const Q6_K = 6u;

// Byte k of block b of the group in format `format` (a constant at every call site).
fn block_byte(format: u32, b: u32, k: u32) -> u32 {
  switch (format) {
    case Q2_K: { return q2_K_byte(b, k); }
    case Q3_K: { return q3_K_byte(b, k); }
    case Q4_K: { return q4_K_byte(b, k); }
    case Q5_K: { return q5_K_byte(b, k); }
    default: { return q6_K_byte(b, k); }
  }
}

// Step 5: the group's blocks, a word per invocation at a time. The group starts on a word boundary
// (GROUP_BLOCKS * block_bytes is a multiple of 4); a half-empty last group stops after its last block
// (the buffer is padded to whole words, and the padding is zero).
fn store_group(format: u32, block_bytes: u32, inv: Invocation, threads: u32) {
  let first_block = inv.group * GROUP_BLOCKS;
  if (first_block >= params.blocks) {
    return;
  }
  let bytes = min(GROUP_BLOCKS, params.blocks - first_block) * block_bytes;
  let first_word = first_block * block_bytes / 4u;
  for (var w = inv.t; w * 4u < bytes; w += threads) {
    var word = 0u;
    for (var i = 0u; i < 4u; i++) {
      let k = 4u * w + i;
      if (k < bytes) {
        word |= byte_at(block_byte(format, k / block_bytes, k % block_bytes), i);
      }
    }
    encoded[first_word + w] = word;
  }
}

// ---------------------------------------------------------------------------------------------------
// q6_K: 16 sub-blocks of 16, y = (d * scales[j]) * (q - 32), q in 0..63, scales int8.

// ql byte k (< 128): low nibbles of weights e = 128h + r (r = k % 64) and e + 64; qh byte 128 + 32h + l:
// the high 2 bits of weights 128h + l + 32s at bit 2s.
fn q6_K_byte(b: u32, k: u32) -> u32 {
  if (k < 128u) {
    let e = 128u * (k / 64u) + k % 64u;
    return (level(b, e) & 0xfu) | ((level(b, e + 64u) & 0xfu) << 4u);
  }
  if (k < 192u) {
    let e = 128u * ((k - 128u) / 32u) + (k - 128u) % 32u;
    return (level(b, e) >> 4u) | ((level(b, e + 32u) >> 4u) << 2u) | ((level(b, e + 64u) >> 4u) << 4u) |
      ((level(b, e + 96u) >> 4u) << 6u);
  }
  if (k < 208u) {
    return scale_bytes[SUBS_MAX * b + k - 192u];
  }
  return byte_of(super_d[b], k - 208u);
}

// Steps 2-5 once the weights of the search are known (x^2 for ref, the imatrix for imatrix).
fn q6_K_encode(inv: Invocation, x: ptr<function, SubF32>, w: ptr<function, SubF32>) {
  var L: SubI32;
  if (inv.in_range) {
    sub_scale[inv.slot] = make_qx_quants(16u, 32, x, w, &L);
    if (!qx_flush_safe(qx_terms(16u, x, w))) {
      send_to_cpu(inv.block);
    }
  }
  workgroupBarrier();
  if (inv.in_range && inv.sub == 0u) {
    q6_K_quantize_scales(inv.b);
  }
  workgroupBarrier();
  if (inv.in_range) {
    let b = inv.b;
    if (zero_block[b]) {
      for (var i = 0u; i < 16u; i++) { L[i] = 0; }
    } else {
      let d = f16_bits_to_f32(super_d[b]) * f32(sign_extend_8(scale_bytes[inv.slot]));
      if (d != 0.0f) { // else the search's levels stay, as in ggml
        for (var i = 0u; i < 16u; i++) {
          L[i] = clamp(nearest_int(x[i] / d), -32, 31) + 32;
        }
      }
    }
    store_levels(inv, &L, 16u);
  }
  workgroupBarrier();
  store_group(Q6_K, 210u, inv, GROUP_BLOCKS * 16u);
}

// The 16 scales to int8 against the one with the largest |scale|: d = max / -128.
fn q6_K_quantize_scales(b: u32) {
  var max_scale = 0.0f;
  var max_abs = 0.0f;
  for (var j = 0u; j < 16u; j++) {
    let s = sub_scale[SUBS_MAX * b + j];
    if (abs(s) > max_abs) {
      max_abs = abs(s);
      max_scale = s;
    }
  }
  zero_block[b] = max_abs < GROUP_MAX_EPS;
  if (zero_block[b]) {
    super_d[b] = 0u;
    for (var j = 0u; j < 16u; j++) { scale_bytes[SUBS_MAX * b + j] = 0u; }
    return;
  }
  let iscale = no_fold(-128.0f) / max_scale;
  super_d[b] = f32_to_f16_bits(no_fold(1.0f) / iscale);
  for (var j = 0u; j < 16u; j++) {
    let l = min(nearest_int(iscale * sub_scale[SUBS_MAX * b + j]), 127);
    scale_bytes[SUBS_MAX * b + j] = u32(l) & 0xffu; // int8_t store
  }
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q6_K_ref(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  var w: SubF32;
  for (var i = 0u; i < 16u; i++) { w[i] = x[i] * x[i]; }
  q6_K_encode(inv, &x, &w);
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q6_K_imatrix(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  var w: SubF32;
  let column = (inv.block % params.blocks_per_row) * QK_K + inv.sub * 16u;
  for (var i = 0u; i < 16u; i++) {
    w[i] = importance[column + i];
    if (inv.in_range && is_subnormal(w[i])) {
      send_to_cpu(inv.block);
    }
  }
  q6_K_encode(inv, &x, &w);
}

// ---------------------------------------------------------------------------------------------------
// q4_K and q5_K: 8 sub-blocks of 32, y = (d * sc_j) * q - dmin * m_j with 6-bit sc_j, m_j.

// get_scale_min_k4: sub-block j's 6-bit scale (x) and min (y) from the 12 scale bytes s.
fn scale_min_k4(j: u32, s: array<u32, SUBS_MAX>) -> vec2<u32> {
  if (j < 4u) {
    return vec2<u32>(s[j] & 63u, s[j + 4u] & 63u);
  }
  return vec2<u32>((s[j + 4u] & 0xfu) | ((s[j - 4u] >> 6u) << 4u), (s[j + 4u] >> 4u) | ((s[j] >> 6u) << 4u));
}

// The inverse: j < 4 keeps 6 bits in bytes j and j + 4; j >= 4 puts the low nibbles in byte j + 4 and the
// top 2 bits in the spare top bits of bytes j - 4 and j. Call with j = 0..7 in order (u8 stores wrap).
fn put_scale_min_k4(b: u32, j: u32, ls: u32, lm: u32) {
  let s = SUBS_MAX * b;
  if (j < 4u) {
    scale_bytes[s + j] = ls & 0xffu;
    scale_bytes[s + j + 4u] = lm & 0xffu;
  } else {
    scale_bytes[s + j + 4u] = (ls & 0xfu) | ((lm & 0xfu) << 4u);
    scale_bytes[s + j - 4u] = (scale_bytes[s + j - 4u] | ((ls >> 4u) << 6u)) & 0xffu;
    scale_bytes[s + j] = (scale_bytes[s + j] | ((lm >> 4u) << 6u)) & 0xffu;
  }
}

fn k4_header_byte(b: u32, k: u32) -> u32 {
  if (k < 2u) {
    return byte_of(super_d[b], k);
  }
  if (k < 4u) {
    return byte_of(super_dmin[b], k - 2u);
  }
  return scale_bytes[SUBS_MAX * b + k - 4u];
}

// qs byte 32c + l (c < 4, l < 32): weight 64c + l in the low nibble, 64c + 32 + l in the high one.
fn q4_K_byte(b: u32, k: u32) -> u32 {
  if (k < 16u) {
    return k4_header_byte(b, k);
  }
  let e = 64u * ((k - 16u) / 32u) + (k - 16u) % 32u;
  return level(b, e) | (level(b, e + 32u) << 4u);
}

// qh byte l: bit 4 of weight 32j + l at bit j; qs as q4_K's, from @48.
fn q5_K_byte(b: u32, k: u32) -> u32 {
  if (k < 16u) {
    return k4_header_byte(b, k);
  }
  if (k < 48u) {
    var h = 0u;
    for (var j = 0u; j < 8u; j++) {
      h |= (level(b, 32u * j + k - 16u) >> 4u) << j;
    }
    return h;
  }
  let e = 64u * ((k - 48u) / 32u) + (k - 48u) % 32u;
  return (level(b, e) & 0xfu) | ((level(b, e + 32u) & 0xfu) << 4u);
}

// quantize_row_q{4,5}_K_ref's search for one sub-block: weights av_x + |x|, make_qkx2_quants.
fn k4_search_ref(inv: Invocation, x: ptr<function, SubF32>, L: ptr<function, SubI32>, nmax: i32, rmin: f32, rdelta: f32,
                 nstep: i32) {
  var sum_x2 = 0.0f;
  for (var i = 0u; i < 32u; i++) { sum_x2 += x[i] * x[i]; }
  let av_x = sqrt(sum_x2 / no_fold(32.0f));
  var w: SubF32;
  for (var i = 0u; i < 32u; i++) { w[i] = av_x + abs(x[i]); }
  let fit = make_qkx_quants(32u, nmax, x, &w, L, rmin, rdelta, nstep, false, false);
  if (inv.in_range) {
    sub_scale[inv.slot] = fit.scale;
    sub_min[inv.slot] = fit.neg_min;
    if (!qkx_flush_safe(32u, x, &w)) {
      send_to_cpu(inv.block);
    }
  }
}

// quantize_row_q{4,5}_K_impl's search for one sub-block: weights qw * sqrt(sigma2 + x^2) with
// sigma2 = 2*mean(x^2) over the super-block, make_qkx3_quants.
fn k4_search_imatrix(inv: Invocation, x: ptr<function, SubF32>, L: ptr<function, SubI32>, nmax: i32) {
  let sigma2 = no_fold(2.0f) * block_sum_x2(inv.b) / no_fold(256.0f);
  var w = importance_weights(inv, x, 32u, sigma2);
  let fit = make_qkx_quants(32u, nmax, x, &w, L, -0.9f, 0.05f, 36, false, true);
  if (inv.in_range) {
    sub_scale[inv.slot] = fit.scale;
    sub_min[inv.slot] = fit.neg_min;
    if (!qkx_flush_safe(32u, x, &w)) {
      send_to_cpu(inv.block);
    }
  }
}

// The reference encoders' scale step: the 8 scales and mins to 6 bits against the largest of each,
// d = max_scale / 63, dmin = max_min / 63.
fn k4_quantize_scales_ref(b: u32) {
  let s = SUBS_MAX * b;
  var max_scale = 0.0f;
  var max_min = 0.0f;
  for (var j = 0u; j < 8u; j++) {
    if (sub_scale[s + j] > max_scale) { max_scale = sub_scale[s + j]; }
    if (sub_min[s + j] > max_min) { max_min = sub_min[s + j]; }
  }
  let inv_scale = select(0.0f, no_fold(63.0f) / max_scale, max_scale > 0.0f);
  let inv_min = select(0.0f, no_fold(63.0f) / max_min, max_min > 0.0f);
  for (var j = 0u; j < 8u; j++) {
    let ls = u32(nearest_int(inv_scale * sub_scale[s + j])) & 0xffu; // uint8_t ls = nearest_int(...)
    let lm = u32(nearest_int(inv_min * sub_min[s + j])) & 0xffu;
    put_scale_min_k4(b, j, min(ls, 63u), min(lm, 63u));
  }
  super_d[b] = f32_to_f16_bits(max_scale / no_fold(63.0f));
  super_dmin[b] = f32_to_f16_bits(max_min / no_fold(63.0f));
}

// The imatrix encoders' scale step: make_qp_quants on the scales and on the mins, weighted by each
// sub-block's sum of weights (q5_K clamps the levels to 63, q4_K does not).
fn k4_quantize_scales_imatrix(b: u32, block: u32, clamp_63: bool) {
  var scales: SubF32;
  var mins: SubF32;
  var sw: SubF32;
  for (var j = 0u; j < 8u; j++) {
    scales[j] = sub_scale[SUBS_MAX * b + j];
    mins[j] = sub_min[SUBS_MAX * b + j];
    sw[j] = sub_weight[SUBS_MAX * b + j];
  }
  var Ls: SubI32;
  var Lm: SubI32;
  let d = make_qp_quants(8u, 63, &scales, &Ls, &sw);
  let dmin = make_qp_quants(8u, 63, &mins, &Lm, &sw);
  if (!qp_flush_safe(qx_terms(8u, &scales, &sw)) || !qp_flush_safe(qx_terms(8u, &mins, &sw))) {
    send_to_cpu(block);
  }
  for (var j = 0u; j < 8u; j++) {
    var ls = u32(Ls[j]);
    var lm = u32(Lm[j]);
    if (clamp_63) {
      ls = min(ls, 63u);
      lm = min(lm, 63u);
    }
    put_scale_min_k4(b, j, ls, lm);
  }
  super_d[b] = f32_to_f16_bits(d);
  super_dmin[b] = f32_to_f16_bits(dmin);
}

// Steps 3-5 of q4_K and q5_K.
fn k4_finish(inv: Invocation, x: ptr<function, SubF32>, L: ptr<function, SubI32>, nmax: i32, imatrix: bool, format: u32,
             block_bytes: u32) {
  workgroupBarrier();
  if (inv.in_range && inv.sub == 0u) {
    if (imatrix) {
      k4_quantize_scales_imatrix(inv.b, inv.block, format == Q5_K);
    } else {
      k4_quantize_scales_ref(inv.b);
    }
  }
  workgroupBarrier();
  if (inv.in_range) {
    let sm = scale_min_k4(inv.sub, group_scale_bytes(inv.b));
    let dl = f16_bits_to_f32(super_d[inv.b]) * f32(sm.x);
    if (dl != 0.0f) { // else the search's levels stay, as in ggml
      let ml = f16_bits_to_f32(super_dmin[inv.b]) * f32(sm.y);
      for (var i = 0u; i < 32u; i++) {
        L[i] = clamp(nearest_int((x[i] + ml) / dl), 0, nmax);
      }
    }
    store_levels(inv, L, 32u);
  }
  workgroupBarrier();
  store_group(format, block_bytes, inv, GROUP_BLOCKS * 8u);
}

@compute @workgroup_size(GROUP_BLOCKS * 8u)
fn encode_q4_K_ref(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 8u);
  stage_weights(inv, GROUP_BLOCKS * 8u);
  var x = sub_weights(inv, 32u);
  var L: SubI32;
  k4_search_ref(inv, &x, &L, 15, -1.0f, 0.1f, 20);
  k4_finish(inv, &x, &L, 15, false, Q4_K, 144u);
}

@compute @workgroup_size(GROUP_BLOCKS * 8u)
fn encode_q4_K_imatrix(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 8u);
  stage_weights(inv, GROUP_BLOCKS * 8u);
  var x = sub_weights(inv, 32u);
  var L: SubI32;
  k4_search_imatrix(inv, &x, &L, 15);
  k4_finish(inv, &x, &L, 15, true, Q4_K, 144u);
}

@compute @workgroup_size(GROUP_BLOCKS * 8u)
fn encode_q5_K_ref(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 8u);
  stage_weights(inv, GROUP_BLOCKS * 8u);
  var x = sub_weights(inv, 32u);
  var L: SubI32;
  k4_search_ref(inv, &x, &L, 31, -0.5f, 0.1f, 15);
  k4_finish(inv, &x, &L, 31, false, Q5_K, 176u);
}

@compute @workgroup_size(GROUP_BLOCKS * 8u)
fn encode_q5_K_imatrix(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 8u);
  stage_weights(inv, GROUP_BLOCKS * 8u);
  var x = sub_weights(inv, 32u);
  var L: SubI32;
  k4_search_imatrix(inv, &x, &L, 31);
  k4_finish(inv, &x, &L, 31, true, Q5_K, 176u);
}

// ---------------------------------------------------------------------------------------------------
// q2_K: 16 sub-blocks of 16, y = (d * sc_j) * q - dmin * m_j with q in 0..3 and 4-bit sc_j, m_j.

// qs byte 16 + 32h + l: the 2-bit levels of weights 128h + 32s + l at bit 2s.
fn q2_K_byte(b: u32, k: u32) -> u32 {
  if (k < 16u) {
    return scale_bytes[SUBS_MAX * b + k];
  }
  if (k < 80u) {
    let e = 128u * ((k - 16u) / 32u) + (k - 16u) % 32u;
    return level(b, e) | (level(b, e + 32u) << 2u) | (level(b, e + 64u) << 4u) | (level(b, e + 96u) << 6u);
  }
  if (k < 82u) {
    return byte_of(super_d[b], k - 80u);
  }
  return byte_of(super_dmin[b], k - 82u);
}

// The reference scale step: scales and mins to 4 bits against the largest of each (u8 stores wrap).
fn q2_K_quantize_scales_ref(b: u32) {
  let s = SUBS_MAX * b;
  var max_scale = 0.0f;
  var max_min = 0.0f;
  for (var j = 0u; j < 16u; j++) {
    if (sub_scale[s + j] > max_scale) { max_scale = sub_scale[s + j]; }
    if (sub_min[s + j] > max_min) { max_min = sub_min[s + j]; }
  }
  var codes: array<i32, 16>;
  super_d[b] = 0u;
  if (max_scale > 0.0f) {
    let iscale = no_fold(15.0f) / max_scale;
    for (var j = 0u; j < 16u; j++) { codes[j] = nearest_int(iscale * sub_scale[s + j]); }
    super_d[b] = f32_to_f16_bits(max_scale / no_fold(15.0f));
  }
  super_dmin[b] = 0u;
  if (max_min > 0.0f) {
    let iscale = no_fold(15.0f) / max_min;
    for (var j = 0u; j < 16u; j++) { codes[j] |= nearest_int(iscale * sub_min[s + j]) << 4u; }
    super_dmin[b] = f32_to_f16_bits(max_min / no_fold(15.0f));
  }
  for (var j = 0u; j < 16u; j++) { scale_bytes[s + j] = u32(codes[j]) & 0xffu; }
}

// The imatrix scale step: make_qp_quants on the 16 scales and on the 16 mins.
fn q2_K_quantize_scales_imatrix(b: u32, block: u32) {
  var scales: SubF32;
  var mins: SubF32;
  var sw: SubF32;
  for (var j = 0u; j < 16u; j++) {
    scales[j] = sub_scale[SUBS_MAX * b + j];
    mins[j] = sub_min[SUBS_MAX * b + j];
    sw[j] = sub_weight[SUBS_MAX * b + j];
  }
  var Ls: SubI32;
  var Lm: SubI32;
  super_d[b] = f32_to_f16_bits(make_qp_quants(16u, 15, &scales, &Ls, &sw));
  super_dmin[b] = f32_to_f16_bits(make_qp_quants(16u, 15, &mins, &Lm, &sw));
  if (!qp_flush_safe(qx_terms(16u, &scales, &sw)) || !qp_flush_safe(qx_terms(16u, &mins, &sw))) {
    send_to_cpu(block);
  }
  for (var j = 0u; j < 16u; j++) {
    scale_bytes[SUBS_MAX * b + j] = (u32(Ls[j]) | (u32(Lm[j]) << 4u)) & 0xffu;
  }
}

// Steps 3-5 of q2_K once the sub-block fits are in sub_scale and sub_min.
fn q2_K_finish(inv: Invocation, x: ptr<function, SubF32>, L: ptr<function, SubI32>, imatrix: bool) {
  workgroupBarrier();
  if (inv.in_range && inv.sub == 0u) {
    if (imatrix) {
      q2_K_quantize_scales_imatrix(inv.b, inv.block);
    } else {
      q2_K_quantize_scales_ref(inv.b);
    }
  }
  workgroupBarrier();
  if (inv.in_range) {
    let s = scale_bytes[inv.slot];
    let dl = f16_bits_to_f32(super_d[inv.b]) * f32(s & 0xfu);
    if (dl != 0.0f) { // else the search's levels stay, as in ggml
      let ml = f16_bits_to_f32(super_dmin[inv.b]) * f32(s >> 4u);
      for (var i = 0u; i < 16u; i++) {
        L[i] = clamp(nearest_int((x[i] + ml) / dl), 0, 3);
      }
    }
    store_levels(inv, L, 16u);
  }
  workgroupBarrier();
  store_group(Q2_K, 84u, inv, GROUP_BLOCKS * 16u);
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q2_K_ref(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  var w: SubF32;
  for (var i = 0u; i < 16u; i++) { w[i] = abs(x[i]); }
  var L: SubI32;
  let fit = make_qkx_quants(16u, 3, &x, &w, &L, -0.5f, 0.1f, 15, true, false);
  if (inv.in_range) {
    sub_scale[inv.slot] = fit.scale;
    sub_min[inv.slot] = fit.neg_min;
    if (!qkx_flush_safe(16u, &x, &w)) {
      send_to_cpu(inv.block);
    }
  }
  q2_K_finish(inv, &x, &L, false);
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q2_K_imatrix(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  let sigma2 = block_sum_x2(inv.b) / no_fold(256.0f); // mean(x^2), not 2*mean as q3_K..q5_K
  var w = importance_weights(inv, &x, 16u, sigma2);
  var L: SubI32;
  let fit = make_qkx_quants(16u, 3, &x, &w, &L, -0.9f, 0.05f, 36, false, true);
  if (inv.in_range) {
    sub_scale[inv.slot] = fit.scale;
    sub_min[inv.slot] = fit.neg_min;
    if (!qkx_flush_safe(16u, &x, &w)) {
      send_to_cpu(inv.block);
    }
  }
  q2_K_finish(inv, &x, &L, true);
}

// ---------------------------------------------------------------------------------------------------
// q3_K: 16 sub-blocks of 16, y = (d * (sc_j - 32)) * q with q in -4..3 and 6-bit sc_j.

// Sub-block j's signed scale sc_j - 32: low 4 bits in byte j (j < 8) or the high nibble of byte j - 8,
// high 2 bits at bit 2*(j/4) of byte 8 + j%4.
fn q3_K_scale(j: u32, s: array<u32, SUBS_MAX>) -> i32 {
  let low = select(s[j - 8u] >> 4u, s[j] & 0xfu, j < 8u);
  return i32(low | (((s[8u + j % 4u] >> (2u * (j / 4u))) & 3u) << 4u)) - 32;
}

// The inverse, into scale bytes that start zeroed.
fn q3_K_put_scale(b: u32, j: u32, l: u32) {
  let s = SUBS_MAX * b;
  if (j < 8u) {
    scale_bytes[s + j] |= l & 0xfu;
  } else {
    scale_bytes[s + j - 8u] |= (l & 0xfu) << 4u;
  }
  scale_bytes[s + 8u + j % 4u] |= (l >> 4u) << (2u * (j / 4u));
}

// hmask byte m: bit 2 of the level of weight 32j + m at bit j; qs byte 32 + 32h + l: the low 2 bits of
// weights 128h + 32s + l at bit 2s.
fn q3_K_byte(b: u32, k: u32) -> u32 {
  if (k < 32u) {
    var h = 0u;
    for (var j = 0u; j < 8u; j++) {
      h |= (level(b, 32u * j + k) >> 2u) << j;
    }
    return h;
  }
  if (k < 96u) {
    let e = 128u * ((k - 32u) / 32u) + (k - 32u) % 32u;
    return (level(b, e) & 3u) | ((level(b, e + 32u) & 3u) << 2u) | ((level(b, e + 64u) & 3u) << 4u) |
      ((level(b, e + 96u) & 3u) << 6u);
  }
  if (k < 108u) {
    return scale_bytes[SUBS_MAX * b + k - 96u];
  }
  return byte_of(super_d[b], k - 108u);
}

// The reference scale step: the 16 scales to 6 bits against the one with the largest |scale|.
fn q3_K_quantize_scales_ref(b: u32) {
  let s = SUBS_MAX * b;
  var max_scale = 0.0f;
  var amax = 0.0f;
  for (var j = 0u; j < 16u; j++) {
    scale_bytes[s + j] = 0u;
    if (abs(sub_scale[s + j]) > amax) {
      amax = abs(sub_scale[s + j]);
      max_scale = sub_scale[s + j];
    }
  }
  super_d[b] = 0u;
  if (max_scale != 0.0f) {
    let iscale = no_fold(-32.0f) / max_scale;
    for (var j = 0u; j < 16u; j++) {
      let l = sign_extend_8(u32(nearest_int(iscale * sub_scale[s + j]))); // int8_t l = nearest_int(...)
      q3_K_put_scale(b, j, u32(clamp(l, -32, 31) + 32));
    }
    super_d[b] = f32_to_f16_bits(no_fold(1.0f) / iscale);
  }
}

// The imatrix scale step: make_qx_quants(nmax 32) on the 16 scales, weighted by the sub-blocks' weight sums.
fn q3_K_quantize_scales_imatrix(b: u32, block: u32) {
  var scales: SubF32;
  var sw: SubF32;
  for (var j = 0u; j < 16u; j++) {
    scale_bytes[SUBS_MAX * b + j] = 0u;
    scales[j] = sub_scale[SUBS_MAX * b + j];
    sw[j] = sub_weight[SUBS_MAX * b + j];
  }
  var Ls: SubI32;
  let d = make_qx_quants(16u, 32, &scales, &sw, &Ls);
  if (!qx_flush_safe(qx_terms(16u, &scales, &sw))) {
    send_to_cpu(block);
  }
  for (var j = 0u; j < 16u; j++) {
    q3_K_put_scale(b, j, u32(Ls[j]));
  }
  super_d[b] = f32_to_f16_bits(d);
}

// Steps 3-5 of q3_K once the sub-block scales are in sub_scale and the search's levels (0..7) in L.
fn q3_K_finish(inv: Invocation, x: ptr<function, SubF32>, L: ptr<function, SubI32>, imatrix: bool) {
  workgroupBarrier();
  if (inv.in_range && inv.sub == 0u) {
    if (imatrix) {
      q3_K_quantize_scales_imatrix(inv.b, inv.block);
    } else {
      q3_K_quantize_scales_ref(inv.b);
    }
  }
  workgroupBarrier();
  if (inv.in_range) {
    let d = f16_bits_to_f32(super_d[inv.b]) * f32(q3_K_scale(inv.sub, group_scale_bytes(inv.b)));
    if (d != 0.0f) { // else the search's levels stay, as in ggml
      for (var i = 0u; i < 16u; i++) {
        L[i] = clamp(nearest_int(x[i] / d), -4, 3) + 4;
      }
    }
    store_levels(inv, L, 16u);
  }
  workgroupBarrier();
  store_group(Q3_K, 110u, inv, GROUP_BLOCKS * 16u);
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q3_K_ref(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  var L: SubI32;
  let scale = make_q3_quants(16u, 4, &x, &L);
  if (inv.in_range) {
    sub_scale[inv.slot] = scale;
    var w: SubF32; // make_q3_quants' weights
    for (var i = 0u; i < 16u; i++) { w[i] = x[i] * x[i]; }
    if (!q3_flush_safe(qx_terms(16u, &x, &w))) {
      send_to_cpu(inv.block);
    }
  }
  q3_K_finish(inv, &x, &L, false);
}

@compute @workgroup_size(GROUP_BLOCKS * 16u)
fn encode_q3_K_imatrix(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = invocation(t, wid, nwg, 16u);
  stage_weights(inv, GROUP_BLOCKS * 16u);
  var x = sub_weights(inv, 16u);
  let sigma2 = no_fold(2.0f) * block_sum_x2(inv.b) / no_fold(256.0f);
  var w = importance_weights(inv, &x, 16u, sigma2);
  var L: SubI32;
  let scale = make_qx_quants(16u, 4, &x, &w, &L);
  if (inv.in_range) {
    sub_scale[inv.slot] = scale;
    if (!qx_flush_safe(qx_terms(16u, &x, &w))) {
      send_to_cpu(inv.block);
    }
  }
  q3_K_finish(inv, &x, &L, true);
}

// ---------------------------------------------------------------------------------------------------
// Decoders: invocation i writes weights 16i..16i+15 of the dispatch (one 16-weight slice of a block).
// Every product of an fp16 scale and a small integer is exact in f32, so each value is rounded once, as
// in C, fused or not.

// Byte k of block `block` of the packed input.
fn packed_byte(block: u32, block_bytes: u32, k: u32) -> u32 {
  let offset = block * block_bytes + k;
  return byte_of(encoded_in[offset / 4u], offset % 4u);
}

fn packed_f16(block: u32, block_bytes: u32, k: u32) -> f32 {
  return f16_bits_to_f32(packed_byte(block, block_bytes, k) | (packed_byte(block, block_bytes, k + 1u) << 8u));
}

fn packed_scale_bytes(block: u32, block_bytes: u32, first: u32, count: u32) -> array<u32, SUBS_MAX> {
  var s: array<u32, SUBS_MAX>;
  for (var k = 0u; k < count; k++) {
    s[k] = packed_byte(block, block_bytes, first + k);
  }
  return s;
}

// The 16-weight slice this invocation decodes (grids wider than the device limit are split over y).
fn decode_slice(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn decode_q6_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = decode_slice(gid, nwg);
  if (slice >= params.blocks * 16u) {
    return;
  }
  let block = slice / 16u;
  let d = packed_f16(block, 210u, 208u) * f32(sign_extend_8(packed_byte(block, 210u, 192u + slice % 16u)));
  for (var i = 0u; i < 16u; i++) {
    let e = 16u * (slice % 16u) + i; // e = 128h + 32s + l
    let h = e / 128u;
    let s = (e % 128u) / 32u;
    let l = e % 32u;
    let low = (packed_byte(block, 210u, 64u * h + l + 32u * (s & 1u)) >> (4u * (s / 2u))) & 0xfu;
    let high = (packed_byte(block, 210u, 128u + 32u * h + l) >> (2u * s)) & 3u;
    values[block * QK_K + e] = d * f32(i32(low | (high << 4u)) - 32);
  }
}

@compute @workgroup_size(64)
fn decode_q2_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = decode_slice(gid, nwg);
  if (slice >= params.blocks * 16u) {
    return;
  }
  let block = slice / 16u;
  let j = slice % 16u;
  let s = packed_byte(block, 84u, j);
  let dl = packed_f16(block, 84u, 80u) * f32(s & 0xfu);
  let ml = packed_f16(block, 84u, 82u) * f32(s >> 4u);
  for (var i = 0u; i < 16u; i++) {
    let e = 16u * j + i;
    let q = (packed_byte(block, 84u, 16u + 32u * (e / 128u) + e % 32u) >> (2u * ((e % 128u) / 32u))) & 3u;
    values[block * QK_K + e] = dl * f32(q) - ml;
  }
}

@compute @workgroup_size(64)
fn decode_q3_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = decode_slice(gid, nwg);
  if (slice >= params.blocks * 16u) {
    return;
  }
  let block = slice / 16u;
  let j = slice % 16u;
  let dl = packed_f16(block, 110u, 108u) * f32(q3_K_scale(j, packed_scale_bytes(block, 110u, 96u, 12u)));
  for (var i = 0u; i < 16u; i++) {
    let e = 16u * j + i;
    let low = (packed_byte(block, 110u, 32u + 32u * (e / 128u) + e % 32u) >> (2u * ((e % 128u) / 32u))) & 3u;
    let high = (packed_byte(block, 110u, e % 32u) >> (e / 32u)) & 1u;
    values[block * QK_K + e] = dl * f32(i32(low) - select(4, 0, high != 0u));
  }
}

// q4_K and q5_K: weight e = 64c + 32t + l is in sub-block 2c + t; its low 4 bits are byte qs + 32c + l's
// nibble t; q5_K's 5th bit is qh byte l's bit 2c + t.
fn decode_k4(slice: u32, block_bytes: u32, qs: u32, five_bits: bool) {
  let block = slice / 16u;
  let j = (slice % 16u) / 2u;
  let sm = scale_min_k4(j, packed_scale_bytes(block, block_bytes, 4u, 12u));
  let dl = packed_f16(block, block_bytes, 0u) * f32(sm.x);
  let ml = packed_f16(block, block_bytes, 2u) * f32(sm.y);
  for (var i = 0u; i < 16u; i++) {
    let e = 16u * (slice % 16u) + i;
    let c = e / 64u;
    let t = (e / 32u) % 2u;
    let l = e % 32u;
    var q = (packed_byte(block, block_bytes, qs + 32u * c + l) >> (4u * t)) & 0xfu;
    if (five_bits) {
      q |= ((packed_byte(block, block_bytes, 16u + l) >> (2u * c + t)) & 1u) << 4u;
    }
    values[block * QK_K + e] = dl * f32(q) - ml;
  }
}

@compute @workgroup_size(64)
fn decode_q4_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = decode_slice(gid, nwg);
  if (slice < params.blocks * 16u) {
    decode_k4(slice, 144u, 16u, false);
  }
}

@compute @workgroup_size(64)
fn decode_q5_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = decode_slice(gid, nwg);
  if (slice < params.blocks * 16u) {
    decode_k4(slice, 176u, 48u, true);
  }
}
