// llama.cpp's legacy block formats q4_0, q4_1, q5_0, q5_1, q8_0 and q8_K: encoders (ggml's
// quantize_row_<fmt>_ref, and quantize_row_<fmt>_impl with an importance matrix) and decoders
// (dequantize_row_<fmt>). Ports of src/quant/ggml/legacy.ts, which is bit-exact with ggml: every float
// operation is one f32 operation in the same order. The reference encoders divide with div_f32_exact
// (correctly rounded on any device); the weighted ones search with many divisions and sums, and need a
// device that rounds / and sqrt correctly and does not fuse a*b+c (src/gpu/float-probe.ts checks;
// SwiftShader does). Needs shaders/common/*.wgsl and common/division.wgsl in front of it
// (src/gpu/ggml-legacy.ts puts them there).
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
// the others (20, 24, 292 bytes). It assembles the unit in `unit` (private memory) and then stores
// it word by word; no two invocations touch the same word. Decoders read bytes anywhere and write
// their own 32 (or 256) floats, so they take one block each.
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
//   encode_<fmt>           0 params | 1 weights | 2 encoded | 3 status
//   encode_<fmt>_imatrix   0 params | 1 weights | 2 encoded | 3 status | 4 importance | 5 sigma2
//   row_sigma2             0 params | 1 weights | 2 sigma2_out | 3 status
//   decode_<fmt>           0 params | 1 encoded_in | 2 values        (decode_q8_K: | 3 status)

struct Params {
  blocks: u32,         // blocks in this chunk: rows * blocks_per_row
  blocks_per_row: u32, // cols / block weights
  rows: u32,
  cols: u32,
  zero: u32,           // always 0: the runtime zero of opaque_f32 (common/ggml-rounding.wgsl)
  guard_subnormals: u32, // 1 on devices that flush subnormals: flag rows that would meet them
}

@group(0) @binding(0) var<uniform> params: Params;
// Encoders: the chunk's weights, rows x cols float32, row-major.
@group(0) @binding(1) var<storage, read> weights: array<f32>;
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
// Decoders: the dequantized weights, rows x cols float32.
@group(0) @binding(2) var<storage, read_write> values: array<f32>;

const WORKGROUP_SIZE = 64u;
const QK = 32u;
const QK_K = 256u;
const F32_MAX = 0x1.fffffep+127f; // FLT_MAX
// Bit patterns of |x| below which a nonzero weight sends its row to the CPU (see the top of the file).
const TINY_REF_BITS = 0x0f800000u; // 2^-96
const TINY_WEIGHTED_BITS = 0x2f800000u; // 2^-32
// Importance weights w below this (with a nonzero importance) send the row to the CPU.
const TINY_IMPORTANCE_WEIGHT = 0x1p-20f;
// ggml's GROUP_MAX_EPS: groups whose largest |x| is below it count as all zero.
const GROUP_MAX_EPS = 1e-15;
// sigma2 below this (of a row that is not all zero) sends the row to the CPU.
const TINY_SIGMA2 = 0x1p-100f;

// Format ids of encode_unit / decode_block (not ggml's type ids).
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

// n / d, correctly rounded on any device (WGSL's `/` may be 2.5 ulp off, and compilers rewrite
// divisions by constants), for finite n and d != 0: the sign, then div_f32_exact on the magnitudes.
fn divide(n: f32, d: f32) -> f32 {
  let sign = (bitcast<u32>(n) ^ bitcast<u32>(d)) & 0x80000000u;
  let quotient = div_f32_exact(bitcast<f32>(bitcast<u32>(n) & 0x7fffffffu), bitcast<f32>(bitcast<u32>(d) & 0x7fffffffu));
  return bitcast<f32>(bitcast<u32>(quotient) | sign);
}

// ---------------------------------------------------------------------------------------------------
// The unit an encoder invocation assembles: at most two q8_0 blocks, 68 bytes.

const UNIT_WORDS = 17u;
var<private> unit: array<u32, UNIT_WORDS>;

