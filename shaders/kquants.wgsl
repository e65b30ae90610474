// llama.cpp's K-quants q2_K, q3_K, q4_K, q5_K, q6_K: encoders (reference and importance-weighted) and
// decoders that produce exactly the bytes and values of the CPU reference, src/quant/ggml/q{2..6}_K.ts
// (which is bit for bit ggml's quantize_row_*_ref / quantize_row_*_impl / dequantize_row_*).
// Needs shaders/common/*.wgsl and kquant-search.wgsl before it (src/gpu/kquants.ts concatenates them).
//
// Every format packs rows in super-blocks of 256 weights (QK_K), each split into sub-blocks with their own
// scale (and min), themselves quantized against one fp16 super-block scale. Block layouts (little-endian;
// the encode_* functions below write them):
//   q2_K  84 bytes: scales u8[16] (scale | min << 4) @0, qs u8[64] (2 bits) @16, d f16 @80, dmin f16 @82
//   q3_K 110 bytes: hmask u8[32] (3rd bit) @0, qs u8[64] (low 2 bits) @32, scales 16 x 6 bits @96, d f16 @108
//   q4_K 144 bytes: d f16 @0, dmin f16 @2, scales 8 x (6-bit scale, 6-bit min) @4, qs u8[128] (nibbles) @16
//   q5_K 176 bytes: d f16 @0, dmin f16 @2, scales @4 as q4_K, qh u8[32] (5th bit) @16, qs u8[128] @48
//   q6_K 210 bytes: ql u8[128] (low nibbles) @0, qh u8[64] (high 2 bits) @128, scales i8[16] @192, d f16 @208
//
// Encoders: one invocation encodes one super-block (two consecutive ones for q3_K and q6_K, whose 110 and
// 210 bytes end mid-word: a pair ends on a word boundary, so no u32 of the output is shared between
// invocations). It runs as ggml does: the scale search of every sub-block, the super-block scale step,
// then each sub-block requantized against the stored scales, and packed. No workgroup memory, no
// barriers: on SwiftShader a barrier costs more than a sub-block's search, and with a super-block per
// invocation the GPU's parallelism is over the tensor's many blocks.
// Decoders: one invocation per 16 consecutive weights.
//
// Bindings, per entry point (each uses 0..n-1 of them; the same numbering as ggml-legacy.wgsl):
//   encode_<fmt>_ref, encode_<fmt>_imatrix   0 params | 1 weights | 2 encoded | 3 status | 4 importance
//   decode_<fmt>                             0 params | 1 encoded_in | 2 values

