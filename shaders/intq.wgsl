// Plain round-to-nearest integer formats (int8/4/3/2, symmetric or asymmetric, per tensor, per row or per
// group of 32/64/128): a port of the CPU reference src/quant/intq.ts, whose layout comment this follows.
// Needs shaders/common/*.wgsl (f16.wgsl, bytes.wgsl, grid.wgsl).
//
// A "segment" is what one scale covers: a group of g weights, a row (per channel), or for per-tensor
// formats a row whose scale is the tensor's. Encoding (encode_segments) takes one "unit" of segments per
// invocation: as few consecutive segments as fill whole u32 words (1, 2 or 4: a 66-byte int4-g128 block
// pairs up, a 19-byte int4-asym-g32 block takes four), so no two invocations share a word. For each
// segment it finds the range [lo, hi] (lo <= 0 <= hi), the fp16 scale, its reciprocal and the zero point
// exactly as intGroupParams does, then writes header and codes through a little bit writer that stores
// each u32 word as it fills. Per-tensor formats first run row_ranges over every chunk; the CPU merges the
// rows' ranges and computes the one scale with intGroupParams itself, which encode_segments then uses.
// decode_codes: one invocation per weight reads its segment's header and its code's bits.
//
// Why the bytes equal the CPU's on any device: ranges are taken with integer comparisons on the float
// bits (exact, even where subnormals flush); the scale search compares exact products (fp16 * small
// integer); 1 / scale comes from a table the CPU computed, not from the `/` operator; x * inv is one correctly
// rounded product and round() is WGSL's round-half-to-even, as nearestInt of that product (no float
// addition that a compiler could fuse into an FMA); decoding's (u - z) * scale is exact in f32.
//
// Segments whose length is a multiple of 16 (every group; most rows) are read 16 weights per loop step
// through weights4, the same buffer bound again, with the arithmetic on vec4 lanes: far fewer steps per
// weight than the one-at-a-time loops that other row lengths take.
//
// Bindings, per entry point (weights and weights4 are the same buffer):
//   row_ranges        0 params | 1 weights | 2 segments_out | 3 flags | 5 weights4
//   encode_segments   0 params | 1 weights | 2 segments_in  | 3 flags | 4 encoded | 5 weights4 | 6 reciprocals
//   decode_codes      0 params | 1 encoded_in | 2 decoded

struct Params {
  count: u32,        // weights in this chunk (whole rows)
  seg_weights: u32,  // weights per segment: the group size, or cols (per channel / per tensor)
  seg_bytes: u32,    // bytes per segment in the encoded chunk: head + packed codes
  head: u32,         // header bytes per segment: 2 (scale) or 3 (scale, zero point); 0 per tensor
  bits: u32,         // 8, 4, 3 or 2
  asym: u32,         // 1: stored zero point, codes 0..L; 0: symmetric, codes 1..L around 2^(bits-1)
  one_scale: u32,    // 1 per tensor: every segment uses segments_in[0] (encode) or tensor_scale (decode)
  tensor_scale: u32, // per-tensor decode: scale fp16 bits | zero point << 16
  unit_segments: u32, // encode: segments per invocation, so that a unit fills whole words
}

