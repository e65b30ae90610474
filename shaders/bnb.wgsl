// bitsandbytes-style formats: NF4 and FP4 (4-bit codes in blocks of 64 over the flattened tensor, an f32
// absmax per block) and LLM.int8 (int8 per row with the row's absmax, SCB). A port of the CPU reference
// src/quant/bnb.ts, whose layout comment this follows. Needs shaders/common/*.wgsl (bytes.wgsl, grid.wgsl,
// division.wgsl). The double-quantized variants (nf4-dq, fp4-dq) run these same kernels: their absmax
// compression is a small CPU step over the GPU's absmax values (src/gpu/bnb.ts).
//
// NF4/FP4 codes: bitsandbytes picks them with decision trees of strict `v > pivot` tests over sorted
// codes: a step function of v (NF4) or of |v| with the sign added as 8 when v < 0 (FP4). Here its domain
// is cut into cells of 1/16 (NF4: [-1, 1], 32 cells; FP4: [0, 1], 16 cells), each holding at most one
// pivot, so v's code is the cell's lower code, or its upper one when v is above the cell's pivot: one
// multiply to find the cell and one comparison. The table is not written here: src/gpu/bnb.ts derives it
// from bnb.ts's own quantizeNf4 / quantizeFp4 (their pivots found by bisection) and checks that no pivot
// sits within float32 rounding of a cell edge, where the cell found could be the neighbour's.
//
// Exactness on any device: absmax values are compared as integers (bits); scales come from div_f32_exact
// (division.wgsl), not `/`; v = x * inv and CODE * absmax are single correctly rounded products; int8
// codes use round() (round half to even, as ggml's nearestInt of the same product). Devices may flush
// subnormal floats to zero (SwiftShader does): a block or row where a weight, a product or a scale could
// be subnormal is not computed here but listed in `hard` (rare: magnitudes below ~2^-100 or ratios past
// 2^120), and src/gpu/bnb.ts computes those with the CPU reference's own block and row functions.
//
// Bindings, per entry point:
//   encode_4bit       0 params | 2 codes_out | 3 absmax_out | 4 flags | 5 hard | 6 table | 8 weights4
//   decode_4bit       0 params | 1 codes_in | 2 absmax_in | 3 decoded | 6 table
//   int8_row_scales   0 params | 1 weights | 3 rows_out | 4 flags | 5 hard | 8 weights4
//   pack_int8         0 params | 1 weights | 2 codes_out | 7 rows_in | 8 weights4
//   encode_int8_rows  0 params | 1 weights | 2 codes_out | 3 rows_out | 4 flags | 5 hard | 8 weights4
//   decode_int8       0 params | 1 codes_in | 3 decoded | 7 rows_in
// (weights and weights4 are the same buffer.)

struct Params {
  count: u32, // weights in this chunk (4-bit encode: the buffer is zero-padded to whole blocks)
  cols: u32,  // LLM.int8: weights per row
  fp4: u32,   // 4-bit: 1 for FP4 (sign + magnitude codes), 0 for NF4
  rcp_127: u32, // LLM.int8 decode: f32 bits of bnb.ts's 1/127 constant (from the TS side, not folded)
}

// The code tables of the format in use (src/gpu/bnb.ts fills them from bnb.ts):
struct Table {
  offset: f32,                 // cell of a: (a + offset) * 16 (NF4: 1, FP4: 0)
  last_cell: f32,              // 31 (NF4) or 15 (FP4)
  cell_pivot: array<f32, 32>,  // the pivot inside the cell (a huge value where there is none)
  cell_codes: array<u32, 32>,  // the cell's code at and below its pivot | the code above it << 4
  values: array<f32, 16>,      // code -> its value (NF4_CODE / FP4_CODE)
}