struct Params {
  blocks: u32, // super-blocks in this chunk: rows * blocks_per_row
  blocks_per_row: u32, // cols / 256: block b starts at column (b % blocks_per_row) * 256
  zero: u32, // always 0: see no_fold
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32, row-major, four at a time (rows are whole
// super-blocks, so the buffer is a whole number of vec4s; a vec4 load costs a GPU like SwiftShader a
// quarter of four scalar ones).
@group(0) @binding(1) var<storage, read> weights: array<vec4<f32>>;
// Encoders: the packed blocks, exactly as GGUF stores them (the last word zero-padded). Must start zeroed:
// the encoders OR their bytes in.
@group(0) @binding(2) var<storage, read_write> encoded: array<u32>;
// Encoders: word 0 is set to 1 when a weight is NaN or +-inf (the caller reports where, as the CPU does);
// bit b % 32 of word 1 + b / 32 marks block b for the CPU reference (see "Subnormal safety" in
// kquant-search.wgsl; the caller re-encodes those blocks).
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
// Encoders: the importance matrix, one weight per column (*_imatrix; the reference encoders ignore it,
// and the caller binds a placeholder vec4).
@group(0) @binding(4) var<storage, read> importance: array<vec4<f32>>;
// Decoders: the packed blocks.
@group(0) @binding(1) var<storage, read> encoded_in: array<u32>;
// Decoders: the dequantized weights, rows x cols float32.
@group(0) @binding(2) var<storage, read_write> values: array<f32>;

// The float constant c, hidden from the compiler (opaque_f32 in common/ggml-rounding.wgsl says why): some
// WebGPU stacks fold arithmetic that has constant operands as if it were exact (SwiftShader's:
// x / 63 -> x * (1/63), 1 / (15 / x) -> x / 15, (y + c1) + c2 -> y + (c1 + c2)), and each of those
// changes the rounding that ggml's bytes depend on. Every constant that takes part in float arithmetic
// here and in kquant-search.wgsl goes through no_fold.
fn no_fold(c: f32) -> f32 {
  return opaque_f32(c, params.zero);
}

const QK_K = 256u;
const WORKGROUP_SIZE = 64u;

// ---------------------------------------------------------------------------------------------------
// Reading a block's weights and importance, and the checks on them.

// 16 consecutive weights of the chunk (first a multiple of 16).
fn weights16(first: u32) -> V16 {
  let f = first / 4u;
  return V16(weights[f], weights[f + 1u], weights[f + 2u], weights[f + 3u]);
}

// The importance of the 16 columns of weights16(first).
fn importance16(first: u32) -> V16 {
  let f = ((first / QK_K % params.blocks_per_row) * QK_K + first % QK_K) / 4u;
  return V16(importance[f], importance[f + 1u], importance[f + 2u], importance[f + 3u]);
}

// Sub-block j of block `block`: 16 weights, or 32 (two halves).
fn sub_weights(block: u32, j: u32, halves: u32) -> Sub {
  let first = block * QK_K + j * 16u * halves;
  if (halves == 2u) {
    return Sub(weights16(first), weights16(first + 16u));
  }
  return Sub(weights16(first), v16(0.0f));
}

fn sub_importance(block: u32, j: u32, halves: u32) -> Sub {
  let first = block * QK_K + j * 16u * halves;
  if (halves == 2u) {
    return Sub(importance16(first), importance16(first + 16u));
  }
  return Sub(importance16(first), v16(0.0f));
}

// Marks block `block` of the chunk for the CPU reference.
fn send_to_cpu(block: u32) {
  atomicOr(&status[1u + block / 32u], 1u << (block % 32u));
}

fn any_subnormal16(p: V16) -> bool {
  let m = vec4<u32>(0x7fffffffu);
  let lo = vec4<u32>(1u);
  let hi = vec4<u32>(0x007fffffu);
  let a = bitcast<vec4<u32>>(p.a) & m;
  let b = bitcast<vec4<u32>>(p.b) & m;
  let c = bitcast<vec4<u32>>(p.c) & m;
  let d = bitcast<vec4<u32>>(p.d) & m;
  return any(clamp(a, lo, hi) == a) || any(clamp(b, lo, hi) == b) || any(clamp(c, lo, hi) == c) || any(clamp(d, lo, hi) == d);
}

fn any_non_finite16(p: V16) -> bool {
  let m = vec4<u32>(0x7f800000u);
  return any((bitcast<vec4<u32>>(p.a) & m) == m) || any((bitcast<vec4<u32>>(p.b) & m) == m) ||
    any((bitcast<vec4<u32>>(p.c) & m) == m) || any((bitcast<vec4<u32>>(p.d) & m) == m);
}

// One pass over the block before anything else: raises the non-finite flag for a NaN or +-inf weight,
// sends the block to the CPU for a subnormal weight or importance value (a flushing device reads them as
// 0), and returns sum(x^2) in order (the imatrix encoders' sigma2).
fn check_block(block: u32, imatrix: bool) -> f32 {
  var sum_x2 = 0.0f;
  var non_finite = false;
  var subnormal = false;
  for (var k = 0u; k < QK_K / 16u; k++) {
    let x = weights16(block * QK_K + 16u * k);
    non_finite = non_finite || any_non_finite16(x);
    subnormal = subnormal || any_subnormal16(x) || (imatrix && any_subnormal16(importance16(block * QK_K + 16u * k)));
    sum_x2 = sum16(sum_x2, v16_mul(x, x));
  }
  if (non_finite) {
    atomicStore(&status[0], 1u);
  }
  if (subnormal) {
    send_to_cpu(block);
  }
  return sum_x2;
}

// The imatrix encoders' weights qw * sqrt(sigma2 + x^2). A weight that a flushing device zeroes where
// ggml's is tiny (a product or sqrt argument below the normal range) sends the block to the CPU: the
// flush checks assume that zero weights are ggml's zeros.
fn importance_weights(block: u32, j: u32, x: Sub, halves: u32, sigma2: f32) -> Sub {
  let qw = sub_importance(block, j, halves);
  let s = v16(sigma2);
  let w = Sub(v16_mul(qw.lo, v16_sqrt(v16_add(s, v16_mul(x.lo, x.lo)))), v16_mul(qw.hi, v16_sqrt(v16_add(s, v16_mul(x.hi, x.hi)))));
  if (tiny_weights(qw.lo, w.lo) || tiny_weights(qw.hi, w.hi)) {
    send_to_cpu(block);
  }
  return w;
}

// Whether a weight w is below FLUSH_MARGIN where its importance qw is not 0.
fn tiny_weights(qw: V16, w: V16) -> bool {
  let low = vec4<f32>(FLUSH_MARGIN);
  let zero = vec4<f32>(0.0f);
  return any((qw.a != zero) & (w.a < low)) || any((qw.b != zero) & (w.b < low)) || any((qw.c != zero) & (w.c < low)) ||
    any((qw.d != zero) & (w.d < low));
}

// ---------------------------------------------------------------------------------------------------
// Writing bytes.

// The four bytes of `word` at byte `offset` of the chunk's output. Offsets are even: blocks of 110 and
// 210 bytes start on a half-word, and then a word straddles two u32s. The caller's invocation owns every
// u32 it touches, and the buffer starts zeroed, so OR-ing the bytes in is safe.
fn emit(offset: u32, word: u32) {
  let i = offset / 4u;
  if (offset % 4u == 0u) {
    encoded[i] |= word;
  } else {
    encoded[i] |= word << 16u;
    encoded[i + 1u] |= word >> 16u;
  }
}

// Two bytes (an fp16 value) at an even offset.
fn emit16(offset: u32, half: u32) {
  encoded[offset / 4u] |= (half & 0xffffu) << (8u * (offset % 4u));
}

// 16 bytes (each element of p a byte value) at `offset`.
fn emit_bytes16(offset: u32, p: L16) {
  let a = vec4<u32>(p.a);
  let b = vec4<u32>(p.b);
  let c = vec4<u32>(p.c);
  let d = vec4<u32>(p.d);
  emit(offset, a.x | (a.y << 8u) | (a.z << 16u) | (a.w << 24u));
  emit(offset + 4u, b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u));
  emit(offset + 8u, c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u));
  emit(offset + 12u, d.x | (d.y << 8u) | (d.z << 16u) | (d.w << 24u));
}

