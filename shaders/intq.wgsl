// Plain round-to-nearest integer formats (int8/4/3/2, symmetric or asymmetric, per tensor, per row or per
// group of 32/64/128): a port of the CPU reference src/quant/intq.ts, whose layout comment this follows.
// Needs shaders/common/*.wgsl (f16.wgsl, bytes.wgsl, grid.wgsl, division.wgsl).
//
// A "segment" is what one scale covers: a group of g weights, a row (per channel), or for per-tensor
// formats a row whose scale is the tensor's. Encoding is two passes:
//   1. segment_params (one invocation per segment) finds the segment's range [lo, hi] (lo <= 0 <= hi)
//      and, from it, the fp16 scale, its reciprocal and the zero point, exactly as intGroupParams does. Per-tensor formats read only the rows' ranges: the
//      CPU merges them over the whole tensor and computes the one scale with intGroupParams itself.
//   2. pack_codes: one invocation per output u32 word assembles the word's 4 bytes: header bytes (scale,
//      zero point) or code bytes, each code recomputed from its weight, so no two invocations share a word
//      even where 3-bit codes straddle bytes.
// decode_codes: one invocation per weight reads its segment's header and its code's bits.
//
// Why the bytes equal the CPU's on any device: ranges are taken with integer comparisons on the float
// bits (exact, even where subnormals flush); the scale search compares exact products (fp16 * small
// integer); 1 / scale is div_f32_exact (division.wgsl), not the `/` operator; x * inv is one correctly
// rounded product and round() is WGSL's round-half-to-even, as nearestInt of that product (no float
// addition that a compiler could fuse into an FMA); decoding's (u - z) * scale is exact in f32.
//
// Bindings, per entry point:
//   segment_params   0 params | 1 weights | 2 segments_out | 3 flags
//   pack_codes       0 params | 1 weights | 2 segments_in  | 3 encoded
//   decode_codes     0 params | 1 encoded_in | 2 decoded

struct Params {
  count: u32,        // weights in this chunk (whole rows)
  seg_weights: u32,  // weights per segment: the group size, or cols (per channel / per tensor)
  seg_bytes: u32,    // bytes per segment in the encoded chunk: head + packed codes
  head: u32,         // header bytes per segment: 2 (scale) or 3 (scale, zero point); 0 per tensor
  bits: u32,         // 8, 4, 3 or 2
  asym: u32,         // 1: stored zero point, codes 0..L; 0: symmetric, codes 1..L around 2^(bits-1)
  one_scale: u32,    // 1 per tensor: every segment uses segments_in[0] (encode) or tensor_scale (decode)
  tensor_scale: u32, // per-tensor decode: scale fp16 bits | zero point << 16
}