fn put_byte(at: u32, b: u32) {
  unit[at / 4u] |= byte_at(b, at);
}
fn put_u16(at: u32, h: u32) {
  put_byte(at, h);
  put_byte(at + 1u, h >> 8u);
}
fn put_u32(at: u32, w: u32) {
  put_u16(at, w);
  put_u16(at + 2u, w >> 16u);
}
fn put_f16(at: u32, x: f32) {
  put_u16(at, f32_to_f16_bits(x));
}

fn flag_row_for_cpu(row: u32) {
  atomicOr(&status[1u + row / 32u], 1u << (row % 32u));
}

// Checks weights[first .. first + n) of row `row` on their bits (a flushing device would see a
// subnormal as 0): raises the non-finite flag for NaN or +-inf, and flags the row for the CPU when a
// nonzero |x| is below the float whose bits are tiny_bits.
fn check_weights(first: u32, n: u32, row: u32, tiny_bits: u32) {
  var non_finite = false;
  var tiny = false;
  for (var j = 0u; j < n; j++) {
    let magnitude = bitcast<u32>(weights[first + j]) & 0x7fffffffu;
    non_finite = non_finite || magnitude >= 0x7f800000u;
    tiny = tiny || (magnitude != 0u && magnitude < tiny_bits);
  }
  if (non_finite) {
    atomicStore(&status[0], 1u);
  }
  if (tiny && params.guard_subnormals != 0u) {
    flag_row_for_cpu(row);
  }
}

// ---------------------------------------------------------------------------------------------------
// Reference encoders (quantize_row_<fmt>_ref), one block: weights[x0 .. x0 + 32) -> unit bytes at `at`.

// q4_0: d = (signed value of largest |x|) / -8; q = min(15, (int8)(x/d + 8.5)).
fn quantize_q4_0(x0: u32, at: u32) {
  var amax = 0.0;
  var signed_max = 0.0;
  for (var j = 0u; j < QK; j++) {
    let v = weights[x0 + j];
    let av = abs(v);
    if (amax < av) {
      amax = av;
      signed_max = v;
    }
  }
  let d = divide(signed_max, -8.0);
  // id comes from the fp32 d, not the fp16 one stored.
  let id = select(0.0, divide(1.0, d), d != 0.0);
  put_f16(at, d);
  for (var j = 0u; j < QK / 2u; j++) {
    let a = weights[x0 + j] * id;
    let b = weights[x0 + QK / 2u + j] * id;
    let qa = min(15, trunc_to_int(a + 8.5));
    let qb = min(15, trunc_to_int(b + 8.5));
    put_byte(at + 2u + j, u32(qa) | (u32(qb) << 4u));
  }
}