// (p >> shift) & mask, element by element.
fn l16_bits(p: L16, shift: u32, mask: i32) -> L16 {
  let s = vec4<u32>(shift);
  let m = vec4<i32>(mask);
  return L16((p.a >> s) & m, (p.b >> s) & m, (p.c >> s) & m, (p.d >> s) & m);
}

// acc | (p << shift), element by element.
fn l16_or(acc: L16, p: L16, shift: u32) -> L16 {
  let s = vec4<u32>(shift);
  return L16(acc.a | (p.a << s), acc.b | (p.b << s), acc.c | (p.c << s), acc.d | (p.d << s));
}

// Element j of 16 values or levels (j computed: for the scale steps, which run once per block).
fn v16_at(p: V16, j: u32) -> f32 {
  let v = array<vec4<f32>, 4>(p.a, p.b, p.c, p.d);
  return v[j / 4u][j % 4u];
}
fn l16_at(p: L16, j: u32) -> i32 {
  let v = array<vec4<i32>, 4>(p.a, p.b, p.c, p.d);
  return v[j / 4u][j % 4u];
}

// 16 values from an array filled in a loop (its elements read by constant index).
fn v16_from(s: array<f32, 16>) -> V16 {
  return V16(vec4<f32>(s[0], s[1], s[2], s[3]), vec4<f32>(s[4], s[5], s[6], s[7]), vec4<f32>(s[8], s[9], s[10], s[11]),
             vec4<f32>(s[12], s[13], s[14], s[15]));
}

// The 16 sub-block scales of a step-2 loop, with an all-zero second half for the 8-sub-block formats.
struct SubFits {
  scales: array<f32, 16>,
  mins: array<f32, 16>, // -min of each sub-block (q2_K, q4_K, q5_K)
  weight_sums: array<f32, 16>, // sum of each sub-block's weights (imatrix)
}

// ---------------------------------------------------------------------------------------------------
// q6_K: 16 sub-blocks of 16, y = (d * scales[j]) * (q - 32), q in 0..63, scales int8.
//   ql byte 64h + r (h < 2, r < 64): low nibbles of weights 128h + r and 128h + r + 64
//   qh byte 128 + 32h + l (l < 32): the high 2 bits of weights 128h + l + 32s at bit 2s (s < 4)

// Sub-block j's search: make_qx_quants weighted by x^2 (ref) or by the imatrix.
fn q6_K_fit(block: u32, j: u32, imatrix: bool) -> QxFit {
  let x = sub_weights(block, j, 1u).lo;
  var w = v16_mul(x, x);
  if (imatrix) {
    w = sub_importance(block, j, 1u).lo;
  }
  let fit = make_qx_quants(32, x, w);
  if (!qx_flush_safe(qx_terms(x, w))) {
    send_to_cpu(block);
  }
  return fit;
}

// Sub-block j's final levels (0..63) against d * sc (a zero product keeps the search's levels, as ggml).
fn q6_K_levels(block: u32, j: u32, d: f32, sc: i32, search: L16) -> L16 {
  let dj = d * f32(sc);
  if (dj == 0.0f) {
    return search;
  }
  return l16_add(l16_round(v16_div(sub_weights(block, j, 1u).lo, v16(dj)), -32, 31), 32);
}

// The 64 ql and 32 qh bytes of half h (sub-blocks 8h..8h+7, levels l0..l7).
fn q6_K_emit_half(out: u32, h: u32, l0: L16, l1: L16, l2: L16, l3: L16, l4: L16, l5: L16, l6: L16, l7: L16) {
  // ql: weights 128h + 16m + i (sub-block 8h + m) with 128h + 64 + 16m + i (sub-block 8h + 4 + m).
  let ql = out + 64u * h;
  emit_bytes16(ql, l16_or(l16_bits(l0, 0u, 15), l16_bits(l4, 0u, 15), 4u));
  emit_bytes16(ql + 16u, l16_or(l16_bits(l1, 0u, 15), l16_bits(l5, 0u, 15), 4u));
  emit_bytes16(ql + 32u, l16_or(l16_bits(l2, 0u, 15), l16_bits(l6, 0u, 15), 4u));
  emit_bytes16(ql + 48u, l16_or(l16_bits(l3, 0u, 15), l16_bits(l7, 0u, 15), 4u));
  // qh: weight 128h + l + 32s is in sub-block 8h + 2s + l / 16.
  let qh = out + 128u + 32u * h;
  emit_bytes16(qh, l16_or(l16_or(l16_or(l16_bits(l0, 4u, 3), l16_bits(l2, 4u, 3), 2u), l16_bits(l4, 4u, 3), 4u), l16_bits(l6, 4u, 3), 6u));
  emit_bytes16(qh + 16u, l16_or(l16_or(l16_or(l16_bits(l1, 4u, 3), l16_bits(l3, 4u, 3), 2u), l16_bits(l5, 4u, 3), 4u), l16_bits(l7, 4u, 3), 6u));
}

