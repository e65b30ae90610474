// llama.cpp's legacy block formats q4_0, q4_1, q5_0, q5_1, q8_0 and q8_K: encoders (ggml's
// quantize_row_<fmt>_ref, and quantize_row_<fmt>_impl with an importance matrix) and decoders
// (dequantize_row_<fmt>). Ports of src/quant/ggml/legacy.ts, which is bit-exact with ggml: every float
// operation is one f32 operation in the same order. The reference encoders divide with divide()
// (correctly rounded on any device); the weighted ones search with many divisions and sums, and need a
// device that rounds / and sqrt correctly and does not fuse a*b+c (src/gpu/float-probe.ts checks;
// SwiftShader does). Needs shaders/common/*.wgsl, common/division.wgsl and kquant-search.wgsl (the
// searches of the weighted encoders) in front of it (src/gpu/ggml-legacy.ts puts them there).
//
// Block layouts (little-endian, packed back to back, rows never padded; fp16 = IEEE binary16):
//   q4_0  32 weights, 18 bytes: d fp16 @0 | qs u8[16] @2
//   q4_1  32 weights, 20 bytes: d fp16 @0 | m fp16 @2 | qs u8[16] @4
//   q5_0  32 weights, 22 bytes: d fp16 @0 | qh u32 @2 (unaligned) | qs u8[16] @6
//   q5_1  32 weights, 24 bytes: d fp16 @0 | m fp16 @2 | qh u32 @4 | qs u8[16] @8
//   q8_0  32 weights, 34 bytes: d fp16 @0 | qs i8[32] @2
//   q8_K 256 weights, 292 bytes: d f32 @0 | qs i8[256] @4 | bsums i16[16] @260
// Weight e < 16 of a 4/5-bit block is the low nibble of qs[e], weight e >= 16 the high nibble of
// qs[e - 16]; the 5th bit of weight e is bit e of qh.
//
// Who writes which word: blocks of 18, 22 and 34 bytes do not fill whole u32 words, so an encoder
// invocation handles a "unit" of whole words: two such blocks (36, 44, 68 bytes), or one block of
// the others (20, 24, 292 bytes); no two invocations touch the same word. An encoder builds each block
// as a Packed value (its first 2 or 4 bytes, then whole words) and store_pair shifts the second block
// of a pair into place. Decoders read words anywhere and write their own 32 (or 256) floats, so they
// take one block each.
//
// Weights are read four at a time (vec4) into named fields (Weights32), never into an array indexed in
// a loop: GPUs keep such values in registers, while a private array goes to memory (on SwiftShader
// that costs several times the arithmetic).
//
// Subnormal floats: where the device flushes them to zero (SwiftShader does, inputs and results alike),
// a block whose arithmetic meets them cannot reproduce the CPU's bits. Such blocks come from values of
// tiny magnitude, so on such a device (params.guard_subnormals = 1) the kernels flag their rows (see
// `status`) and the caller computes those rows on the CPU reference.
//  - Reference encoders: a block with no nonzero |x| below 2^-96 never forms a subnormal that reaches
//    the result (d and 1/d stay normal; a subnormal x/d vanishes in the + 8.5 or the rounding after
//    it). So the rule is exact: any nonzero |x| < 2^-96 flags the row.
//  - Importance-weighted encoders multiply importances, weights, levels and squared errors, and sum
//    those. A row is flagged when a nonzero |x| is below 2^-32, its sigma2 below 2^-100, or an
//    importance weight w (of a nonzero importance) below 2^-20: above those, every product and sum the
//    searches form stays far from 2^-126 (a difference of two floats is a multiple of the smaller one's
//    ulp; squared errors are at least about (2^-24 |x|)^2). A margin that covers every case the
//    analysis and the tests found, not a proof for every double cancellation.
//  - The q8_K decoder flags rows whose f32 scale is itself subnormal.
//
// Bindings, per entry point (each uses 0..n-1 of them):
//   encode_<fmt>           0 params | 1 weights4 | 2 encoded | 3 status
//   encode_<fmt>_imatrix   0 params | 1 weights4 | 2 encoded | 3 status | 4 importance | 5 sigma2
//   row_sigma2             0 params | 1 weights | 2 sigma2_out | 3 status
//   decode_<fmt>           0 params | 1 encoded_in | 2 values4        (decode_q8_K: | 3 status)