// LLM.int8, per row: SCB (f32 bits of the row's absmax) and fround(127 / SCB) (f32 bits).
struct RowScale {
  scb: u32,
  scale: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights as float32 bit patterns; weights4 is the same buffer bound again, four
// weights to an element (the 4-bit chunk is zero-padded to whole blocks).
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(8) var<storage, read> weights4: array<vec4<u32>>;
// Encoders: the codes (4-bit: element e in byte e/2, the HIGH nibble for even e; int8: one byte each).
@group(0) @binding(2) var<storage, read_write> codes_out: array<u32>;
// encode_4bit: each block's absmax, as f32 bits.
@group(0) @binding(3) var<storage, read_write> absmax_out: array<u32>;
// int8_row_scales: each row's scale.
@group(0) @binding(3) var<storage, read_write> rows_out: array<RowScale>;
// Encoders: FLAG_* bits (kernel-chunks.ts ENCODER_FLAG), for weights the CPU reference rejects.
@group(0) @binding(4) var<storage, read_write> flags: atomic<u32>;
// Encoders: hard[0] counts the blocks (rows) left to the CPU; hard[1..] lists them.
@group(0) @binding(5) var<storage, read_write> hard: array<atomic<u32>>;
// 4-bit: the code tables.
@group(0) @binding(6) var<storage, read> table: Table;
// pack_int8, decode_int8: each row's scale.
@group(0) @binding(7) var<storage, read> rows_in: array<RowScale>;
// Decoders: the codes.
@group(0) @binding(1) var<storage, read> codes_in: array<u32>;
// decode_4bit: each block's absmax (for nf4-dq / fp4-dq, as the CPU reconstructed it).
@group(0) @binding(2) var<storage, read> absmax_in: array<f32>;
// Decoders: the decoded weights, float32.
@group(0) @binding(3) var<storage, read_write> decoded: array<f32>;

const WORKGROUP_SIZE = 64u;
const BLOCK = 64u; // bnb.ts BNB_BLOCK
const MAGNITUDE = 0x7fffffffu;
const EXPONENT_BITS = 0x7f800000u;
const FLAG_NON_FINITE = 1u; // kernel-chunks.ts ENCODER_FLAG

fn biased_exponent(bits: u32) -> u32 {
  return (bits >> 23u) & 0xffu;
}

// Puts block (or row) k on the list the CPU finishes.
fn leave_to_cpu(k: u32) {
  let slot = atomicAdd(&hard[0], 1u);
  atomicStore(&hard[slot + 1u], k);
}

// The largest |x| bits of weights [start, end) (16 at a time when both are multiples of 16), raising
// FLAG_NON_FINITE for NaN and +-inf. Non-negative floats order as their bits, so this is exact where float
// comparisons would flush; a NaN or inf is the largest of all, so one check at the end finds it.
fn absmax_bits(start: u32, end: u32) -> u32 {
  var m = 0u;
  if ((start | end) % 16u == 0u) {
    var m4 = vec4(0u);
    for (var k = start / 4u; k < end / 4u; k += 4u) {
      m4 = max(max(m4, weights4[k] & vec4(MAGNITUDE)), max(weights4[k + 1u] & vec4(MAGNITUDE), weights4[k + 2u] & vec4(MAGNITUDE)));
      m4 = max(m4, weights4[k + 3u] & vec4(MAGNITUDE));
    }
    m = max(max(m4.x, m4.y), max(m4.z, m4.w));
  } else {
    for (var i = start; i < end; i++) {
      m = max(m, weights[i] & MAGNITUDE);
    }
  }
  if (m >= EXPONENT_BITS) {
    atomicOr(&flags, FLAG_NON_FINITE);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------
// NF4 / FP4

// The 4-bit codes of v = fround(x / absmax) on 4 lanes (bnb.ts quantizeNf4 / quantizeFp4).
fn quantize4(v: vec4<f32>) -> vec4<u32> {
  var a = v;
  var sign = vec4(0u);
  if (params.fp4 != 0u) {
    a = abs(v);
    sign = select(vec4(0u), vec4(8u), v < vec4(0.0));
  }
  let cell = vec4<u32>(clamp((a + vec4(table.offset)) * 16.0, vec4(0.0), vec4(table.last_cell)));
  let pivot = vec4(table.cell_pivot[cell.x], table.cell_pivot[cell.y], table.cell_pivot[cell.z], table.cell_pivot[cell.w]);
  let codes = vec4(table.cell_codes[cell.x], table.cell_codes[cell.y], table.cell_codes[cell.z], table.cell_codes[cell.w]);
  return select(codes & vec4(15u), codes >> vec4(4u), a > pivot) | sign;
}

// 4 codes as 2 bytes: weights 2k (high nibble) and 2k + 1 (low nibble) in byte k.
fn nibble_bytes(c: vec4<u32>) -> u32 {
  return ((c.x << 4u) | c.y) | (((c.z << 4u) | c.w) << 8u);
}

// The absmax of 4 lanes, the smallest non-zero exponent, and whether a NaN or inf was seen.
struct Scan4 {
  amax: vec4<u32>,
  smallest_exponent: vec4<u32>,
  non_finite: bool,
}

fn scan4(s: Scan4, bits: vec4<u32>) -> Scan4 {
  let a = bits & vec4(MAGNITUDE);
  let finite = a < vec4(EXPONENT_BITS);
  let exponent = (a >> vec4(23u)) & vec4(0xffu);
  return Scan4(
    max(s.amax, select(vec4(0u), a, finite)),
    min(s.smallest_exponent, select(vec4(255u), exponent, finite & (a != vec4(0u)))),
    s.non_finite || !all(finite),
  );
}

// One invocation per block of 64 (the chunk is zero-padded to whole blocks; zeros change neither the
// absmax nor the check below): its absmax, then its 32 code bytes as 8 whole words (a block's codes never
// share a word with another block's). 16 weights per loop step, on vec4 lanes.
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_4bit(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let block = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  if (block * BLOCK >= params.count) {
    return;
  }
  let first = block * (BLOCK / 4u); // in weights4
  var s = Scan4(vec4(0u), vec4(255u), false);
  for (var k = first; k < first + BLOCK / 4u; k += 4u) {
    s = scan4(scan4(scan4(scan4(s, weights4[k]), weights4[k + 1u]), weights4[k + 2u]), weights4[k + 3u]);
  }
  if (s.non_finite) {
    atomicOr(&flags, FLAG_NON_FINITE);
  }
  let amax = max(max(s.amax.x, s.amax.y), max(s.amax.z, s.amax.w));
  let smallest_exponent = min(min(s.smallest_exponent.x, s.smallest_exponent.y), min(s.smallest_exponent.z, s.smallest_exponent.w));
  absmax_out[block] = amax;
  // Where float arithmetic could meet a subnormal: a subnormal weight, a weight more than 2^120 below the
  // absmax (x / absmax near the subnormal range), or an absmax so large that its reciprocal is subnormal
  // (>= 2^126). (An FP4 code's sign is fround(x / absmax) < 0: a flushed product would lose it.)
  let amax_exponent = biased_exponent(amax);
  let exotic = amax != 0u && (smallest_exponent == 0u || amax_exponent - smallest_exponent > 120u || amax_exponent >= 253u);
  if (exotic) {
    leave_to_cpu(block);
    return;
  }
  // bnb.ts: inv = fround(1 / absmax), 0 for an all-zero block.
  var inv = 0.0;
  if (amax != 0u) {
    inv = div_f32_exact(1.0, bitcast<f32>(amax));
  }
  for (var w = 0u; w < BLOCK / 8u; w++) {
    let low = quantize4(bitcast<vec4<f32>>(weights4[first + 2u * w]) * inv);
    let high = quantize4(bitcast<vec4<f32>>(weights4[first + 2u * w + 1u]) * inv);
    codes_out[block * (BLOCK / 8u) + w] = nibble_bytes(low) | (nibble_bytes(high) << 16u);
  }
}

// One invocation per weight: CODE[code] * absmax (bnb.ts decode4bitBlock).
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_4bit(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let e = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  if (e >= params.count) {
    return;
  }
  let byte = byte_of(codes_in[e / 8u], e / 2u);
  let code = select(byte & 0xfu, byte >> 4u, (e & 1u) == 0u);
  decoded[e] = table.values[code] * absmax_in[e / BLOCK];
}

// ---------------------------------------------------------------------------------------------------
// LLM.int8

// One invocation per row: SCB = max |x| (integer max of the bits: exact), scale = 127 / SCB. Rows with SCB
// below 2^-87 (where 127 / SCB overflows, or x * scale of a subnormal x could reach 0.5) or past 2^120 go
// to the CPU.
@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_row_scales(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let start = row * params.cols;
  if (start >= params.count) {
    return;
  }
  rows_out[row] = row_scale(row, absmax_bits(start, start + params.cols));
}

// SCB and scale of a row from its absmax bits; rows whose arithmetic could meet subnormals or overflow go
// on the CPU's list.
fn row_scale(row: u32, scb: u32) -> RowScale {
  var scale = 0.0; // a zero row: codes 0 (bitsandbytes would divide by 0)
  if (scb != 0u) {
    let exponent = biased_exponent(scb);
    if (exponent < 40u || exponent > 247u) {
      leave_to_cpu(row);
    }
    scale = div_f32_exact(127.0, bitcast<f32>(scb));
  }
  return RowScale(scb, bitcast<u32>(scale));
}

// The int8 code of x with its row's scale: round(x * scale) clamped to [-127, 127], as a byte.
fn int8_code(x: u32, scale: f32) -> u32 {
  return bitcast<u32>(clamp(i32(round(bitcast<f32>(x) * scale)), -127, 127)) & 0xffu;
}

// Rows of a multiple of 16 weights in one pass: one invocation per row finds SCB and the scale, then packs
// the row's codes, 16 weights per step (rows start on whole words).
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_int8_rows(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  let start = row * params.cols;
  if (start >= params.count) {
    return;
  }
  let s = row_scale(row, absmax_bits(start, start + params.cols));
  rows_out[row] = s;
  let scale = bitcast<f32>(s.scale);
  for (var k = start / 4u; k < (start + params.cols) / 4u; k++) {
    let v = weights4[k];
    codes_out[k] = int8_code(v.x, scale) | (int8_code(v.y, scale) << 8u) | (int8_code(v.z, scale) << 16u) | (int8_code(v.w, scale) << 24u);
  }
}

// One invocation per output word: 4 int8 codes. Where rows hold whole words (cols a multiple of 4) the
// word's weights are one 16-byte load of one row.
@compute @workgroup_size(WORKGROUP_SIZE)
fn pack_int8(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  if (4u * w >= params.count) {
    return;
  }
  if (params.cols % 4u == 0u) {
    let scale = bitcast<f32>(rows_in[4u * w / params.cols].scale);
    let v = weights4[w];
    codes_out[w] = int8_code(v.x, scale) | (int8_code(v.y, scale) << 8u) | (int8_code(v.z, scale) << 16u) | (int8_code(v.w, scale) << 24u);
    return;
  }
  var word = 0u;
  for (var k = 0u; k < 4u; k++) {
    let e = 4u * w + k;
    if (e < params.count) {
      word |= int8_code(weights[e], bitcast<f32>(rows_in[e / params.cols].scale)) << (8u * k);
    }
  }
  codes_out[w] = word;
}

// One invocation per weight: fround(fround(q * SCB) * fround(1/127)) (bnb.ts decodeInt8Row).
@compute @workgroup_size(WORKGROUP_SIZE)
fn decode_int8(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let e = linear_workgroup(group, groups) * WORKGROUP_SIZE + lane;
  if (e >= params.count) {
    return;
  }
  let q = sign_extend_8(byte_of(codes_in[e / 4u], e));
  let scb = bitcast<f32>(rows_in[e / params.cols].scb);
  decoded[e] = (f32(q) * scb) * bitcast<f32>(params.rcp_127);
}