fn encode_q6_K(block: u32, imatrix: bool) {
  check_block(block, imatrix);
  var scales: array<f32, 16>;
  var L: array<L16, 16>; // the search's levels, then the final ones
  for (var j = 0u; j < 16u; j++) {
    let fit = q6_K_fit(block, j, imatrix);
    scales[j] = fit.scale;
    L[j] = fit.levels;
  }
  // The scales to int8 against the one with the largest |scale|: d = max / -128. An all-zero block
  // stays all zero bytes.
  let scale16 = v16_from(scales);
  let max_scale = signed_max16(scale16);
  if (abs(max_scale) < GROUP_MAX_EPS) {
    return;
  }
  let iscale = no_fold(-128.0f) / max_scale;
  let d_bits = f32_to_f16_bits(no_fold(1.0f) / iscale);
  let sc = l16_int8(l16_round_max(v16_mul(v16(iscale), scale16), 127)); // int8_t sc = MIN(127, nearest_int(...))
  let out = block * 210u;
  emit_bytes16(out + 192u, l16_bits(sc, 0u, 0xff));
  emit16(out + 208u, d_bits);
  let d = f16_bits_to_f32(d_bits);
  for (var j = 0u; j < 16u; j++) {
    L[j] = q6_K_levels(block, j, d, l16_at(sc, j), L[j]);
  }
  q6_K_emit_half(out, 0u, L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7]);
  q6_K_emit_half(out, 1u, L[8], L[9], L[10], L[11], L[12], L[13], L[14], L[15]);
}

// ---------------------------------------------------------------------------------------------------
// q3_K: 16 sub-blocks of 16, y = (d * (sc_j - 32)) * q with q in -4..3 and 6-bit sc_j.
//   hmask byte m (m < 32): bit 2 of the level of weight 32j + m at bit j (j < 8)
//   qs byte 32 + 32h + l: the low 2 bits of weights 128h + 32s + l at bit 2s
//   scales: sc_j's low 4 bits in byte j (j < 8) or the high nibble of byte j - 8, its high 2 bits at bit
//   2*(j/4) of byte 8 + j%4

// Sub-block j's search: make_q3_quants (ref), or make_qx_quants weighted by qw * sqrt(sigma2 + x^2).
fn q3_K_fit(block: u32, j: u32, imatrix: bool, sigma2: f32, fits: ptr<function, SubFits>) -> QxFit {
  let x = sub_weights(block, j, 1u);
  if (imatrix) {
    let w = importance_weights(block, j, x, 1u, sigma2).lo;
    (*fits).weight_sums[j] = sum16(0.0f, w);
    if (!qx_flush_safe(qx_terms(x.lo, w))) {
      send_to_cpu(block);
    }
    return make_qx_quants(4, x.lo, w);
  }
  if (!q3_flush_safe(qx_terms(x.lo, v16_mul(x.lo, x.lo)))) {
    send_to_cpu(block);
  }
  return make_q3_quants(4, x.lo);
}

// The 6-bit codes sc_j (0..63) into the 12 scale bytes.
fn q3_K_emit_scales(offset: u32, sc: L16) {
  let low = L16(sc.a & vec4<i32>(15), sc.b & vec4<i32>(15), vec4<i32>(0), vec4<i32>(0));
  let high = L16(sc.c & vec4<i32>(15), sc.d & vec4<i32>(15), vec4<i32>(0), vec4<i32>(0));
  let b = l16_or(low, high, 4u); // bytes 0..7
  let top = l16_bits(sc, 4u, 3);
  let t = vec4<u32>(top.a | (top.b << vec4<u32>(2u)) | (top.c << vec4<u32>(4u)) | (top.d << vec4<u32>(6u))); // bytes 8..11
  let ba = vec4<u32>(b.a);
  let bb = vec4<u32>(b.b);
  emit(offset, ba.x | (ba.y << 8u) | (ba.z << 16u) | (ba.w << 24u));
  emit(offset + 4u, bb.x | (bb.y << 8u) | (bb.z << 16u) | (bb.w << 24u));
  emit(offset + 8u, t.x | (t.y << 8u) | (t.z << 16u) | (t.w << 24u));
}

// Sub-block j's final levels (0..7) against d * (sc - 32) (a zero product keeps the search's levels).
fn q3_K_levels(block: u32, j: u32, d: f32, sc: i32, search: L16) -> L16 {
  let dj = d * f32(sc - 32);
  if (dj == 0.0f) {
    return search;
  }
  return l16_add(l16_round(v16_div(sub_weights(block, j, 1u).lo, v16(dj)), -4, 3), 4);
}

// The 2-bit fields of half h (sub-blocks 8h..8h+7): weight 128h + l + 32s is in sub-block 8h + 2s + l / 16,
// at bit 2s of byte 32h + l. (q2_K's qs, and q3_K's low bits.)
fn emit_2bit_half(qs: u32, h: u32, l0: L16, l1: L16, l2: L16, l3: L16, l4: L16, l5: L16, l6: L16, l7: L16) {
  emit_bytes16(qs + 32u * h, l16_or(l16_or(l16_or(l16_bits(l0, 0u, 3), l16_bits(l2, 0u, 3), 2u), l16_bits(l4, 0u, 3), 4u), l16_bits(l6, 0u, 3), 6u));
  emit_bytes16(qs + 32u * h + 16u, l16_or(l16_or(l16_or(l16_bits(l1, 0u, 3), l16_bits(l3, 0u, 3), 2u), l16_bits(l5, 0u, 3), 4u), l16_bits(l7, 0u, 3), 6u));
}