struct Params {
  blocks: u32,         // blocks in this chunk: rows * blocks_per_row
  blocks_per_row: u32, // cols / block weights
  rows: u32,
  cols: u32,
  zero: u32,           // always 0: the runtime zero of opaque_f32 (common/ggml-rounding.wgsl)
  guard_subnormals: u32, // 1 on devices that flush subnormals: flag rows that would meet them
  exact_division: u32, // 1 on devices whose `/` is correctly rounded (src/gpu/float-probe.ts)
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32, row-major (weights4: the same, four to an element).
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(1) var<storage, read> weights4: array<vec4<f32>>;
// Encoders: the packed blocks, exactly as GGUF stores them (the last word zero-padded).
@group(0) @binding(2) var<storage, read_write> encoded: array<u32>;
// Encoders, decode_q8_K: word 0 is set to 1 when a weight is NaN or +-inf (the caller then reports
// where, as the CPU does); bit r % 32 of word 1 + r / 32 is set when row r needs the CPU (subnormals).
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
// Importance-weighted encoders: the importance matrix, one weight per column.
@group(0) @binding(4) var<storage, read> importance: array<f32>;
// Importance-weighted encoders: each row's sigma2 (mean of x^2), from row_sigma2.
@group(0) @binding(5) var<storage, read> sigma2: array<f32>;
// row_sigma2: where it writes each row's sigma2.
@group(0) @binding(2) var<storage, read_write> sigma2_out: array<f32>;
// Decoders: the packed blocks.
@group(0) @binding(1) var<storage, read> encoded_in: array<u32>;
// Decoders: the dequantized weights, rows x cols float32, four to an element.
@group(0) @binding(2) var<storage, read_write> values4: array<vec4<f32>>;

const WORKGROUP_SIZE = 64u;
const QK = 32u;
const QK_K = 256u;
// Bit patterns of |x| below which a nonzero weight sends its row to the CPU (see the top of the file).
const TINY_REF_BITS = 0x0f800000u; // 2^-96
const TINY_WEIGHTED_BITS = 0x2f800000u; // 2^-32
// Importance weights w below this (with a nonzero importance) send the row to the CPU.
const TINY_IMPORTANCE_WEIGHT = 0x1p-20f;
// sigma2 below this (of a row that is not all zero) sends the row to the CPU.
const TINY_SIGMA2 = 0x1p-100f;

// Format ids of the shared functions below (not ggml's type ids).
const Q4_0 = 0u;
const Q4_1 = 1u;
const Q5_0 = 2u;
const Q5_1 = 3u;
const Q8_0 = 4u;

// The float constant c, hidden from the compiler (see opaque_f32): the weighted searches pass their
// constants through this, so that no division or sum with one is rewritten.
fn no_fold(c: f32) -> f32 {
  return opaque_f32(c, params.zero);
}

// n / d, correctly rounded on any device, for finite n and d != 0. WGSL's `/` may be 2.5 ulp off; where
// the probe found it exact it is used (several times faster), with d hidden so that the compiler cannot
// rewrite a division by a constant; elsewhere the sign, then div_f32_exact on the magnitudes.
fn divide(n: f32, d: f32) -> f32 {
  if (params.exact_division != 0u) {
    return n / no_fold(d);
  }
  let sign = (bitcast<u32>(n) ^ bitcast<u32>(d)) & 0x80000000u;
  let quotient = div_f32_exact(bitcast<f32>(bitcast<u32>(n) & 0x7fffffffu), bitcast<f32>(bitcast<u32>(d) & 0x7fffffffu));
  return bitcast<f32>(bitcast<u32>(quotient) | sign);
}

// ---------------------------------------------------------------------------------------------------
// Blocks as words

// One encoded block: `head` holds its first 2 bytes (the fp16 d) or, for q4_1 and q5_1, its first 4 (d,
// then m); `body` the bytes after those, as body_words_of(format) whole words.
struct Packed {
  head: u32,
  body: array<u32, 8>,
}

// Body words: q4_0, q4_1 qs (4); q5_0, q5_1 qh then qs (5); q8_0 qs (8).
fn body_words_of(format: u32) -> u32 {
  switch format {
    case Q5_0, Q5_1: { return 5u; }
    case Q8_0: { return 8u; }
    default: { return 4u; }
  }
}

// q4_1 and q5_1 store a minimum after d: a 4-byte head, so their blocks (20, 24 bytes) are whole words.
fn has_min(format: u32) -> bool {
  return format == Q4_1 || format == Q5_1;
}

fn block_bytes_of(format: u32) -> u32 {
  return select(2u, 4u, has_min(format)) + 4u * body_words_of(format);
}

// Blocks per unit: two where a block does not end on a word boundary.
fn unit_blocks_of(format: u32) -> u32 {
  return select(2u, 1u, has_min(format));
}

// Stores a unit. One block of a 4-byte head is 1 + n words. Two blocks of a 2-byte head and n body words
// are 2n + 1 words, the second block's head in the upper half of word n; `count` is 1 for the chunk's
// last unit when it holds one block (the rest of its last word is the buffer's zero padding).
fn store_unit(unit_index: u32, format: u32, a: Packed, b: Packed, count: u32) {
  let n = body_words_of(format);
  if (has_min(format)) {
    let first = unit_index * (n + 1u);
    encoded[first] = a.head;
    for (var k = 0u; k < n; k++) {
      encoded[first + 1u + k] = a.body[k];
    }
    return;
  }
  let first = unit_index * (2u * n + 1u);
  encoded[first] = a.head | (a.body[0] << 16u);
  for (var k = 1u; k < n; k++) {
    encoded[first + k] = (a.body[k - 1u] >> 16u) | (a.body[k] << 16u);
  }
  let tail = a.body[n - 1u] >> 16u;
  if (count == 1u) {
    encoded[first + n] = tail;
    return;
  }
  encoded[first + n] = tail | (b.head << 16u);
  for (var k = 0u; k < n; k++) {
    encoded[first + n + 1u + k] = b.body[k];
  }
}

fn flag_row_for_cpu(row: u32) {
  atomicOr(&status[1u + row / 32u], 1u << (row % 32u));
}

// Status bits of some weights: NON_FINITE for NaN or +-inf, TINY for a nonzero |x| below the float whose
// bits are tiny_bits. Tested on the bits: a flushing device would read a subnormal as 0.
const NON_FINITE = 1u;
const TINY = 2u;
fn slice_status(v: vec4<f32>, tiny_bits: u32) -> u32 {
  let magnitude = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
  let non_finite = any(magnitude >= vec4<u32>(0x7f800000u));
  let tiny = any((magnitude != vec4<u32>(0u)) & (magnitude < vec4<u32>(tiny_bits)));
  return select(0u, NON_FINITE, non_finite) | select(0u, TINY, tiny);
}

// Raises the non-finite flag, and sends the row to the CPU for TINY on a flushing device.
fn report_status(bits: u32, row: u32) {
  if ((bits & NON_FINITE) != 0u) {
    atomicStore(&status[0], 1u);
  }
  if ((bits & TINY) != 0u && params.guard_subnormals != 0u) {
    flag_row_for_cpu(row);
  }
}

// ---------------------------------------------------------------------------------------------------
// Reference encoders (quantize_row_<fmt>_ref), one block each

// A block's 32 weights: weights 4k..4k+3 in s<k>.
struct Weights32 {
  s0: vec4<f32>,
  s1: vec4<f32>,
  s2: vec4<f32>,
  s3: vec4<f32>,
  s4: vec4<f32>,
  s5: vec4<f32>,
  s6: vec4<f32>,
  s7: vec4<f32>,
}

// Loads block `block` of the chunk and reports its status.
fn load_weights32(block: u32) -> Weights32 {
  let p = block * 8u;
  let x = Weights32(weights4[p], weights4[p + 1u], weights4[p + 2u], weights4[p + 3u],
                    weights4[p + 4u], weights4[p + 5u], weights4[p + 6u], weights4[p + 7u]);
  let bits = slice_status(x.s0, TINY_REF_BITS) | slice_status(x.s1, TINY_REF_BITS) | slice_status(x.s2, TINY_REF_BITS) |
             slice_status(x.s3, TINY_REF_BITS) | slice_status(x.s4, TINY_REF_BITS) | slice_status(x.s5, TINY_REF_BITS) |
             slice_status(x.s6, TINY_REF_BITS) | slice_status(x.s7, TINY_REF_BITS);
  report_status(bits, block / params.blocks_per_row);
  return x;
}

// The signed value of the largest |x|, the first on ties (signed_max4: shaders/kquant-search.wgsl).
fn signed_max32(x: Weights32) -> f32 {
  let lo = signed_max4(signed_max4(signed_max4(signed_max4(0.0, x.s0), x.s1), x.s2), x.s3);
  return signed_max4(signed_max4(signed_max4(signed_max4(lo, x.s4), x.s5), x.s6), x.s7);
}

// The sign of the first zero among v (acc if it already holds one: x = 1 once found, y = the zero).
fn scan_first_zero(acc: vec2<f32>, v: vec4<f32>) -> vec2<f32> {
  var r = acc;
  r = select(r, vec2<f32>(1.0, v.x), r.x == 0.0 && v.x == 0.0);
  r = select(r, vec2<f32>(1.0, v.y), r.x == 0.0 && v.y == 0.0);
  r = select(r, vec2<f32>(1.0, v.z), r.x == 0.0 && v.z == 0.0);
  r = select(r, vec2<f32>(1.0, v.w), r.x == 0.0 && v.w == 0.0);
  return r;
}

// (min, max) as C's `if (v < min) min = v; if (v > max) max = v;` finds them. min() and max() agree with
// it except on the sign of a zero result, which C takes from the first zero in order; only the minimum's
// sign is ever seen (m is stored; max - min is +0 either way when both are zero).
fn min_max32(x: Weights32) -> vec2<f32> {
  let lo = min(min(min(x.s0, x.s1), min(x.s2, x.s3)), min(min(x.s4, x.s5), min(x.s6, x.s7)));
  let hi = max(max(max(x.s0, x.s1), max(x.s2, x.s3)), max(max(x.s4, x.s5), max(x.s6, x.s7)));
  var r = vec2<f32>(min(min(lo.x, lo.y), min(lo.z, lo.w)), max(max(hi.x, hi.y), max(hi.z, hi.w)));
  if (r.x == 0.0) {
    var zero = vec2<f32>(0.0);
    zero = scan_first_zero(zero, x.s0);
    zero = scan_first_zero(zero, x.s1);
    zero = scan_first_zero(zero, x.s2);
    zero = scan_first_zero(zero, x.s3);
    zero = scan_first_zero(zero, x.s4);
    zero = scan_first_zero(zero, x.s5);
    zero = scan_first_zero(zero, x.s6);
    zero = scan_first_zero(zero, x.s7);
    r.x = zero.y;
  }
  return r;
}

fn max4(v: vec4<f32>) -> f32 {
  return max(max(v.x, v.y), max(v.z, v.w));
}

// Bit 4 of four levels, as bits 0..3 (q5's qh, four weights at a time).
fn fifth_bits4(q: vec4<u32>) -> u32 {
  let b = (q >> vec4<u32>(4u)) & vec4<u32>(1u);
  return b.x | (b.y << 1u) | (b.z << 2u) | (b.w << 3u);
}

// Four qs bytes from levels of weights j..j+3 (low nibbles) and j+16..j+19 (high nibbles).
fn nibble_word(lo: vec4<u32>, hi: vec4<u32>) -> u32 {
  return pack4_bytes((lo & vec4<u32>(0x0fu)) | ((hi & vec4<u32>(0x0fu)) << vec4<u32>(4u)));
}

// q4_0 levels: min(15, (int8)(x*id + 8.5)).
fn q4_0_levels(v: vec4<f32>, id: f32) -> vec4<u32> {
  return bitcast<vec4<u32>>(min(trunc_to_int4(v * id + 8.5), vec4<i32>(15)));
}

// q4_0: d = (signed value of largest |x|) / -8.
fn quantize_q4_0(x: Weights32) -> Packed {
  let d = divide(signed_max32(x), -8.0);
  // id comes from the fp32 d, not the fp16 one stored.
  let id = select(0.0, divide(1.0, d), d != 0.0);
  var p: Packed;
  p.head = f32_to_f16_bits(d);
  p.body[0] = nibble_word(q4_0_levels(x.s0, id), q4_0_levels(x.s4, id));
  p.body[1] = nibble_word(q4_0_levels(x.s1, id), q4_0_levels(x.s5, id));
  p.body[2] = nibble_word(q4_0_levels(x.s2, id), q4_0_levels(x.s6, id));
  p.body[3] = nibble_word(q4_0_levels(x.s3, id), q4_0_levels(x.s7, id));
  return p;
}

// q4_1 levels: min(15, (int8)((x - min)*id + 0.5)).
fn q4_1_levels(v: vec4<f32>, lo: f32, id: f32) -> vec4<u32> {
  return bitcast<vec4<u32>>(min(trunc_to_int4((v - lo) * id + 0.5), vec4<i32>(15)));
}

// q4_1: d = (max - min) / 15, m = min.
fn quantize_q4_1(x: Weights32) -> Packed {
  let range = min_max32(x);
  let lo = range.x;
  let d = divide(range.y - lo, 15.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  var p: Packed;
  p.head = f32_to_f16_bits(d) | (f32_to_f16_bits(lo) << 16u);
  p.body[0] = nibble_word(q4_1_levels(x.s0, lo, id), q4_1_levels(x.s4, lo, id));
  p.body[1] = nibble_word(q4_1_levels(x.s1, lo, id), q4_1_levels(x.s5, lo, id));
  p.body[2] = nibble_word(q4_1_levels(x.s2, lo, id), q4_1_levels(x.s6, lo, id));
  p.body[3] = nibble_word(q4_1_levels(x.s3, lo, id), q4_1_levels(x.s7, lo, id));
  return p;
}

// q5_0 levels: min(31, (int8)(x*id + 16.5)).
fn q5_0_levels(v: vec4<f32>, id: f32) -> vec4<u32> {
  return bitcast<vec4<u32>>(min(trunc_to_int4(v * id + 16.5), vec4<i32>(31)));
}

// A q5 block's body from its levels, four weights at a time: qh (bit e = bit 4 of level e), then the
// low nibbles. lo_k / hi_k are the levels of weights 4k..4k+3 and 16+4k..16+4k+3.
fn q5_body(p: Packed, lo0: vec4<u32>, lo1: vec4<u32>, lo2: vec4<u32>, lo3: vec4<u32>,
           hi0: vec4<u32>, hi1: vec4<u32>, hi2: vec4<u32>, hi3: vec4<u32>) -> Packed {
  var q = p;
  q.body[0] = fifth_bits4(lo0) | (fifth_bits4(lo1) << 4u) | (fifth_bits4(lo2) << 8u) | (fifth_bits4(lo3) << 12u) |
              (fifth_bits4(hi0) << 16u) | (fifth_bits4(hi1) << 20u) | (fifth_bits4(hi2) << 24u) | (fifth_bits4(hi3) << 28u);
  q.body[1] = nibble_word(lo0, hi0);
  q.body[2] = nibble_word(lo1, hi1);
  q.body[3] = nibble_word(lo2, hi2);
  q.body[4] = nibble_word(lo3, hi3);
  return q;
}

// q5_0: d = (signed value of largest |x|) / -16.
fn quantize_q5_0(x: Weights32) -> Packed {
  let d = divide(signed_max32(x), -16.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  var p: Packed;
  p.head = f32_to_f16_bits(d);
  return q5_body(p, q5_0_levels(x.s0, id), q5_0_levels(x.s1, id), q5_0_levels(x.s2, id), q5_0_levels(x.s3, id),
                 q5_0_levels(x.s4, id), q5_0_levels(x.s5, id), q5_0_levels(x.s6, id), q5_0_levels(x.s7, id));
}

// q5_1 levels: (uint8)((x - min)*id + 0.5), with no clamp (ggml has none).
fn q5_1_levels(v: vec4<f32>, lo: f32, id: f32) -> vec4<u32> {
  return bitcast<vec4<u32>>(trunc_to_int4((v - lo) * id + 0.5)) & vec4<u32>(0xffu);
}

// q5_1: d = (max - min) / 31, m = min.
fn quantize_q5_1(x: Weights32) -> Packed {
  let range = min_max32(x);
  let lo = range.x;
  let d = divide(range.y - lo, 31.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  var p: Packed;
  p.head = f32_to_f16_bits(d) | (f32_to_f16_bits(lo) << 16u);
  return q5_body(p, q5_1_levels(x.s0, lo, id), q5_1_levels(x.s1, lo, id), q5_1_levels(x.s2, lo, id), q5_1_levels(x.s3, lo, id),
                 q5_1_levels(x.s4, lo, id), q5_1_levels(x.s5, lo, id), q5_1_levels(x.s6, lo, id), q5_1_levels(x.s7, lo, id));
}

// Four q8_0 bytes: roundf(x*id) (ties away from zero), as int8.
fn q8_0_word(v: vec4<f32>, id: f32) -> u32 {
  return pack4_bytes(bitcast<vec4<u32>>(trunc_to_int4(round_half_away4(v * id))));
}

// q8_0: d = max|x| / 127.
fn quantize_q8_0(x: Weights32) -> Packed {
  let amax = max(max(max(max4(abs(x.s0)), max4(abs(x.s1))), max(max4(abs(x.s2)), max4(abs(x.s3)))),
                 max(max(max4(abs(x.s4)), max4(abs(x.s5))), max(max4(abs(x.s6)), max4(abs(x.s7)))));
  let d = divide(amax, 127.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  var p: Packed;
  p.head = f32_to_f16_bits(d);
  p.body[0] = q8_0_word(x.s0, id);
  p.body[1] = q8_0_word(x.s1, id);
  p.body[2] = q8_0_word(x.s2, id);
  p.body[3] = q8_0_word(x.s3, id);
  p.body[4] = q8_0_word(x.s4, id);
  p.body[5] = q8_0_word(x.s5, id);
  p.body[6] = q8_0_word(x.s6, id);
  p.body[7] = q8_0_word(x.s7, id);
  return p;
}

// ---------------------------------------------------------------------------------------------------
// Importance-weighted encoders (quantize_row_<fmt>_impl): the scale searches of
// shaders/kquant-search.wgsl (the K-quants' own) on the block's 32 weights x and their importances
// w[j] = imatrix[col] * sqrt(sigma2 + x[j]^2), held in registers as two 16-value halves.

struct WeightedBlock {
  x: Sub,
  w: Sub,
}

// importance[first .. first + 4) as a vec4.
fn importance4(first: u32) -> vec4<f32> {
  return vec4<f32>(importance[first], importance[first + 1u], importance[first + 2u], importance[first + 3u]);
}

// w for four weights v of `row`, and whether one is below TINY_IMPORTANCE_WEIGHT where its importance is
// not 0 (a subnormal importance reads as nonzero on its bits, and a flushed product as 0).
struct Importance4 {
  w: vec4<f32>,
  tiny: bool,
}
fn importance_weights4(v: vec4<f32>, col: u32, row: u32) -> Importance4 {
  let imp = importance4(col);
  let w = imp * sqrt(sigma2[row] + v * v);
  let tiny = any(((bitcast<vec4<u32>>(imp) & vec4<u32>(0x7fffffffu)) != vec4<u32>(0u)) & !(w >= vec4<f32>(TINY_IMPORTANCE_WEIGHT)));
  return Importance4(w, tiny);
}

// Loads block `block` of row `row`, reports its status, and flags the row for the CPU where a weight or
// an importance weight is tiny (see the top of the file).
fn load_weighted_block(block: u32, row: u32) -> WeightedBlock {
  let p = block * 8u;
  let x = Sub(V16(weights4[p], weights4[p + 1u], weights4[p + 2u], weights4[p + 3u]),
              V16(weights4[p + 4u], weights4[p + 5u], weights4[p + 6u], weights4[p + 7u]));
  let bits = slice_status(x.lo.a, TINY_WEIGHTED_BITS) | slice_status(x.lo.b, TINY_WEIGHTED_BITS) |
             slice_status(x.lo.c, TINY_WEIGHTED_BITS) | slice_status(x.lo.d, TINY_WEIGHTED_BITS) |
             slice_status(x.hi.a, TINY_WEIGHTED_BITS) | slice_status(x.hi.b, TINY_WEIGHTED_BITS) |
             slice_status(x.hi.c, TINY_WEIGHTED_BITS) | slice_status(x.hi.d, TINY_WEIGHTED_BITS);
  report_status(bits, row);
  let col = (block - row * params.blocks_per_row) * QK;
  let w0 = importance_weights4(x.lo.a, col, row);
  let w1 = importance_weights4(x.lo.b, col + 4u, row);
  let w2 = importance_weights4(x.lo.c, col + 8u, row);
  let w3 = importance_weights4(x.lo.d, col + 12u, row);
  let w4 = importance_weights4(x.hi.a, col + 16u, row);
  let w5 = importance_weights4(x.hi.b, col + 20u, row);
  let w6 = importance_weights4(x.hi.c, col + 24u, row);
  let w7 = importance_weights4(x.hi.d, col + 28u, row);
  let tiny = w0.tiny || w1.tiny || w2.tiny || w3.tiny || w4.tiny || w5.tiny || w6.tiny || w7.tiny;
  if (tiny && params.guard_subnormals != 0u) {
    flag_row_for_cpu(row);
  }
  return WeightedBlock(x, Sub(V16(w0.w, w1.w, w2.w, w3.w), V16(w4.w, w5.w, w6.w, w7.w)));
}

// Levels of weights 4k..4k+3 (lo) and 16+4k..19+4k (hi) into qs word k and bits 4k.., 16+4k.. of qh.
fn pack_levels4(p: ptr<function, Packed>, qh: ptr<function, u32>, qs: u32, k: u32, lo: vec4<i32>, hi: vec4<i32>) {
  let l = bitcast<vec4<u32>>(lo);
  let h = bitcast<vec4<u32>>(hi);
  (*p).body[qs + k] = nibble_word(l, h);
  *qh |= (fifth_bits4(l) << (4u * k)) | (fifth_bits4(h) << (16u + 4u * k));
}

// A weighted block as Packed, from its scale d, minimum m (q4_1, q5_1) and levels (0..15 or 0..31).
fn packed_levels(format: u32, d: f32, m: f32, levels: SubLevels) -> Packed {
  var p: Packed;
  p.head = f32_to_f16_bits(d);
  if (has_min(format)) {
    p.head |= f32_to_f16_bits(m) << 16u;
  }
  let five_bits = format == Q5_0 || format == Q5_1;
  let qs = select(0u, 1u, five_bits);
  var qh = 0u;
  pack_levels4(&p, &qh, qs, 0u, levels.lo.a, levels.hi.a);
  pack_levels4(&p, &qh, qs, 1u, levels.lo.b, levels.hi.b);
  pack_levels4(&p, &qh, qs, 2u, levels.lo.c, levels.hi.c);
  pack_levels4(&p, &qh, qs, 3u, levels.lo.d, levels.hi.d);
  if (five_bits) {
    p.body[0] = qh;
  }
  return p;
}

// q4_0, q5_0: make_qx_quants (nmax 8, 16); q4_1, q5_1: make_qkx3_quants (nmax 15, 31; rmin -0.9, rdelta
// 0.05, 36 steps, squared error), as legacy.ts calls them.
fn quantize_weighted(format: u32, b: WeightedBlock) -> Packed {
  switch format {
    case Q4_0, Q5_0: {
      let fit = make_qx_quants_sub(select(16, 8, format == Q4_0), b.x, b.w, 2u);
      return packed_levels(format, fit.scale, 0.0, fit.levels);
    }
    default: {
      let nmax = select(31, 15, format == Q4_1);
      let fit = make_qkx_quants(nmax, b.x, b.w, 2u, no_fold(-0.9f), no_fold(0.05f), 36, false, true);
      return packed_levels(format, fit.scale, -fit.neg_min, fit.levels);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoder entry points: one unit per invocation.

// How many blocks unit `unit_index` holds: per_unit, fewer for the chunk's last, 0 past the end.
fn unit_block_count(unit_index: u32, format: u32) -> u32 {
  let first = unit_index * unit_blocks_of(format);
  return select(0u, min(unit_blocks_of(format), params.blocks - first), first < params.blocks);
}

fn quantize_ref(format: u32, block: u32) -> Packed {
  let x = load_weights32(block);
  switch format {
    case Q4_0: { return quantize_q4_0(x); }
    case Q4_1: { return quantize_q4_1(x); }
    case Q5_0: { return quantize_q5_0(x); }
    case Q5_1: { return quantize_q5_1(x); }
    default: { return quantize_q8_0(x); }
  }
}

fn encode_unit(unit_index: u32, format: u32) {
  let count = unit_block_count(unit_index, format);
  if (count == 0u) {
    return;
  }
  let first = unit_index * unit_blocks_of(format);
  let a = quantize_ref(format, first);
  var b: Packed;
  if (count == 2u) {
    b = quantize_ref(format, first + 1u);
  }
  store_unit(unit_index, format, a, b, count);
}

// A separate function from encode_unit so that the reference encoders do not use (and need not be
// given) bindings 4 and 5.
fn weighted_block(format: u32, block: u32) -> Packed {
  return quantize_weighted(format, load_weighted_block(block, block / params.blocks_per_row));
}

fn encode_unit_weighted(unit_index: u32, format: u32) {
  let count = unit_block_count(unit_index, format);
  if (count == 0u) {
    return;
  }
  let first = unit_index * unit_blocks_of(format);
  let a = weighted_block(format, first);
  var b: Packed;
  if (count == 2u) {
    b = weighted_block(format, first + 1u);
  }
  store_unit(unit_index, format, a, b, count);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_1);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_1);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q8_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q8_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_0_imatrix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit_weighted(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q4_1_imatrix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit_weighted(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_1);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_0_imatrix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit_weighted(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q5_1_imatrix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  encode_unit_weighted(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_1);
}

// sigma2 of quantize_row_<fmt>_impl, one invocation per row: the mean of x^2 over the whole row,
// summed in column order in f32 (the order decides the bits, so it is not a parallel reduction).
@compute @workgroup_size(WORKGROUP_SIZE)
fn row_sigma2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid;
  if (row >= params.rows) {
    return;
  }
  let x0 = row * params.cols;
  var sum_x2 = 0.0;
  for (var j = 0u; j < params.cols; j++) {
    let v = weights[x0 + j];
    sum_x2 = sum_x2 + v * v;
  }
  let sigma2_row = divide(sum_x2, f32(params.cols));
  sigma2_out[row] = sigma2_row;
  if (sum_x2 != 0.0 && sigma2_row < TINY_SIGMA2 && params.guard_subnormals != 0u) {
    flag_row_for_cpu(row);
  }
}

// q8_K: d = (signed value of largest |x|) / -127 kept as f32; q = min(127, nearest_int(x * -127/max)),
// stored as int8; bsums[g] = sum of the 16 stored values of group g. A 292-byte block is 73 whole
// words, so each invocation writes its block straight to `encoded`. An all-zero block gets d = 0 and
// q = 0; ggml leaves its bsums unwritten, we write their true value, 0 (as the CPU reference does).
fn q8_K_levels(v: vec4<f32>, iscale: f32) -> vec4<i32> {
  // |iscale*x| <= 127 unless -127/max overflowed; then nearest_int's bit trick decides and the int8
  // store wraps (the CPU reference does the same).
  let q = vec4<i32>(nearest_int(iscale * v.x), nearest_int(iscale * v.y), nearest_int(iscale * v.z), nearest_int(iscale * v.w));
  return bitcast<vec4<i32>>(bitcast<vec4<u32>>(min(q, vec4<i32>(127))) << vec4<u32>(24u)) >> vec4<u32>(24u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q8_K(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid;
  if (block >= params.blocks) {
    return;
  }
  let p0 = block * (QK_K / 4u);
  let w0 = block * 73u;
  var signed_max = 0.0;
  var bits = 0u;
  for (var i = 0u; i < QK_K / 4u; i++) {
    let v = weights4[p0 + i];
    signed_max = signed_max4(signed_max, v);
    bits |= slice_status(v, TINY_REF_BITS);
  }
  report_status(bits, block / params.blocks_per_row);
  if (signed_max == 0.0) {
    for (var i = 0u; i < 73u; i++) {
      encoded[w0 + i] = 0u;
    }
    return;
  }
  let iscale = divide(-127.0, signed_max);
  var bsum_pair = 0u;
  for (var g = 0u; g < QK_K / 16u; g++) {
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
      let q = q8_K_levels(weights4[p0 + 4u * g + k], iscale);
      encoded[w0 + 1u + 4u * g + k] = pack4_bytes(bitcast<vec4<u32>>(q));
      sum += q.x + q.y + q.z + q.w;
    }
    // bsums are int16, two to a word.
    bsum_pair |= (u32(sum) & 0xffffu) << (16u * (g & 1u));
    if ((g & 1u) == 1u) {
      encoded[w0 + 65u + g / 2u] = bsum_pair;
      bsum_pair = 0u;
    }
  }
  encoded[w0] = bitcast<u32>(divide(1.0, iscale));
}

// ---------------------------------------------------------------------------------------------------
// Decoders (dequantize_row_<fmt>): one block per invocation. Products of an fp16 scale and a small
// integer are exact in f32 and q*d + m rounds once, so fused or not the result is the CPU's.

// Block `block` of `format` read back into a Packed (any alignment: 4 bytes at any offset are two
// words funnel-shifted).
fn load_packed(format: u32, block: u32) -> Packed {
  let start = block * block_bytes_of(format);
  let last = arrayLength(&encoded_in) - 1u;
  var p: Packed;
  let head_word = encoded_in[start / 4u];
  p.head = select((head_word >> (8u * (start % 4u))) & 0xffffu, head_word, has_min(format));
  let body = start + select(2u, 4u, has_min(format));
  for (var k = 0u; k < body_words_of(format); k++) {
    let w = body / 4u + k;
    p.body[k] = unaligned_word(encoded_in[w], encoded_in[min(w + 1u, last)], body % 4u);
  }
  return p;
}

fn dequantize_q4_0(p: Packed, y4: u32) {
  let d = f16_bits_to_f32(p.head & 0xffffu);
  for (var k = 0u; k < 4u; k++) {
    let b = unpack4_bytes(p.body[k]);
    values4[y4 + k] = vec4<f32>(vec4<i32>(b & vec4<u32>(0x0fu)) - vec4<i32>(8)) * d;
    values4[y4 + 4u + k] = vec4<f32>(vec4<i32>(b >> vec4<u32>(4u)) - vec4<i32>(8)) * d;
  }
}

fn dequantize_q4_1(p: Packed, y4: u32) {
  let d = f16_bits_to_f32(p.head & 0xffffu);
  let m = f16_bits_to_f32(p.head >> 16u);
  for (var k = 0u; k < 4u; k++) {
    let b = unpack4_bytes(p.body[k]);
    values4[y4 + k] = vec4<f32>(b & vec4<u32>(0x0fu)) * d + m;
    values4[y4 + 4u + k] = vec4<f32>(b >> vec4<u32>(4u)) * d + m;
  }
}

// The 5th bits of weights 4k..4k+3 and 16+4k..16+4k+3, moved to bit 4.
fn fifth_bits_lo(qh: u32, k: u32) -> vec4<u32> {
  return ((vec4<u32>(qh) >> (vec4<u32>(4u * k) + vec4<u32>(0u, 1u, 2u, 3u))) << vec4<u32>(4u)) & vec4<u32>(0x10u);
}
fn fifth_bits_hi(qh: u32, k: u32) -> vec4<u32> {
  return (vec4<u32>(qh) >> (vec4<u32>(4u * k + 12u) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(0x10u);
}

fn dequantize_q5_0(p: Packed, y4: u32) {
  let d = f16_bits_to_f32(p.head & 0xffffu);
  let qh = p.body[0];
  for (var k = 0u; k < 4u; k++) {
    let b = unpack4_bytes(p.body[1u + k]);
    values4[y4 + k] = vec4<f32>(vec4<i32>((b & vec4<u32>(0x0fu)) | fifth_bits_lo(qh, k)) - vec4<i32>(16)) * d;
    values4[y4 + 4u + k] = vec4<f32>(vec4<i32>((b >> vec4<u32>(4u)) | fifth_bits_hi(qh, k)) - vec4<i32>(16)) * d;
  }
}

fn dequantize_q5_1(p: Packed, y4: u32) {
  let d = f16_bits_to_f32(p.head & 0xffffu);
  let m = f16_bits_to_f32(p.head >> 16u);
  let qh = p.body[0];
  for (var k = 0u; k < 4u; k++) {
    let b = unpack4_bytes(p.body[1u + k]);
    values4[y4 + k] = vec4<f32>((b & vec4<u32>(0x0fu)) | fifth_bits_lo(qh, k)) * d + m;
    values4[y4 + 4u + k] = vec4<f32>((b >> vec4<u32>(4u)) | fifth_bits_hi(qh, k)) * d + m;
  }
}

// Four int8 values of a word.
fn int8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(unpack4_bytes(w) << vec4<u32>(24u)) >> vec4<u32>(24u));
}

fn dequantize_q8_0(p: Packed, y4: u32) {
  let d = f16_bits_to_f32(p.head & 0xffffu);
  for (var k = 0u; k < 8u; k++) {
    values4[y4 + k] = int8x4(p.body[k]) * d;
  }
}

fn decode_block(block: u32, format: u32) {
  if (block >= params.blocks) {
    return;
  }
  let p = load_packed(format, block);
  let y4 = block * (QK / 4u);
  switch format {
    case Q4_0: { dequantize_q4_0(p, y4); }
    case Q4_1: { dequantize_q4_1(p, y4); }
    case Q5_0: { dequantize_q5_0(p, y4); }
    case Q5_1: { dequantize_q5_1(p, y4); }
    default: { dequantize_q8_0(p, y4); }
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q4_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  decode_block(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q4_1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  decode_block(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q4_1);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q5_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  decode_block(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_0);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q5_1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  decode_block(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q5_1);
}
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q8_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  decode_block(linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid, Q8_0);
}

// q8_K: y = d * q, d an f32 (one rounding, as in C).
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_q8_K(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid;
  if (block >= params.blocks) {
    return;
  }
  let w0 = block * 73u;
  let y4 = block * (QK_K / 4u);
  let d = bitcast<f32>(encoded_in[w0]);
  let d_bits = encoded_in[w0] & 0x7fffffffu;
  if (d_bits != 0u && d_bits < 0x00800000u && params.guard_subnormals != 0u) {
    flag_row_for_cpu(block / params.blocks_per_row); // a subnormal scale
  }
  for (var i = 0u; i < QK_K / 4u; i++) {
    values4[y4 + i] = d * int8x4(encoded_in[w0 + 1u + i]);
  }
}