// One segment's range and quantization parameters (4 words).
struct Segment {
  lo: u32,    // f32 bits of min(min x, 0)
  hi: u32,    // f32 bits of max(max x, 0)
  scale: u32, // scale fp16 bits | zero point << 16
  inv: u32,   // f32 bits of fround(1 / scale), 0 for a zero scale
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32 bit patterns, row-major (zero-padded to whole vec4s).
@group(0) @binding(1) var<storage, read> weights: array<u32>;
// Encoders: the same weights, four to an element.
@group(0) @binding(5) var<storage, read> weights4: array<vec4<u32>>;
// encode_segments: fround(1 / s) for every fp16 scale s (its bits are the index; entry 0 is 0), computed
// by the CPU once: a scale's reciprocal is one load, exact on any device, instead of a division.
@group(0) @binding(6) var<storage, read> reciprocals: array<f32>;
// row_ranges: each row's range (lo, hi; the rest 0).
@group(0) @binding(2) var<storage, read_write> segments_out: array<Segment>;
// Encoders: FLAG_* bits (kernel-chunks.ts ENCODER_FLAG), for input the CPU reference rejects.
@group(0) @binding(3) var<storage, read_write> flags: atomic<u32>;
// encode_segments, per tensor: the tensor's parameters (from the CPU) at index 0; unused otherwise.
@group(0) @binding(2) var<storage, read> segments_in: array<Segment>;
// encode_segments: the encoded chunk, as intq.ts lays it out (the last word zero-padded).
@group(0) @binding(4) var<storage, read_write> encoded: array<u32>;
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

// The value of fp16 bits h (0 <= h <= 0x7c00) as f32, without branches: a normal code's fields move into
// place (rebias 15 -> 127), a subnormal one is h * 2^-24 (exact).
fn f16_value(h: u32) -> f32 {
  let normal = bitcast<f32>((h + (112u << 10u)) << 13u);
  return select(normal, f32(h) * 5.9604644775390625e-8, h < 0x400u);
}

// The fp16 bits of the smallest fp16 >= t (t > 0 a normal f32), without branches: the 13 dropped bits
// round up; below 2^-14, ceil(t * 2^24) units of 2^-24 (the product is exact).
fn f16_ceil_bits(t: f32) -> u32 {
  let b = bitcast<u32>(t);
  let normal = ((b >> 13u) - (112u << 10u)) + select(0u, 1u, (b & 0x1fffu) != 0u);
  return select(normal, u32(ceil(t * 16777216.0)), b < 0x38800000u);
}

// fp16 bits of the smallest fp16 s with s * k >= range (intq.ts scaleF16Ceil; range > 0: the caller
// knows a zero range from the bits); above 65504 raises FLAG_SCALE_OVERFLOW. s * k is exact in f32 (an
// 11-bit significand times an integer below 256), so the comparisons are exact; the guess, the fp16
// ceiling of range / k, comes from a division that may be a few f32 ulps off, which can move it by one
// fp16 step at most: one check each way corrects it. A range below 2^-126 always takes the smallest fp16
// (2^-24): decided from the bits, since devices that flush subnormals would see such a range as 0.
fn scale_f16_ceil(range: f32, k: u32) -> u32 {
  if ((bitcast<u32>(range) & ~SIGN) < 0x00800000u) {
    return 1u;
  }
  let fk = f32(k);
  var h = min(f16_ceil_bits(range / fk), F16_MAX_BITS + 1u);
  h = select(h, h + 1u, f16_value(h) * fk < range);
  h = select(h, h - 1u, (h > 0u) & (f16_value(max(h, 1u) - 1u) * fk >= range));
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
  // fround(1 / scale), 0 for a zero scale: from the table of every fp16 scale's reciprocal.
  let inv = reciprocals[scale_bits];
  var zero = 1u << (params.bits - 1u);
  if (params.asym != 0u) {
    zero = u32(clamp(i32(round(-lo * inv)), 0, i32(largest)));
  }
  return Segment(lo_bits, r.pos, scale_bits | (zero << 16u), bitcast<u32>(inv));
}

// ---------------------------------------------------------------------------------------------------
// Encoders

// A range kept on 4 lanes (weights 4k + lane) with one max each, from the order of the bits:
//   pos: the largest bits as i32. Negative floats are negative i32, so this is the largest x >= 0.
//   neg: the largest bits as u32. Negative floats (sign bit set) are above every other, and among them
//        the larger magnitude has the larger bits: SIGN | (largest |x| of x < 0) when there is one.
// A NaN or inf makes one of them reach the exponent's all-ones, which range_of4 checks once at the end.
struct Range4 {
  pos: vec4<i32>,
  neg: vec4<u32>,
}

fn widen4(r: Range4, v: vec4<u32>) -> Range4 {
  return Range4(max(r.pos, bitcast<vec4<i32>>(v)), max(r.neg, v));
}

// The range of weights [start, start + n): 16 at a time (four 16-byte loads per step) when start and n
// are multiples of 16, else one at a time.
fn range_of(start: u32, n: u32) -> Range {
  if (n % 16u == 0u) {
    var r = Range4(vec4(0), vec4(0u));
    for (var k = start / 4u; k < (start + n) / 4u; k += 4u) {
      r = widen4(widen4(widen4(widen4(r, weights4[k]), weights4[k + 1u]), weights4[k + 2u]), weights4[k + 3u]);
    }
    let pos = u32(max(max(max(r.pos.x, r.pos.y), max(r.pos.z, r.pos.w)), 0));
    let top = max(max(r.neg.x, r.neg.y), max(r.neg.z, r.neg.w));
    let neg = select(0u, top & ~SIGN, top >= SIGN);
    if (pos >= EXPONENT_BITS || neg >= EXPONENT_BITS) {
      atomicOr(&flags, FLAG_NON_FINITE);
    }
    return Range(pos, neg);
  }
  var r = Range(0u, 0u);
  for (var i = start; i < start + n; i++) {
    r = widen(r, weights[i]);
  }
  return r;
}

// The codes of 4 weights, packed little-endian into 4 * bits bits.
fn codes4(v: vec4<u32>, inv: f32, zero: i32, smallest: i32, largest: i32) -> u32 {
  let b = params.bits;
  let c = vec4<u32>(clamp(vec4<i32>(round(bitcast<vec4<f32>>(v) * inv)) + vec4(zero), vec4(smallest), vec4(largest)));
  return c.x | (c.y << b) | (c.z << (2u * b)) | (c.w << (3u * b));
}

// Per tensor, pass 1: one invocation per row, its range only.
@compute @workgroup_size(WORKGROUP_SIZE)
fn row_ranges(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let start = row * params.seg_weights;
  if (start < params.count) {
    let r = range_of(start, params.seg_weights);
    segments_out[row] = Segment(range_lo(r), r.pos, 0u, 0u);
  }
}

// A bit writer over `encoded`: values (up to 32 bits) go in above the bits already in a u32 accumulator;
// each full word is stored.
var<private> out_acc: u32;
var<private> out_fill: u32; // bits in out_acc (< 32)
var<private> out_word: u32; // where the next full word goes

fn put_bits(value: u32, width: u32) {
  out_acc |= value << out_fill;
  out_fill += width;
  if (out_fill >= 32u) {
    encoded[out_word] = out_acc;
    out_word += 1u;
    out_fill -= 32u;
    // The bits of value that did not fit (none when it ended exactly on the word).
    out_acc = select(0u, value >> (width - out_fill), out_fill > 0u);
  }
}

// Zero bits up to the next byte (the end of a segment's codes).
fn pad_to_byte() {
  let partial = out_fill % 8u;
  if (partial != 0u) {
    put_bits(0u, 8u - partial);
  }
}

// One invocation per unit of params.unit_segments segments (the last one of the chunk may be short).
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_segments(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let unit = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let segments = params.count / params.seg_weights;
  let first = unit * params.unit_segments;
  if (first >= segments) {
    return;
  }
  out_acc = 0u;
  out_fill = 0u;
  out_word = unit * params.unit_segments * params.seg_bytes / 4u;
  let largest = i32((1u << params.bits) - 1u);
  let smallest = select(1, 0, params.asym != 0u); // symmetric codes leave 0 unused
  for (var seg = first; seg < min(first + params.unit_segments, segments); seg++) {
    let start = seg * params.seg_weights;
    var s: Segment;
    if (params.one_scale != 0u) {
      s = segments_in[0];
    } else {
      s = segment_of(range_of(start, params.seg_weights));
    }
    // Header: scale fp16 @0, zero point @2 (asymmetric); none per tensor (the CPU writes it once).
    if (params.head > 0u) {
      put_bits(s.scale & 0xffffu, 16u);
      if (params.asym != 0u) {
        put_bits(s.scale >> 16u, 8u);
      }
    }
    // Codes: clamp(round(x * inv) + z, umin, L) (intq.ts encodeIntCodes), bits little-endian.
    let inv = bitcast<f32>(s.inv);
    let zero = i32(s.scale >> 16u);
    if (params.seg_weights % 16u == 0u) {
      let width = 4u * params.bits;
      for (var k = start / 4u; k < (start + params.seg_weights) / 4u; k += 4u) {
        put_bits(codes4(weights4[k], inv, zero, smallest, largest), width);
        put_bits(codes4(weights4[k + 1u], inv, zero, smallest, largest), width);
        put_bits(codes4(weights4[k + 2u], inv, zero, smallest, largest), width);
        put_bits(codes4(weights4[k + 3u], inv, zero, smallest, largest), width);
      }
    } else {
      for (var i = start; i < start + params.seg_weights; i++) {
        let code = clamp(i32(round(bitcast<f32>(weights[i]) * inv)) + zero, smallest, largest);
        put_bits(u32(code), params.bits);
      }
    }
    pad_to_byte();
  }
  // A short last unit ends inside a word: store it, zero-padded.
  if (out_fill > 0u) {
    encoded[out_word] = out_acc;
  }
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