// hmask bytes m (or m + 16) of the 3rd bits of the 8 sub-blocks j = 0, 2, ..., 14 (or 1, 3, ..., 15):
// weight 32k + m is in sub-block 2k + m / 16, its bit at bit k.
fn q3_K_hmask(l0: L16, l1: L16, l2: L16, l3: L16, l4: L16, l5: L16, l6: L16, l7: L16) -> L16 {
  var h = l16_bits(l0, 2u, 1);
  h = l16_or(h, l16_bits(l1, 2u, 1), 1u);
  h = l16_or(h, l16_bits(l2, 2u, 1), 2u);
  h = l16_or(h, l16_bits(l3, 2u, 1), 3u);
  h = l16_or(h, l16_bits(l4, 2u, 1), 4u);
  h = l16_or(h, l16_bits(l5, 2u, 1), 5u);
  h = l16_or(h, l16_bits(l6, 2u, 1), 6u);
  return l16_or(h, l16_bits(l7, 2u, 1), 7u);
}

fn encode_q3_K(block: u32, imatrix: bool) {
  let sigma2 = no_fold(2.0f) * check_block(block, imatrix) / no_fold(256.0f);
  var fits: SubFits;
  var L: array<L16, 16>; // the search's levels, then the final ones
  for (var j = 0u; j < 16u; j++) {
    let fit = q3_K_fit(block, j, imatrix, sigma2, &fits);
    fits.scales[j] = fit.scale;
    L[j] = fit.levels;
  }
  let scale16 = v16_from(fits.scales);
  var sc = l16(32); // the 6-bit codes
  var d_bits = 0u;
  if (imatrix) {
    // make_qx_quants(nmax 32) on the scales, weighted by the sub-blocks' weight sums.
    let sw = v16_from(fits.weight_sums);
    let fit = make_qx_quants(32, scale16, sw);
    if (!qx_flush_safe(qx_terms(scale16, sw))) {
      send_to_cpu(block);
    }
    sc = fit.levels;
    d_bits = f32_to_f16_bits(fit.scale);
  } else {
    // Against the scale with the largest |scale|: codes clamp((int8)nearest_int(-32/max * s), -32, 31) + 32.
    let max_scale = signed_max16(scale16);
    if (max_scale != 0.0f) {
      let iscale = no_fold(-32.0f) / max_scale;
      let l = l16_round(v16_mul(v16(iscale), scale16), -0x7fffffff, 0x7fffffff);
      let s8 = l16_int8(l); // int8_t l = nearest_int(...)
      sc = L16(clamp(s8.a, vec4<i32>(-32), vec4<i32>(31)) + vec4<i32>(32), clamp(s8.b, vec4<i32>(-32), vec4<i32>(31)) + vec4<i32>(32),
               clamp(s8.c, vec4<i32>(-32), vec4<i32>(31)) + vec4<i32>(32), clamp(s8.d, vec4<i32>(-32), vec4<i32>(31)) + vec4<i32>(32));
      d_bits = f32_to_f16_bits(no_fold(1.0f) / iscale);
    } else {
      sc = l16(0);
    }
  }
  let out = block * 110u;
  q3_K_emit_scales(out + 96u, sc);
  emit16(out + 108u, d_bits);
  let d = f16_bits_to_f32(d_bits);
  for (var j = 0u; j < 16u; j++) {
    L[j] = q3_K_levels(block, j, d, l16_at(sc, j), L[j]);
  }
  emit_2bit_half(out + 32u, 0u, L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7]);
  emit_2bit_half(out + 32u, 1u, L[8], L[9], L[10], L[11], L[12], L[13], L[14], L[15]);
  emit_bytes16(out, q3_K_hmask(L[0], L[2], L[4], L[6], L[8], L[10], L[12], L[14]));
  emit_bytes16(out + 16u, q3_K_hmask(L[1], L[3], L[5], L[7], L[9], L[11], L[13], L[15]));
}

// ---------------------------------------------------------------------------------------------------
// q2_K: 16 sub-blocks of 16, y = (d * sc_j) * q - dmin * m_j with q in 0..3 and 4-bit sc_j, m_j.
//   scales byte j: sc_j | m_j << 4; qs byte 16 + 32h + l: the levels of weights 128h + 32s + l at bit 2s

// Sub-block j's search: make_qkx2_quants weighted by |x| with absolute errors (ref), or make_qkx3_quants
// weighted by qw * sqrt(sigma2 + x^2) (imatrix).
fn q2_K_fit(block: u32, j: u32, imatrix: bool, sigma2: f32, fits: ptr<function, SubFits>) -> AffineFit {
  let x = sub_weights(block, j, 1u);
  var w = Sub(v16_abs(x.lo), v16(0.0f));
  if (imatrix) {
    w = importance_weights(block, j, x, 1u, sigma2);
    (*fits).weight_sums[j] = sum16(0.0f, w.lo);
  }
  if (!qkx_flush_safe(x, w)) {
    send_to_cpu(block);
  }
  if (imatrix) {
    return make_qkx_quants(3, x, w, 1u, no_fold(-0.9f), no_fold(0.05f), 36, false, true);
  }
  return make_qkx_quants(3, x, w, 1u, no_fold(-0.5f), no_fold(0.1f), 15, true, false);
}