// One segment's range and quantization parameters (4 words).
struct Segment {
  lo: u32,    // f32 bits of min(min x, 0)
  hi: u32,    // f32 bits of max(max x, 0)
  scale: u32, // scale fp16 bits | zero point << 16
  inv: u32,   // f32 bits of fround(1 / scale), 0 for a zero scale
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32 bit patterns, row-major.
@group(0) @binding(1) var<storage, read> weights: array<u32>;
// Pass 1: each segment's range and parameters.
@group(0) @binding(2) var<storage, read_write> segments_out: array<Segment>;
// Pass 1: FLAG_* bits (kernel-chunks.ts ENCODER_FLAG), for input the CPU reference rejects.
@group(0) @binding(3) var<storage, read_write> flags: atomic<u32>;
// Pass 2: the segments' parameters from pass 1 (or the tensor's, from the CPU, at index 0).
@group(0) @binding(2) var<storage, read> segments_in: array<Segment>;
// Pass 2: the encoded chunk, as intq.ts lays it out (the last word zero-padded).
@group(0) @binding(3) var<storage, read_write> encoded: array<u32>;
// Decoder: the encoded chunk.
@group(0) @binding(1) var<storage, read> encoded_in: array<u32>;
// Decoder: the decoded weights, float32.
@group(0) @binding(2) var<storage, read_write> decoded: array<f32>;

const WORKGROUP_SIZE = 64u;
const SIGN = 0x80000000u;
const EXPONENT_BITS = 0x7f800000u;
const F16_MAX_BITS = 0x7bffu; // 65504, the largest fp16
const FLAG_NON_FINITE = 1u;   // kernel-chunks.ts ENCODER_FLAG
const FLAG_SCALE_OVERFLOW = 2u;

// ---------------------------------------------------------------------------------------------------
// Ranges, as integers: the largest positive value and the largest negative magnitude, compared on their
// bits (for non-negative floats the bits' unsigned order is the value order), so exact in any order and
// where subnormals flush.

struct Range {
  pos: u32, // bits of the largest x >= 0 (0: none)
  neg: u32, // bits of the largest |x| among x < 0 (0: none)
}

// Folds weight bits into the range; raises FLAG_NON_FINITE for NaN and +-inf.
fn widen(r: Range, bits: u32) -> Range {
  if ((bits & EXPONENT_BITS) == EXPONENT_BITS) {
    atomicOr(&flags, FLAG_NON_FINITE);
    return r;
  }
  if ((bits & SIGN) == 0u) {
    return Range(max(r.pos, bits), r.neg);
  }
  return Range(r.pos, max(r.neg, bits & ~SIGN));
}

// lo = min(min x, 0) and hi = max(max x, 0) as f32 bits; lo is +0 when no weight is negative, as on the CPU.
fn range_lo(r: Range) -> u32 {
  return select(r.neg | SIGN, 0u, r.neg == 0u);
}

// ---------------------------------------------------------------------------------------------------
// Parameters (intq.ts scaleF16Ceil and intGroupParams)

// fp16 bits of the smallest fp16 s with s * k >= range (0 for a zero range, which the caller knows from
// the bits); above 65504 raises FLAG_SCALE_OVERFLOW. The first guess needs no exact division: the two
// loops correct it, and s * k is exact in f32 (an 11-bit significand times an integer below 256), so each
// comparison is exact. A range below 2^-126 always takes the smallest fp16 (2^-24): decided here from
// the bits, since devices that flush subnormals would see such a range as 0.
fn scale_f16_ceil(range: f32, k: u32) -> u32 {
  if ((bitcast<u32>(range) & ~SIGN) < 0x00800000u) {
    return 1u;
  }
  let fk = f32(k);
  var h = min(f32_to_f16_bits(range / fk), F16_MAX_BITS);
  while (h <= F16_MAX_BITS && f16_bits_to_f32(h) * fk < range) {
    h++;
  }
  while (h > 0u && f16_bits_to_f32(h - 1u) * fk >= range) {
    h--;
  }
  if (h > F16_MAX_BITS) {
    atomicOr(&flags, FLAG_SCALE_OVERFLOW);
    return F16_MAX_BITS;
  }
  return h;
}

fn segment_of(r: Range) -> Segment {
  let lo_bits = range_lo(r);
  let lo = bitcast<f32>(lo_bits);
  let hi = bitcast<f32>(r.pos);
  let largest = (1u << params.bits) - 1u; // L
  var scale_bits = 0u; // an all-zero segment: scale 0, inv 0
  if (r.pos != 0u || r.neg != 0u) {
    if (params.asym != 0u) {
      // hi - lo adds two magnitudes: it is at least the larger one, so never subnormal unless both are.
      scale_bits = scale_f16_ceil(hi - lo, largest);
    } else {
      // max(hi, -lo), compared as magnitudes' bits (intq.ts: hi > -lo ? hi : -lo).
      scale_bits = scale_f16_ceil(bitcast<f32>(max(r.pos, r.neg)), (1u << (params.bits - 1u)) - 1u); // Q
    }
  }
  let scale = f16_bits_to_f32(scale_bits);
  var inv = 0.0;
  if (scale_bits != 0u) {
    inv = div_f32_exact(1.0, scale);
  }
  var zero = 1u << (params.bits - 1u);
  if (params.asym != 0u) {
    zero = u32(clamp(i32(round(-lo * inv)), 0, i32(largest)));
  }
  return Segment(lo_bits, r.pos, scale_bits | (zero << 16u), bitcast<u32>(inv));
}

// ---------------------------------------------------------------------------------------------------
// Pass 1

// One invocation per segment (a group, or a row): its range, then its parameters. A row is scanned by one
// invocation too: rows are many where they are long, and a single pass keeps the range exact and simple.
@compute @workgroup_size(WORKGROUP_SIZE)
fn segment_params(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let seg = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let start = seg * params.seg_weights;
  if (start >= params.count) {
    return;
  }
  var r = Range(0u, 0u);
  for (var i = start; i < start + params.seg_weights; i++) {
    r = widen(r, weights[i]);
  }
  if (params.one_scale != 0u) {
    // Per tensor: only the range counts here (the CPU derives the tensor's one scale from all rows).
    segments_out[seg] = Segment(range_lo(r), r.pos, 0u, 0u);
  } else {
    segments_out[seg] = segment_of(r);
  }
}

// ---------------------------------------------------------------------------------------------------
// Pass 2

// Code i (0 <= i < seg_weights) of segment seg: clamp(round(x * inv) + z, umin, L) (intq.ts encodeIntCodes).
fn code_of(seg: u32, s: Segment, i: u32) -> u32 {
  let x = bitcast<f32>(weights[seg * params.seg_weights + i]);
  let zero = i32(s.scale >> 16u);
  let umin = select(1, 0, params.asym != 0u);
  let largest = i32((1u << params.bits) - 1u);
  return u32(clamp(i32(round(x * bitcast<f32>(s.inv))) + zero, umin, largest));
}

// Byte `at` of the encoded chunk.
fn encoded_byte(at: u32) -> u32 {
  let seg = at / params.seg_bytes;
  let offset = at % params.seg_bytes;
  let s = segments_in[select(seg, 0u, params.one_scale != 0u)];
  if (offset < params.head) {
    // Header: scale fp16 (little-endian) at 0, zero point at 2.
    return select((s.scale >> (8u * offset)) & 0xffu, s.scale >> 16u, offset == 2u);
  }
  // Code byte j holds stream bits [8j, 8j + 8): codes first..last, clipped to the segment (the last byte
  // of a segment's codes is zero-padded).
  let j = offset - params.head;
  let first = (8u * j) / params.bits;
  let last = min((8u * j + 7u) / params.bits, params.seg_weights - 1u);
  var byte = 0u;
  for (var i = first; i <= last; i++) {
    let code = code_of(seg, s, i);
    let bit = i * params.bits; // where the code starts in the stream; may be before this byte
    if (bit >= 8u * j) {
      byte |= code << (bit - 8u * j);
    } else {
      byte |= code >> (8u * j - bit);
    }
  }
  return byte & 0xffu;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn pack_codes(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let total = (params.count / params.seg_weights) * params.seg_bytes;
  if (4u * w >= total) {
    return;
  }
  var word = 0u;
  for (var k = 0u; k < 4u && 4u * w + k < total; k++) {
    word |= encoded_byte(4u * w + k) << (8u * k);
  }
  encoded[w] = word;
}

// ---------------------------------------------------------------------------------------------------
// Decoder

fn encoded_in_byte(at: u32) -> u32 {
  return byte_of(encoded_in[at / 4u], at);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_codes(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let e = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  if (e >= params.count) {
    return;
  }
  let seg = e / params.seg_weights;
  let i = e % params.seg_weights;
  let base = seg * params.seg_bytes;
  var scale_bits = params.tensor_scale & 0xffffu;
  var zero = params.tensor_scale >> 16u;
  if (params.one_scale == 0u) {
    scale_bits = encoded_in_byte(base) | (encoded_in_byte(base + 1u) << 8u);
    zero = select(1u << (params.bits - 1u), encoded_in_byte(base + 2u), params.asym != 0u);
  }
  // Code i: stream bits [i*bits, i*bits + bits), possibly across two bytes (intq.ts unpackCode).
  let bit = i * params.bits;
  let at = base + params.head + bit / 8u;
  let shift = bit % 8u;
  var code = encoded_in_byte(at) >> shift;
  if (shift + params.bits > 8u) {
    code |= encoded_in_byte(at + 1u) << (8u - shift);
  }
  code &= (1u << params.bits) - 1u;
  decoded[e] = f32(i32(code) - i32(zero)) * f16_bits_to_f32(scale_bits);
}