// q4_1: d = (max - min) / 15, m = min; q = min(15, (int8)((x - min)/d + 0.5)).
fn quantize_q4_1(x0: u32, at: u32) {
  var lo = F32_MAX;
  var hi = -F32_MAX;
  for (var j = 0u; j < QK; j++) {
    let v = weights[x0 + j];
    if (v < lo) {
      lo = v;
    }
    if (v > hi) {
      hi = v;
    }
  }
  let d = divide(hi - lo, 15.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  put_f16(at, d);
  put_f16(at + 2u, lo);
  for (var j = 0u; j < QK / 2u; j++) {
    let a = (weights[x0 + j] - lo) * id;
    let b = (weights[x0 + QK / 2u + j] - lo) * id;
    let qa = min(15, trunc_to_int(a + 0.5));
    let qb = min(15, trunc_to_int(b + 0.5));
    put_byte(at + 4u + j, u32(qa) | (u32(qb) << 4u));
  }
}

// q5_0: d = (signed value of largest |x|) / -16; q = min(31, (int8)(x/d + 16.5)).
fn quantize_q5_0(x0: u32, at: u32) {
  var amax = 0.0;
  var signed_max = 0.0;
  for (var j = 0u; j < QK; j++) {
    let v = weights[x0 + j];
    let av = abs(v);
    if (amax < av) {
      amax = av;
      signed_max = v;
    }
  }
  let d = divide(signed_max, -16.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  put_f16(at, d);
  var qh = 0u;
  for (var j = 0u; j < QK / 2u; j++) {
    let a = weights[x0 + j] * id;
    let b = weights[x0 + QK / 2u + j] * id;
    let qa = u32(min(31, trunc_to_int(a + 16.5)));
    let qb = u32(min(31, trunc_to_int(b + 16.5)));
    put_byte(at + 6u + j, (qa & 0x0fu) | ((qb & 0x0fu) << 4u));
    qh |= ((qa & 0x10u) >> 4u) << j;
    qh |= ((qb & 0x10u) >> 4u) << (j + QK / 2u);
  }
  put_u32(at + 2u, qh);
}

// q5_1: d = (max - min) / 31, m = min; q = (uint8)((x - min)/d + 0.5), with no clamp (ggml has none).
fn quantize_q5_1(x0: u32, at: u32) {
  var lo = F32_MAX;
  var hi = -F32_MAX;
  for (var j = 0u; j < QK; j++) {
    let v = weights[x0 + j];
    if (v < lo) {
      lo = v;
    }
    if (v > hi) {
      hi = v;
    }
  }
  let d = divide(hi - lo, 31.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  put_f16(at, d);
  put_f16(at + 2u, lo);
  var qh = 0u;
  for (var j = 0u; j < QK / 2u; j++) {
    let a = (weights[x0 + j] - lo) * id;
    let b = (weights[x0 + QK / 2u + j] - lo) * id;
    let qa = u32(trunc_to_int(a + 0.5)) & 0xffu;
    let qb = u32(trunc_to_int(b + 0.5)) & 0xffu;
    put_byte(at + 8u + j, (qa & 0x0fu) | ((qb & 0x0fu) << 4u));
    qh |= ((qa & 0x10u) >> 4u) << j;
    qh |= ((qb & 0x10u) >> 4u) << (j + QK / 2u);
  }
  put_u32(at + 4u, qh);
}

// q8_0: d = max|x| / 127; q = roundf(x/d) (ties away from zero).
fn quantize_q8_0(x0: u32, at: u32) {
  var amax = 0.0;
  for (var j = 0u; j < QK; j++) {
    let av = abs(weights[x0 + j]);
    // MAX(amax, av) in C keeps amax unless av is larger.
    amax = select(av, amax, amax > av);
  }
  let d = divide(amax, 127.0);
  let id = select(0.0, divide(1.0, d), d != 0.0);
  put_f16(at, d);
  for (var j = 0u; j < QK; j++) {
    put_byte(at + 2u + j, u32(trunc_to_int(round_half_away(weights[x0 + j] * id))));
  }
}

// ---------------------------------------------------------------------------------------------------
// Importance-weighted encoders (quantize_row_<fmt>_impl). The block's weights and their importance
// w[j] = imatrix[col] * sqrt(sigma2 + x[j]^2) are loaded into private arrays first.

var<private> block_x: array<f32, QK>;
var<private> block_w: array<f32, QK>;
// The chosen levels, and the candidate levels of make_qkx3_quants.
var<private> levels: array<u32, QK>;
var<private> levels_aux: array<u32, QK>;
// w[i] * x[i] (make_qx_quants), x[i] - min (make_qkx3_quants): the same for every candidate scale.
var<private> block_tmp: array<f32, QK>;

// Loads the block at x0 (columns col0.. of row `row`). A w below TINY_IMPORTANCE_WEIGHT where the
// column's importance is not 0 (a subnormal importance reads as nonzero on its bits, and a flushed
// product as 0) sends the row to the CPU.
fn load_weighted_block(x0: u32, col0: u32, row: u32) {
  var tiny = false;
  for (var j = 0u; j < QK; j++) {
    let v = weights[x0 + j];
    let importance_j = importance[col0 + j];
    block_x[j] = v;
    block_w[j] = importance_j * sqrt(sigma2[row] + v * v);
    tiny = tiny || ((bitcast<u32>(importance_j) & 0x7fffffffu) != 0u && !(block_w[j] >= TINY_IMPORTANCE_WEIGHT));
  }
  if (tiny && params.guard_subnormals != 0u) {
    flag_row_for_cpu(row);
  }
}

// ggml's make_qx_quants with rmse_type 1 and explicit weights: symmetric levels -nmax..nmax-1, the
// scale picked among 19 candidates -(nmax + 0.1*is)/max by weighted least squares. Leaves
// levels[i] = level + nmax and returns the scale (0 for an all-zero group).
fn make_qx_quants_weighted(nmax: i32) -> f32 {
  var signed_max = 0.0;
  var amax = 0.0;
  for (var i = 0u; i < QK; i++) {
    let ax = abs(block_x[i]);
    if (ax > amax) {
      amax = ax;
      signed_max = block_x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (var i = 0u; i < QK; i++) {
      levels[i] = 0u;
    }
    return 0.0;
  }
  // C evaluates w*x[i]*l as (w*x[i])*l; the first product is the same for every candidate.
  for (var i = 0u; i < QK; i++) {
    block_tmp[i] = block_w[i] * block_x[i];
  }
  let fmax = no_fold(f32(nmax));
  var iscale = -fmax / signed_max;
  var sumlx = 0.0;
  var suml2 = 0.0;
  for (var i = 0u; i < QK; i++) {
    let l = clamp(nearest_int(iscale * block_x[i]), -nmax, nmax - 1);
    levels[i] = u32(l + nmax);
    levels_aux[i] = levels[i];
    let fl = f32(l);
    sumlx = sumlx + block_tmp[i] * fl;
    suml2 = suml2 + (block_w[i] * fl) * fl;
  }
  var scale = select(0.0, sumlx / suml2, suml2 != 0.0);
  var best = scale * sumlx;
  for (var is = -9; is <= 9; is++) {
    if (is == 0) {
      continue;
    }
    iscale = -(fmax + no_fold(0.1) * f32(is)) / signed_max;
    var changed = false;
    for (var i = 0u; i < QK; i++) {
      let l = u32(nmax + clamp(nearest_int(iscale * block_x[i]), -nmax, nmax - 1));
      changed = changed || l != levels_aux[i];
      levels_aux[i] = l;
    }
    // The previous candidate's levels give the same sums and so the same verdict (accepting them
    // again changes nothing): skip the sums, as the CPU reference does.
    if (!changed) {
      continue;
    }
    sumlx = 0.0;
    suml2 = 0.0;
    for (var i = 0u; i < QK; i++) {
      let fl = f32(i32(levels_aux[i]) - nmax);
      sumlx = sumlx + block_tmp[i] * fl;
      suml2 = suml2 + (block_w[i] * fl) * fl;
    }
    if (suml2 > 0.0 && sumlx * sumlx > best * suml2) {
      levels = levels_aux;
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The offset make_qkx3_quants returns through its `the_min` pointer (-min).
var<private> qkx3_min: f32;

// ggml's make_qkx3_quants with explicit weights and squared error (use_mad = false): asymmetric
// levels 0..nmax, scale and min refit by weighted least squares over 37 candidate grids
// (rmin -0.9, rdelta 0.05, nstep 36). Leaves levels and qkx3_min, returns the scale. ggml's quirk
// is kept: after an improvement, later candidates are built from the improved min.
fn make_qkx3_quants_weighted(nmax: i32) -> f32 {
  let rmin = no_fold(-0.9);
  let rdelta = no_fold(0.05);
  let nstep = 36;
  let fmax = no_fold(f32(nmax));
  var lo = block_x[0];
  var hi = block_x[0];
  var sum_w = block_w[0];
  var sum_x = sum_w * block_x[0];
  for (var i = 1u; i < QK; i++) {
    let xi = block_x[i];
    if (xi < lo) {
      lo = xi;
    }
    if (xi > hi) {
      hi = xi;
    }
    let wi = block_w[i];
    sum_w = sum_w + wi;
    sum_x = sum_x + wi * xi;
  }
  if (lo > 0.0) {
    lo = 0.0;
  }
  if (hi <= lo) {
    for (var i = 0u; i < QK; i++) {
      levels[i] = 0u;
    }
    qkx3_min = -lo;
    return 0.0;
  }
  var iscale = fmax / (hi - lo);
  var scale = divide(1.0, iscale);
  var best_err = 0.0;
  for (var i = 0u; i < QK; i++) {
    let xi = block_x[i];
    let q = clamp(nearest_int(iscale * (xi - lo)), 0, nmax);
    levels[i] = u32(q);
    var diff = (scale * f32(q) + lo) - xi;
    diff = diff * diff;
    best_err = best_err + block_w[i] * diff;
  }
  for (var i = 0u; i < QK; i++) {
    block_tmp[i] = block_x[i] - lo;
  }
  for (var is = 0; is <= nstep; is++) {
    iscale = ((rmin + rdelta * f32(is)) + fmax) / (hi - lo);
    var changed = is == 0;
    for (var i = 0u; i < QK; i++) {
      let l = u32(clamp(nearest_int(iscale * block_tmp[i]), 0, nmax));
      changed = changed || l != levels_aux[i];
      levels_aux[i] = l;
    }
    // The previous candidate's levels give the same fit and error, so the same verdict: skip it.
    if (!changed) {
      continue;
    }
    var sum_l = 0.0;
    var sum_l2 = 0.0;
    var sum_xl = 0.0;
    for (var i = 0u; i < QK; i++) {
      let fl = f32(levels_aux[i]);
      let wl = block_w[i] * fl;
      sum_l = sum_l + wl;
      sum_l2 = sum_l2 + wl * fl;
      sum_xl = sum_xl + wl * block_x[i];
    }
    let det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0.0) {
      var this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
      var this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (this_min > 0.0) {
        this_min = 0.0;
        this_scale = sum_xl / sum_l2;
      }
      // The terms are >= 0: once the partial sum reaches best_err this fit cannot win.
      var err = 0.0;
      for (var i = 0u; i < QK && err < best_err; i++) {
        var diff = (this_scale * f32(levels_aux[i]) + this_min) - block_x[i];
        diff = diff * diff;
        err = err + block_w[i] * diff;
      }
      if (err < best_err) {
        levels = levels_aux;
        best_err = err;
        scale = this_scale;
        lo = this_min;
        for (var i = 0u; i < QK; i++) {
          block_tmp[i] = block_x[i] - lo;
        }
      }
    }
  }
  qkx3_min = -lo;
  return scale;
}

// Nibble-packed levels: byte j holds levels[j] (low) and levels[j + 16] (high), 4 bits each.
fn put_low_nibbles(at: u32) {
  for (var j = 0u; j < QK / 2u; j++) {
    put_byte(at + j, (levels[j] & 0x0fu) | ((levels[j + QK / 2u] & 0x0fu) << 4u));
  }
}

// The 5th bits of 5-bit levels as q5's qh word: bit e is bit 4 of levels[e].
fn fifth_bits() -> u32 {
  var qh = 0u;
  for (var j = 0u; j < QK; j++) {
    qh |= ((levels[j] & 0x10u) >> 4u) << j;
  }
  return qh;
}

fn quantize_q4_0_weighted(at: u32) {
  put_f16(at, make_qx_quants_weighted(8));
  put_low_nibbles(at + 2u);
}

fn quantize_q4_1_weighted(at: u32) {
  put_f16(at, make_qkx3_quants_weighted(15));
  put_f16(at + 2u, -qkx3_min);
  put_low_nibbles(at + 4u);
}

fn quantize_q5_0_weighted(at: u32) {
  put_f16(at, make_qx_quants_weighted(16));
  put_u32(at + 2u, fifth_bits());
  put_low_nibbles(at + 6u);
}

fn quantize_q5_1_weighted(at: u32) {
  put_f16(at, make_qkx3_quants_weighted(31));
  put_f16(at + 2u, -qkx3_min);
  put_u32(at + 4u, fifth_bits());
  put_low_nibbles(at + 8u);
}

// ---------------------------------------------------------------------------------------------------
// Encoder entry points: one unit per invocation.

fn block_bytes_of(format: u32) -> u32 {
  switch format {
    case Q4_0: { return 18u; }
    case Q4_1: { return 20u; }
    case Q5_0: { return 22u; }
    case Q5_1: { return 24u; }
    default: { return 34u; } // Q8_0
  }
}

// Blocks per unit: two where a block does not end on a word boundary.
fn unit_blocks_of(format: u32) -> u32 {
  return select(1u, 2u, block_bytes_of(format) % 4u != 0u);
}

// How many blocks unit `unit_index` holds: per_unit, fewer for the chunk's last, 0 past the end.
fn unit_block_count(unit_index: u32, format: u32) -> u32 {
  let first = unit_index * unit_blocks_of(format);
  return select(0u, min(unit_blocks_of(format), params.blocks - first), first < params.blocks);
}

// Stores the assembled unit. Units are whole words, except the chunk's last, which ends in the
// buffer's zero padding.
fn store_unit(unit_index: u32, format: u32, count: u32) {
  let block_bytes = block_bytes_of(format);
  let first_word = unit_index * unit_blocks_of(format) * block_bytes / 4u;
  for (var i = 0u; i < (count * block_bytes + 3u) / 4u; i++) {
    encoded[first_word + i] = unit[i];
  }
}

fn encode_unit(unit_index: u32, format: u32) {
  let count = unit_block_count(unit_index, format);
  for (var k = 0u; k < count; k++) {
    let block = unit_index * unit_blocks_of(format) + k;
    let x0 = block * QK;
    let at = k * block_bytes_of(format);
    check_weights(x0, QK, block / params.blocks_per_row, TINY_REF_BITS);
    switch format {
      case Q4_0: { quantize_q4_0(x0, at); }
      case Q4_1: { quantize_q4_1(x0, at); }
      case Q5_0: { quantize_q5_0(x0, at); }
      case Q5_1: { quantize_q5_1(x0, at); }
      default: { quantize_q8_0(x0, at); }
    }
  }
  store_unit(unit_index, format, count);
}

// A separate function from encode_unit so that the reference encoders do not use (and need not be
// given) bindings 4 and 5.
fn encode_unit_weighted(unit_index: u32, format: u32) {
  let count = unit_block_count(unit_index, format);
  for (var k = 0u; k < count; k++) {
    let block = unit_index * unit_blocks_of(format) + k;
    let x0 = block * QK;
    let at = k * block_bytes_of(format);
    let row = block / params.blocks_per_row;
    check_weights(x0, QK, row, TINY_WEIGHTED_BITS);
    load_weighted_block(x0, x0 - row * params.cols, row);
    switch format {
      case Q4_0: { quantize_q4_0_weighted(at); }
      case Q4_1: { quantize_q4_1_weighted(at); }
      case Q5_0: { quantize_q5_0_weighted(at); }
      default: { quantize_q5_1_weighted(at); }
    }
  }
  store_unit(unit_index, format, count);
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
@compute @workgroup_size(WORKGROUP_SIZE)
fn encode_q8_K(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid;
  if (block >= params.blocks) {
    return;
  }
  let x0 = block * QK_K;
  let w0 = block * 73u;
  check_weights(x0, QK_K, block / params.blocks_per_row, TINY_REF_BITS);
  var amax = 0.0;
  var signed_max = 0.0;
  for (var j = 0u; j < QK_K; j++) {
    let v = weights[x0 + j];
    let av = abs(v);
    if (av > amax) {
      amax = av;
      signed_max = v;
    }
  }
  if (amax == 0.0) {
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
      var word = 0u;
      for (var b = 0u; b < 4u; b++) {
        // |iscale*x| <= 127 unless -127/max overflowed; then nearest_int's bit trick decides and
        // the int8 store wraps (the CPU reference does the same).
        let q = sign_extend_8(u32(min(127, nearest_int(iscale * weights[x0 + 16u * g + 4u * k + b]))));
        word |= byte_at(u32(q), b);
        sum += q;
      }
      encoded[w0 + 1u + 4u * g + k] = word;
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

fn load_byte(at: u32) -> u32 {
  return byte_of(encoded_in[at / 4u], at);
}
fn load_u16(at: u32) -> u32 {
  return load_byte(at) | (load_byte(at + 1u) << 8u);
}
fn load_u32(at: u32) -> u32 {
  return load_u16(at) | (load_u16(at + 2u) << 16u);
}
fn load_f16(at: u32) -> f32 {
  return f16_bits_to_f32(load_u16(at));
}

fn dequantize_q4_0(at: u32, y0: u32) {
  let d = load_f16(at);
  for (var j = 0u; j < QK / 2u; j++) {
    let b = load_byte(at + 2u + j);
    values[y0 + j] = f32(i32(b & 0x0fu) - 8) * d;
    values[y0 + j + QK / 2u] = f32(i32(b >> 4u) - 8) * d;
  }
}

fn dequantize_q4_1(at: u32, y0: u32) {
  let d = load_f16(at);
  let m = load_f16(at + 2u);
  for (var j = 0u; j < QK / 2u; j++) {
    let b = load_byte(at + 4u + j);
    values[y0 + j] = f32(b & 0x0fu) * d + m;
    values[y0 + j + QK / 2u] = f32(b >> 4u) * d + m;
  }
}

fn dequantize_q5_0(at: u32, y0: u32) {
  let d = load_f16(at);
  let qh = load_u32(at + 2u);
  for (var j = 0u; j < QK / 2u; j++) {
    let b = load_byte(at + 6u + j);
    let h0 = ((qh >> j) << 4u) & 0x10u;
    let h1 = (qh >> (j + 12u)) & 0x10u;
    values[y0 + j] = f32(i32((b & 0x0fu) | h0) - 16) * d;
    values[y0 + j + QK / 2u] = f32(i32((b >> 4u) | h1) - 16) * d;
  }
}

fn dequantize_q5_1(at: u32, y0: u32) {
  let d = load_f16(at);
  let m = load_f16(at + 2u);
  let qh = load_u32(at + 4u);
  for (var j = 0u; j < QK / 2u; j++) {
    let b = load_byte(at + 8u + j);
    let h0 = ((qh >> j) << 4u) & 0x10u;
    let h1 = (qh >> (j + 12u)) & 0x10u;
    values[y0 + j] = f32((b & 0x0fu) | h0) * d + m;
    values[y0 + j + QK / 2u] = f32((b >> 4u) | h1) * d + m;
  }
}

fn dequantize_q8_0(at: u32, y0: u32) {
  let d = load_f16(at);
  for (var j = 0u; j < QK; j++) {
    values[y0 + j] = f32(sign_extend_8(load_byte(at + 2u + j))) * d;
  }
}

fn decode_block(block: u32, format: u32) {
  if (block >= params.blocks) {
    return;
  }
  let at = block * block_bytes_of(format);
  let y0 = block * QK;
  switch format {
    case Q4_0: { dequantize_q4_0(at, y0); }
    case Q4_1: { dequantize_q4_1(at, y0); }
    case Q5_0: { dequantize_q5_0(at, y0); }
    case Q5_1: { dequantize_q5_1(at, y0); }
    default: { dequantize_q8_0(at, y0); }
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
  let y0 = block * QK_K;
  let d = bitcast<f32>(encoded_in[w0]);
  let d_bits = encoded_in[w0] & 0x7fffffffu;
  if (d_bits != 0u && d_bits < 0x00800000u && params.guard_subnormals != 0u) {
    flag_row_for_cpu(block / params.blocks_per_row); // a subnormal scale
  }
  for (var i = 0u; i < QK_K / 4u; i++) {
    let word = encoded_in[w0 + 1u + i];
    for (var b = 0u; b < 4u; b++) {
      values[y0 + 4u * i + b] = d * f32(sign_extend_8(byte_of(word, b)));
    }
  }
}