// Sub-block j's final levels (0..3) against d * sc and dmin * m (a zero scale keeps the search's levels).
fn q2_K_levels(block: u32, j: u32, d: f32, dmin: f32, code: i32, search: L16) -> L16 {
  let dl = d * f32(code & 15);
  if (dl == 0.0f) {
    return search;
  }
  let ml = dmin * f32(code >> 4u);
  return l16_round(v16_div(v16_add(sub_weights(block, j, 1u).lo, v16(ml)), v16(dl)), 0, 3);
}

fn encode_q2_K(block: u32, imatrix: bool) {
  let sigma2 = check_block(block, imatrix) / no_fold(256.0f); // mean(x^2), not 2*mean as q3_K..q5_K
  var fits: SubFits;
  var L: array<L16, 16>; // the search's levels, then the final ones
  for (var j = 0u; j < 16u; j++) {
    let fit = q2_K_fit(block, j, imatrix, sigma2, &fits);
    fits.scales[j] = fit.scale;
    fits.mins[j] = fit.neg_min;
    L[j] = fit.levels.lo;
  }
  let scales = v16_from(fits.scales);
  let mins = v16_from(fits.mins);
  var codes = l16(0); // scale | min << 4
  var d_bits = 0u;
  var dmin_bits = 0u;
  if (imatrix) {
    // make_qp_quants on the scales and on the mins, weighted by the sub-blocks' weight sums.
    let sw = v16_from(fits.weight_sums);
    let d = make_qp_quants(15, scales, sw);
    let m = make_qp_quants(15, mins, sw);
    if (!qp_flush_safe(qx_terms(scales, sw)) || !qp_flush_safe(qx_terms(mins, sw))) {
      send_to_cpu(block);
    }
    codes = l16_bits(l16_or(d.levels, m.levels, 4u), 0u, 0xff);
    d_bits = f32_to_f16_bits(d.scale);
    dmin_bits = f32_to_f16_bits(m.scale);
  } else {
    // 4 bits against the largest scale and the largest min: d = max / 15 (u8 stores wrap).
    let max_scale = max(max16(scales), 0.0f);
    let max_min = max(max16(mins), 0.0f);
    if (max_scale > 0.0f) {
      codes = l16_round(v16_mul(v16(no_fold(15.0f) / max_scale), scales), -0x7fffffff, 0x7fffffff);
      d_bits = f32_to_f16_bits(max_scale / no_fold(15.0f));
    }
    if (max_min > 0.0f) {
      codes = l16_or(codes, l16_round(v16_mul(v16(no_fold(15.0f) / max_min), mins), -0x7fffffff, 0x7fffffff), 4u);
      dmin_bits = f32_to_f16_bits(max_min / no_fold(15.0f));
    }
    codes = l16_bits(codes, 0u, 0xff);
  }
  let out = block * 84u;
  emit_bytes16(out, codes);
  emit16(out + 80u, d_bits);
  emit16(out + 82u, dmin_bits);
  let d = f16_bits_to_f32(d_bits);
  let dmin = f16_bits_to_f32(dmin_bits);
  for (var j = 0u; j < 16u; j++) {
    L[j] = q2_K_levels(block, j, d, dmin, l16_at(codes, j), L[j]);
  }
  emit_2bit_half(out + 16u, 0u, L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7]);
  emit_2bit_half(out + 16u, 1u, L[8], L[9], L[10], L[11], L[12], L[13], L[14], L[15]);
}

// ---------------------------------------------------------------------------------------------------
// q4_K and q5_K: 8 sub-blocks of 32, y = (d * sc_j) * q - dmin * m_j with 6-bit sc_j, m_j.
//   scales (get_scale_min_k4): j < 4: sc_j = byte j & 63, m_j = byte j + 4 & 63; j >= 4: low 4 bits in
//   byte j + 4 (sc_j low nibble, m_j high nibble), high 2 bits in the top bits of bytes j - 4 and j
//   qs byte 32c + l (c < 4, l < 32): weight 64c + l in the low nibble, 64c + 32 + l in the high one
//   q5_K's qh byte l: bit 4 of the level of weight 32j + l at bit j

// Sub-block j's search: make_qkx2_quants weighted by av_x + |x| (ref), or make_qkx3_quants weighted by
// qw * sqrt(sigma2 + x^2) (imatrix).
fn k4_fit(block: u32, j: u32, nmax: i32, imatrix: bool, sigma2: f32, fits: ptr<function, SubFits>) -> AffineFit {
  let x = sub_weights(block, j, 2u);
  var w: Sub;
  if (imatrix) {
    w = importance_weights(block, j, x, 2u, sigma2);
    (*fits).weight_sums[j] = sub_sum(w, 2u);
  } else {
    let av_x = v16(sqrt(sub_sum(sub_mul(x, x), 2u) / no_fold(32.0f)));
    w = Sub(v16_add(av_x, v16_abs(x.lo)), v16_add(av_x, v16_abs(x.hi)));
  }
  if (!qkx_flush_safe(x, w)) {
    send_to_cpu(block);
  }
  if (imatrix) {
    return make_qkx_quants(nmax, x, w, 2u, no_fold(-0.9f), no_fold(0.05f), 36, false, true);
  }
  if (nmax == 15) {
    return make_qkx_quants(nmax, x, w, 2u, no_fold(-1.0f), no_fold(0.1f), 20, false, false);
  }
  return make_qkx_quants(nmax, x, w, 2u, no_fold(-0.5f), no_fold(0.1f), 15, false, false);
}

// Sub-block j's final levels (0..nmax) against d * sc and dmin * m (a zero scale keeps the search's levels).
fn k4_levels(block: u32, j: u32, nmax: i32, d: f32, dmin: f32, sm: vec2<u32>, search: SubLevels) -> SubLevels {
  let dl = d * f32(sm.x);
  if (dl == 0.0f) {
    return search;
  }
  let ml = v16(dmin * f32(sm.y));
  let x = sub_weights(block, j, 2u);
  return SubLevels(l16_round(v16_div(v16_add(x.lo, ml), v16(dl)), 0, nmax), l16_round(v16_div(v16_add(x.hi, ml), v16(dl)), 0, nmax));
}

// qs bytes 32c .. 32c + 31: sub-block 2c's low 4 bits in the low nibbles, sub-block 2c + 1's in the high.
fn k4_emit_qs(qs: u32, c: u32, low: SubLevels, high: SubLevels) {
  emit_bytes16(qs + 32u * c, l16_or(l16_bits(low.lo, 0u, 15), l16_bits(high.lo, 0u, 15), 4u));
  emit_bytes16(qs + 32u * c + 16u, l16_or(l16_bits(low.hi, 0u, 15), l16_bits(high.hi, 0u, 15), 4u));
}

// q5_K's qh byte l: bit 4 of the level of weight 32j + l (sub-block j) at bit j.
fn q5_K_qh(L: ptr<function, array<SubLevels, 8>>) -> SubLevels {
  var qh = SubLevels(l16(0), l16(0));
  for (var j = 0u; j < 8u; j++) {
    qh = SubLevels(l16_or(qh.lo, l16_bits((*L)[j].lo, 4u, 1), j), l16_or(qh.hi, l16_bits((*L)[j].hi, 4u, 1), j));
  }
  return qh;
}

fn encode_k4(block: u32, nmax: i32, imatrix: bool) {
  let sigma2 = no_fold(2.0f) * check_block(block, imatrix) / no_fold(256.0f);
  var fits: SubFits;
  var L: array<SubLevels, 8>; // the search's levels, then the final ones
  for (var j = 0u; j < 8u; j++) {
    let fit = k4_fit(block, j, nmax, imatrix, sigma2, &fits);
    fits.scales[j] = fit.scale;
    fits.mins[j] = fit.neg_min;
    L[j] = fit.levels;
  }
  let scales = v16_from(fits.scales); // elements 8..15 are 0
  let mins = v16_from(fits.mins);
  var ls: L16;
  var lm: L16;
  var d_bits: u32;
  var dmin_bits: u32;
  if (imatrix) {
    // make_qp_quants on the scales and on the mins, weighted by the sub-blocks' weight sums (q5_K clamps
    // the codes to 63, q4_K does not).
    let sw = v16_from(fits.weight_sums);
    let d = make_qp_quants(63, scales, sw);
    let m = make_qp_quants(63, mins, sw);
    if (!qp_flush_safe(qx_terms(scales, sw)) || !qp_flush_safe(qx_terms(mins, sw))) {
      send_to_cpu(block);
    }
    ls = d.levels;
    lm = m.levels;
    if (nmax == 31) {
      ls = l16_min(ls, 63);
      lm = l16_min(lm, 63);
    }
    d_bits = f32_to_f16_bits(d.scale);
    dmin_bits = f32_to_f16_bits(m.scale);
  } else {
    // 6 bits against the largest scale and the largest min: d = max / 63 (uint8_t codes, then at most 63).
    let max_scale = max(max16(scales), 0.0f);
    let max_min = max(max16(mins), 0.0f);
    let inv_scale = select(0.0f, no_fold(63.0f) / max_scale, max_scale > 0.0f);
    let inv_min = select(0.0f, no_fold(63.0f) / max_min, max_min > 0.0f);
    ls = l16_min(l16_bits(l16_round(v16_mul(v16(inv_scale), scales), -0x7fffffff, 0x7fffffff), 0u, 0xff), 63);
    lm = l16_min(l16_bits(l16_round(v16_mul(v16(inv_min), mins), -0x7fffffff, 0x7fffffff), 0u, 0xff), 63);
    d_bits = f32_to_f16_bits(max_scale / no_fold(63.0f));
    dmin_bits = f32_to_f16_bits(max_min / no_fold(63.0f));
  }
  // The 12 scale bytes: bytes 0..3 = ls_j | (ls_{j+4} >> 4) << 6, bytes 4..7 = lm_j | (lm_{j+4} >> 4) << 6,
  // bytes 8..11 = (ls_{j+4} & 15) | (lm_{j+4} & 15) << 4 (each a uint8_t store).
  let m8 = vec4<i32>(0xff);
  let s0 = vec4<u32>((ls.a | ((ls.b >> vec4<u32>(4u)) << vec4<u32>(6u))) & m8);
  let s1 = vec4<u32>((lm.a | ((lm.b >> vec4<u32>(4u)) << vec4<u32>(6u))) & m8);
  let s2 = vec4<u32>(((ls.b & vec4<i32>(15)) | ((lm.b & vec4<i32>(15)) << vec4<u32>(4u))) & m8);
  let out = block * select(144u, 176u, nmax == 31);
  emit(out, d_bits | (dmin_bits << 16u));
  emit(out + 4u, s0.x | (s0.y << 8u) | (s0.z << 16u) | (s0.w << 24u));
  emit(out + 8u, s1.x | (s1.y << 8u) | (s1.z << 16u) | (s1.w << 24u));
  emit(out + 12u, s2.x | (s2.y << 8u) | (s2.z << 16u) | (s2.w << 24u));
  // Sub-block j's scale and min as the decoder reads them back (a q4_K imatrix code above 63 loses bits).
  let bytes = array<u32, 16>(s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w, s2.x, s2.y, s2.z, s2.w, 0u, 0u, 0u, 0u);
  let d = f16_bits_to_f32(d_bits);
  let dmin = f16_bits_to_f32(dmin_bits);
  for (var j = 0u; j < 8u; j++) {
    L[j] = k4_levels(block, j, nmax, d, dmin, scale_min_k4(j, bytes), L[j]);
  }
  let qs = out + select(16u, 48u, nmax == 31);
  k4_emit_qs(qs, 0u, L[0], L[1]);
  k4_emit_qs(qs, 1u, L[2], L[3]);
  k4_emit_qs(qs, 2u, L[4], L[5]);
  k4_emit_qs(qs, 3u, L[6], L[7]);
  if (nmax == 31) {
    let qh = q5_K_qh(&L);
    emit_bytes16(out + 16u, qh.lo);
    emit_bytes16(out + 32u, qh.hi);
  }
}

// ---------------------------------------------------------------------------------------------------
// Entry points: invocation i encodes block i (q2_K, q4_K, q5_K) or blocks 2i and 2i+1 (q3_K, q6_K).

fn invocation_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WORKGROUP_SIZE;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q2_K_ref(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_q2_K(block, false); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q2_K_imatrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_q2_K(block, true); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q3_K_ref(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = 2u * invocation_index(gid, nwg);
  if (first < params.blocks) { encode_q3_K(first, false); }
  if (first + 1u < params.blocks) { encode_q3_K(first + 1u, false); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q3_K_imatrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = 2u * invocation_index(gid, nwg);
  if (first < params.blocks) { encode_q3_K(first, true); }
  if (first + 1u < params.blocks) { encode_q3_K(first + 1u, true); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_K_ref(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_k4(block, 15, false); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_K_imatrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_k4(block, 15, true); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_K_ref(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_k4(block, 31, false); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_K_imatrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block < params.blocks) { encode_k4(block, 31, true); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q6_K_ref(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = 2u * invocation_index(gid, nwg);
  if (first < params.blocks) { encode_q6_K(first, false); }
  if (first + 1u < params.blocks) { encode_q6_K(first + 1u, false); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q6_K_imatrix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = 2u * invocation_index(gid, nwg);
  if (first < params.blocks) { encode_q6_K(first, true); }
  if (first + 1u < params.blocks) { encode_q6_K(first + 1u, true); }
}

// ---------------------------------------------------------------------------------------------------
// Decoders: invocation i writes weights 16i..16i+15 of the dispatch (one 16-weight slice of a block).
// Every product of an fp16 scale and a small integer is exact in f32, so each value is rounded once, as
// in C, fused or not.

// get_scale_min_k4: sub-block j's 6-bit scale (x) and min (y) from the 12 scale bytes s of q4_K and q5_K.
fn scale_min_k4(j: u32, s: array<u32, 16>) -> vec2<u32> {
  if (j < 4u) {
    return vec2<u32>(s[j] & 63u, s[j + 4u] & 63u);
  }
  return vec2<u32>((s[j + 4u] & 0xfu) | ((s[j - 4u] >> 6u) << 4u), (s[j + 4u] >> 4u) | ((s[j] >> 6u) << 4u));
}

// q3_K's sub-block j signed scale sc_j - 32 from the 12 scale bytes s.
fn q3_K_scale(j: u32, s: array<u32, 16>) -> i32 {
  var low = s[j % 8u] & 0xfu;
  if (j >= 8u) {
    low = s[j - 8u] >> 4u;
  }
  return i32(low | (((s[8u + j % 4u] >> (2u * (j / 4u))) & 3u) << 4u)) - 32;
}

// Byte k of block `block` of the packed input.
fn packed_byte(block: u32, block_bytes: u32, k: u32) -> u32 {
  let offset = block * block_bytes + k;
  return byte_of(encoded_in[offset / 4u], offset % 4u);
}

fn packed_f16(block: u32, block_bytes: u32, k: u32) -> f32 {
  return f16_bits_to_f32(packed_byte(block, block_bytes, k) | (packed_byte(block, block_bytes, k + 1u) << 8u));
}

fn packed_scale_bytes(block: u32, block_bytes: u32, first: u32, count: u32) -> array<u32, 16> {
  var s: array<u32, 16>;
  for (var k = 0u; k < count; k++) {
    s[k] = packed_byte(block, block_bytes, first + k);
  }
  return s;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q6_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = invocation_index(gid, nwg);
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

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q2_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = invocation_index(gid, nwg);
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

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q3_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = invocation_index(gid, nwg);
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

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q4_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = invocation_index(gid, nwg);
  if (slice < params.blocks * 16u) {
    decode_k4(slice, 144u, 16u, false);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q5_K(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slice = invocation_index(gid, nwg);
  if (slice < params.blocks * 16u) {
    decode_k4(slice, 176u, 48u, true);
  }
}
