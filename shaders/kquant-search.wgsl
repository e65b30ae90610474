// The scale searches behind llama.cpp's K-quants (ggml/src/ggml-quants.c: make_qx_quants,
// make_q3_quants, make_qkx2_quants / make_qkx3_quants, make_qp_quants), ported from the CPU reference
// src/quant/ggml/kquant-search.ts in the same float32 operation order, so that on an adapter whose
// + - * / and sqrt are correctly rounded and unfused the chosen levels and scales are bit for bit ggml's.
//
// Order rules kept throughout (they decide bits): `a*b*c` is `(a*b)*c`; a sum runs in C's loop order
// (sum16 adds element 0, 1, 2, ... one at a time); `s += a*b` is two roundings. Float constants that take
// part in arithmetic go through no_fold() (kquants.wgsl), which hides their value from the compiler so
// that it cannot fold them in ways that change the rounding. Two shortcuts of the CPU reference are kept:
// a candidate whose levels equal the previous candidate's is skipped (same sums, same verdict); and
// where the CPU stops an error sum early, this code finishes it, which gives the same verdict.
//
// Sub-blocks live in registers: 16 values are four vec4s (V16), addressed by name, never by a computed
// index. A GPU compiler keeps such values in registers, while a private array indexed in a loop goes to
// memory: on SwiftShader the searches run about six times faster this way. A 32-value sub-block (q4_K,
// q5_K) is two V16 halves (Sub); q2_K's 16-value sub-blocks use the low half only (`halves` = 1).

struct V16 {
  a: vec4<f32>, // elements 0..3
  b: vec4<f32>, // 4..7
  c: vec4<f32>, // 8..11
  d: vec4<f32>, // 12..15
}

struct L16 {
  a: vec4<i32>,
  b: vec4<i32>,
  c: vec4<i32>,
  d: vec4<i32>,
}

// GROUP_MAX_EPS: below this |max| a group counts as all zero.
const GROUP_MAX_EPS = 1e-15f;

// ---------------------------------------------------------------------------------------------------
// Element-wise operations on 16 values (each is one f32 operation per element, as in C's loops).

fn v16(s: f32) -> V16 {
  return V16(vec4<f32>(s), vec4<f32>(s), vec4<f32>(s), vec4<f32>(s));
}
fn v16_add(p: V16, q: V16) -> V16 {
  return V16(p.a + q.a, p.b + q.b, p.c + q.c, p.d + q.d);
}
fn v16_sub(p: V16, q: V16) -> V16 {
  return V16(p.a - q.a, p.b - q.b, p.c - q.c, p.d - q.d);
}
fn v16_mul(p: V16, q: V16) -> V16 {
  return V16(p.a * q.a, p.b * q.b, p.c * q.c, p.d * q.d);
}
fn v16_div(p: V16, q: V16) -> V16 {
  return V16(p.a / q.a, p.b / q.b, p.c / q.c, p.d / q.d);
}
fn v16_abs(p: V16) -> V16 {
  return V16(abs(p.a), abs(p.b), abs(p.c), abs(p.d));
}
fn v16_sqrt(p: V16) -> V16 {
  return V16(sqrt(p.a), sqrt(p.b), sqrt(p.c), sqrt(p.d));
}
fn v16_of(l: L16) -> V16 {
  return V16(vec4<f32>(l.a), vec4<f32>(l.b), vec4<f32>(l.c), vec4<f32>(l.d));
}
// s*l + m - x: the error of levels l for scale s and offset m.
fn v16_residual(s: f32, l: L16, m: f32, x: V16) -> V16 {
  return v16_sub(v16_add(v16_mul(v16(s), v16_of(l)), v16(m)), x);
}

// acc + p[0] + p[1] + ... + p[15], one addition at a time in that order.
fn sum4(acc: f32, v: vec4<f32>) -> f32 {
  return acc + v.x + v.y + v.z + v.w;
}
fn sum16(acc: f32, p: V16) -> f32 {
  return sum4(sum4(sum4(sum4(acc, p.a), p.b), p.c), p.d);
}

fn max16(p: V16) -> f32 {
  let m = max(max(p.a, p.b), max(p.c, p.d));
  return max(max(m.x, m.y), max(m.z, m.w));
}

// The signed value with the largest |x|, the first one winning ties (as C's `if (ax > amax)` scan).
fn signed_max4(m: f32, v: vec4<f32>) -> f32 {
  var r = select(m, v.x, abs(v.x) > abs(m));
  r = select(r, v.y, abs(v.y) > abs(r));
  r = select(r, v.z, abs(v.z) > abs(r));
  return select(r, v.w, abs(v.w) > abs(r));
}
fn signed_max16(p: V16) -> f32 {
  return signed_max4(signed_max4(signed_max4(signed_max4(0.0f, p.a), p.b), p.c), p.d);
}

// Running min and max in C's order (`if (x < min) min = x`: the first of equal values stays).
fn min_max4(m: vec2<f32>, v: vec4<f32>) -> vec2<f32> {
  var r = m;
  r = vec2<f32>(select(r.x, v.x, v.x < r.x), select(r.y, v.x, v.x > r.y));
  r = vec2<f32>(select(r.x, v.y, v.y < r.x), select(r.y, v.y, v.y > r.y));
  r = vec2<f32>(select(r.x, v.z, v.z < r.x), select(r.y, v.z, v.z > r.y));
  return vec2<f32>(select(r.x, v.w, v.w < r.x), select(r.y, v.w, v.w > r.y));
}
fn min_max16(m: vec2<f32>, p: V16) -> vec2<f32> {
  return min_max4(min_max4(min_max4(min_max4(m, p.a), p.b), p.c), p.d);
}

// nearest_int (common/ggml-rounding.wgsl) on four values.
fn nearest_int4(v: vec4<f32>) -> vec4<i32> {
  let rounded = vec4<i32>(bitcast<vec4<u32>>(v + vec4<f32>(12582912.0f)) & vec4<u32>(0x7fffffu)) - vec4<i32>(0x400000);
  let nan = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
  return select(rounded, vec4<i32>(0), nan); // NaN: 0, as the C bit trick gives
}

// clamp(nearest_int(v), lo, hi) element by element.
fn l16_round(v: V16, lo: i32, hi: i32) -> L16 {
  let l = vec4<i32>(lo);
  let h = vec4<i32>(hi);
  return L16(clamp(nearest_int4(v.a), l, h), clamp(nearest_int4(v.b), l, h), clamp(nearest_int4(v.c), l, h),
             clamp(nearest_int4(v.d), l, h));
}
// make_qkx3_quants' rounding: v > 0 ? nearest_int(min(v, nmax)) : 0 (NaN and inf included).
fn round_bounded4(v: vec4<f32>, fnmax: f32) -> vec4<i32> {
  let top = vec4<f32>(fnmax);
  return select(vec4<i32>(0), nearest_int4(select(top, v, v < top)), v > vec4<f32>(0.0f));
}
fn l16_round_bounded(v: V16, fnmax: f32) -> L16 {
  return L16(round_bounded4(v.a, fnmax), round_bounded4(v.b, fnmax), round_bounded4(v.c, fnmax), round_bounded4(v.d, fnmax));
}

fn l16(k: i32) -> L16 {
  return L16(vec4<i32>(k), vec4<i32>(k), vec4<i32>(k), vec4<i32>(k));
}
fn l16_add(p: L16, k: i32) -> L16 {
  let v = vec4<i32>(k);
  return L16(p.a + v, p.b + v, p.c + v, p.d + v);
}
fn l16_min(p: L16, k: i32) -> L16 {
  let v = vec4<i32>(k);
  return L16(min(p.a, v), min(p.b, v), min(p.c, v), min(p.d, v));
}
// What a C int8_t store of each element leaves.
fn l16_int8(p: L16) -> L16 {
  let s = vec4<u32>(24u);
  return L16((p.a << s) >> s, (p.b << s) >> s, (p.c << s) >> s, (p.d << s) >> s);
}
fn l16_differ(p: L16, q: L16) -> bool {
  return any(p.a != q.a) || any(p.b != q.b) || any(p.c != q.c) || any(p.d != q.d);
}

// ---------------------------------------------------------------------------------------------------
// make_qx_quants with rmse_type 1 (the only kind the K-quants and the legacy imatrix encoders use):
// symmetric levels -nmax..nmax-1 with weights w; tries the inverse scales -(nmax + 0.1*k)/max for
// k = -9..9 and keeps the least-squares fit with the largest sumlx^2/suml2. On 16 values (make_qx_quants)
// or on a Sub of 32 (make_qx_quants_sub with halves = 2: q4_0 and q5_0 with an imatrix, ggml-legacy.wgsl).

struct QxFit {
  scale: f32,
  levels: L16, // level + nmax (all 0 for an all-zero group)
}

struct SubQxFit {
  scale: f32,
  levels: SubLevels, // level + nmax (all 0 for an all-zero group); the high half is 0 when halves = 1
}

fn make_qx_quants(nmax: i32, x: V16, w: V16) -> QxFit {
  let fit = make_qx_quants_sub(nmax, Sub(x, v16(0.0f)), Sub(w, v16(0.0f)), 1u);
  return QxFit(fit.scale, fit.levels.lo);
}

// clamp(nearest_int(s * x), lo, hi) on the first 16 * halves values (the rest 0).
fn sub_round_scaled(s: f32, x: Sub, lo: i32, hi: i32, halves: u32) -> SubLevels {
  var r = SubLevels(l16_round(v16_mul(v16(s), x.lo), lo, hi), l16(0));
  if (halves == 2u) {
    r.hi = l16_round(v16_mul(v16(s), x.hi), lo, hi);
  }
  return r;
}

// (sumlx, suml2) = (sum of (w*x)*l, sum of (w*l)*l) in element order, as C's loop forms them.
fn qx_sums(wx: Sub, w: Sub, l: SubLevels, halves: u32) -> vec2<f32> {
  let lo = v16_of(l.lo);
  var sums = vec2<f32>(sum16(0.0f, v16_mul(wx.lo, lo)), sum16(0.0f, v16_mul(v16_mul(w.lo, lo), lo)));
  if (halves == 2u) {
    let hi = v16_of(l.hi);
    sums = vec2<f32>(sum16(sums.x, v16_mul(wx.hi, hi)), sum16(sums.y, v16_mul(v16_mul(w.hi, hi), hi)));
  }
  return sums;
}

fn make_qx_quants_sub(nmax: i32, x: Sub, w: Sub, halves: u32) -> SubQxFit {
  var max_x = signed_max16(x.lo);
  if (halves == 2u) {
    max_x = signed_max4(signed_max4(signed_max4(signed_max4(max_x, x.hi.a), x.hi.b), x.hi.c), x.hi.d);
  }
  if (abs(max_x) < GROUP_MAX_EPS) {
    return SubQxFit(0.0f, SubLevels(l16(0), l16(0)));
  }
  let fnmax = no_fold(f32(nmax));
  let wx = sub_mul(w, x);
  var levels = sub_round_scaled(-fnmax / max_x, x, -nmax, nmax - 1, halves);
  var best_levels = levels;
  var sums = qx_sums(wx, w, levels, halves);
  var scale = select(0.0f, sums.x / sums.y, sums.y != 0.0f);
  var best = scale * sums.x;
  for (var k = -9; k <= 9; k++) {
    if (k == 0) { continue; }
    let iscale = -(fnmax + no_fold(0.1f) * f32(k)) / max_x;
    let next = sub_round_scaled(iscale, x, -nmax, nmax - 1, halves);
    if (!sub_differ(next, levels, halves)) { continue; }
    levels = next;
    sums = qx_sums(wx, w, levels, halves);
    if (sums.y > 0.0f && sums.x * sums.x > best * sums.y) {
      best_levels = levels;
      scale = sums.x / sums.y;
      best = scale * sums.x;
    }
  }
  return SubQxFit(scale, SubLevels(l16_add(best_levels.lo, nmax), l16_add(best_levels.hi, nmax)));
}

// ---------------------------------------------------------------------------------------------------
// make_q3_quants with do_rmse (q3_K's reference encoder), on 16 values: make_qx_quants' first fit with
// x^2 weights, then up to 5 passes that move single levels, in element order, while the fit improves.

struct LevelPass {
  sumlx: f32,
  suml2: f32,
  changed: bool,
}

// One element of a make_q3_quants pass: returns its (possibly moved) level.
fn q3_move(s: ptr<function, LevelPass>, xi: f32, li: i32, nmax: i32) -> i32 {
  let w = xi * xi;
  let lf = f32(li);
  var slx = (*s).sumlx - w * xi * lf;
  if (slx > 0.0f) {
    var sl2 = (*s).suml2 - w * lf * lf;
    let new_l = clamp(nearest_int(xi * sl2 / slx), -nmax, nmax - 1);
    if (new_l != li) {
      let nf = f32(new_l);
      slx += w * xi * nf;
      sl2 += w * nf * nf;
      if (sl2 > 0.0f && slx * slx * (*s).suml2 > (*s).sumlx * (*s).sumlx * sl2) {
        *s = LevelPass(slx, sl2, true);
        return new_l;
      }
    }
  }
  return li;
}

fn q3_move4(s: ptr<function, LevelPass>, x: vec4<f32>, l: vec4<i32>, nmax: i32) -> vec4<i32> {
  let l0 = q3_move(s, x.x, l.x, nmax);
  let l1 = q3_move(s, x.y, l.y, nmax);
  let l2 = q3_move(s, x.z, l.z, nmax);
  let l3 = q3_move(s, x.w, l.w, nmax);
  return vec4<i32>(l0, l1, l2, l3);
}

fn make_q3_quants(nmax: i32, x: V16) -> QxFit {
  let max_x = signed_max16(x);
  if (abs(max_x) < GROUP_MAX_EPS) {
    return QxFit(0.0f, l16(0));
  }
  let iscale = -no_fold(f32(nmax)) / max_x;
  var L = l16_round(v16_mul(v16(iscale), x), -nmax, nmax - 1);
  let w = v16_mul(x, x);
  let lf = v16_of(L);
  var state = LevelPass(sum16(0.0f, v16_mul(v16_mul(w, x), lf)), sum16(0.0f, v16_mul(v16_mul(w, lf), lf)), false);
  for (var itry = 0; itry < 5; itry++) {
    state.changed = false;
    let a = q3_move4(&state, x.a, L.a, nmax);
    let b = q3_move4(&state, x.b, L.b, nmax);
    let c = q3_move4(&state, x.c, L.c, nmax);
    let d = q3_move4(&state, x.d, L.d, nmax);
    L = L16(a, b, c, d);
    if (!state.changed) { break; }
  }
  return QxFit(select(0.0f, state.sumlx / state.suml2, state.suml2 > 0.0f), l16_add(L, nmax));
}

// ---------------------------------------------------------------------------------------------------
// make_qkx2_quants (bounded = false: levels clamp(nearest_int(v), 0, nmax)) and make_qkx3_quants
// (bounded = true: v > 0 ? nearest_int(min(v, nmax)) : 0), for q2_K/q4_K/q5_K (ref and imatrix):
// asymmetric levels 0..nmax with a min <= 0, weighted by w. Tries nstep+1 inverse scales
// (rmin + rdelta*k + nmax)/(max - min) and keeps the least-squares fit with the smallest weighted
// error (squared, or absolute when use_mad).

// A sub-block of 32 values (or 16: the low half only).
struct Sub {
  lo: V16,
  hi: V16,
}

struct SubLevels {
  lo: L16,
  hi: L16,
}

fn sub_mul(p: Sub, q: Sub) -> Sub {
  return Sub(v16_mul(p.lo, q.lo), v16_mul(p.hi, q.hi));
}
fn sub_minus(p: Sub, m: f32) -> Sub {
  return Sub(v16_sub(p.lo, v16(m)), v16_sub(p.hi, v16(m)));
}
fn sub_of(l: SubLevels) -> Sub {
  return Sub(v16_of(l.lo), v16_of(l.hi));
}
// The weighted error terms w*diff^2 (or w*|diff|) of levels l for scale s and offset m.
fn sub_errors(w: Sub, s: f32, l: SubLevels, m: f32, x: Sub, use_mad: bool) -> Sub {
  let lo = v16_residual(s, l.lo, m, x.lo);
  let hi = v16_residual(s, l.hi, m, x.hi);
  if (use_mad) {
    return sub_mul(w, Sub(v16_abs(lo), v16_abs(hi)));
  }
  return sub_mul(w, Sub(v16_mul(lo, lo), v16_mul(hi, hi)));
}
// The sum of the first 16 * halves values, in order.
fn sub_sum(p: Sub, halves: u32) -> f32 {
  let low = sum16(0.0f, p.lo);
  return select(low, sum16(low, p.hi), halves == 2u);
}
fn sub_differ(p: SubLevels, q: SubLevels, halves: u32) -> bool {
  return l16_differ(p.lo, q.lo) || (halves == 2u && l16_differ(p.hi, q.hi));
}

struct AffineFit {
  scale: f32,
  neg_min: f32, // -min (>= 0): the value stored for the sub-block's offset
  levels: SubLevels,
}

fn make_qkx_quants(nmax: i32, x: Sub, w: Sub, halves: u32, rmin: f32, rdelta: f32, nstep: i32, use_mad: bool,
                   bounded: bool) -> AffineFit {
  let fnmax = no_fold(f32(nmax));
  var range_x = min_max16(vec2<f32>(x.lo.a.x), x.lo);
  if (halves == 2u) {
    range_x = min_max16(range_x, x.hi);
  }
  var min_x = min(range_x.x, 0.0f); // `if (min > 0) min = 0`
  let max_x = range_x.y;
  if (max_x <= min_x) {
    return AffineFit(0.0f, -min_x, SubLevels(l16(0), l16(0)));
  }
  let sum_w = sub_sum(w, halves);
  let sum_x = sub_sum(sub_mul(w, x), halves);
  var range = max_x - min_x;
  var iscale = fnmax / range;
  var scale = no_fold(1.0f) / iscale;
  var xm = sub_minus(x, min_x); // x - min for the current best min
  var L = SubLevels(l16_round(v16_mul(v16(iscale), xm.lo), 0, nmax), l16_round(v16_mul(v16(iscale), xm.hi), 0, nmax));
  var best_error = sub_sum(sub_errors(w, scale, L, min_x, x, use_mad), halves);
  var laux = L; // the previous candidate's levels
  for (var k = 0; k <= nstep; k++) {
    iscale = (no_fold(rmin) + no_fold(rdelta) * f32(k) + fnmax) / range;
    let vlo = v16_mul(v16(iscale), xm.lo);
    let vhi = v16_mul(v16(iscale), xm.hi);
    var next: SubLevels;
    if (bounded) {
      next = SubLevels(l16_round_bounded(vlo, fnmax), l16_round_bounded(vhi, fnmax));
    } else {
      next = SubLevels(l16_round(vlo, 0, nmax), l16_round(vhi, 0, nmax));
    }
    if (k > 0 && !sub_differ(next, laux, halves)) { continue; } // same levels: same fit, same error
    laux = next;
    let lf = sub_of(laux);
    let wl = sub_mul(w, lf);
    let sum_l = sub_sum(wl, halves);
    let sum_l2 = sub_sum(sub_mul(wl, lf), halves);
    let sum_xl = sub_sum(sub_mul(wl, x), halves);
    let D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      var this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      var this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      let cur_error = sub_sum(sub_errors(w, this_scale, laux, this_min, x, use_mad), halves);
      if (cur_error < best_error) {
        L = laux;
        best_error = cur_error;
        scale = this_scale;
        min_x = this_min;
        range = max_x - min_x;
        xm = sub_minus(x, min_x);
      }
    }
  }
  return AffineFit(scale, -min_x, L);
}

// ---------------------------------------------------------------------------------------------------
// make_qp_quants (the imatrix encoders' scale step): quantizes the n <= 16 non-negative sub-block scales
// (or mins) x to 0..nmax with weights qw, and returns the super-block scale and the levels. Entries past
// n are 0 with weight 0: they add +0 to every sum and never move. ggml stores the levels as uint8_t, so
// a level is kept modulo 256 where C's store wraps.

// One element of a make_qp_quants pass: returns its (possibly moved) level.
fn qp_move(s: ptr<function, LevelPass>, xi: f32, w: f32, li: i32, nmax: i32) -> i32 {
  let lf = f32(li);
  var slx = (*s).sumlx - w * xi * lf;
  var sl2 = (*s).suml2 - w * lf * lf;
  if (slx > 0.0f && sl2 > 0.0f) {
    let new_l = min(nearest_int(xi * sl2 / slx), nmax);
    if (new_l != li) {
      let nf = f32(new_l);
      slx += w * xi * nf;
      sl2 += w * nf * nf;
      if (slx * slx * (*s).suml2 > (*s).sumlx * (*s).sumlx * sl2) {
        *s = LevelPass(slx, sl2, true);
        return new_l & 0xff;
      }
    }
  }
  return li;
}

fn qp_move4(s: ptr<function, LevelPass>, x: vec4<f32>, w: vec4<f32>, l: vec4<i32>, nmax: i32) -> vec4<i32> {
  let l0 = qp_move(s, x.x, w.x, l.x, nmax);
  let l1 = qp_move(s, x.y, w.y, l.y, nmax);
  let l2 = qp_move(s, x.z, w.z, l.z, nmax);
  let l3 = qp_move(s, x.w, w.w, l.w, nmax);
  return vec4<i32>(l0, l1, l2, l3);
}

// min(nearest_int(v), nmax) element by element.
fn l16_round_max(v: V16, nmax: i32) -> L16 {
  let top = vec4<i32>(nmax);
  return L16(min(nearest_int4(v.a), top), min(nearest_int4(v.b), top), min(nearest_int4(v.c), top), min(nearest_int4(v.d), top));
}
fn l16_byte(p: L16) -> L16 {
  let m = vec4<i32>(0xff);
  return L16(p.a & m, p.b & m, p.c & m, p.d & m);
}

fn make_qp_quants(nmax: i32, x: V16, qw: V16) -> QxFit {
  let max_x = max(max16(x), 0.0f);
  if (max_x < GROUP_MAX_EPS) {
    return QxFit(0.0f, l16(0));
  }
  let fnmax = no_fold(f32(nmax));
  var iscale = fnmax / max_x;
  let first = l16_byte(l16_round(v16_mul(v16(iscale), x), -0x7fffffff, 0x7fffffff)); // uint8_t L[i] = nearest_int(...)
  let scale = no_fold(1.0f) / iscale;
  let d0 = v16_sub(x, v16_mul(v16(scale), v16_of(first)));
  var best_mse = sum16(0.0f, v16_mul(v16_mul(qw, d0), d0));
  for (var k = -4; k <= 4; k++) {
    if (k == 0) { continue; }
    let iscale_k = (no_fold(0.1f) * f32(k) + fnmax) / max_x;
    let scale_k = no_fold(1.0f) / iscale_k;
    let diff = v16_sub(x, v16_mul(v16(scale_k), v16_of(l16_round_max(v16_mul(v16(iscale_k), x), nmax))));
    let mse = sum16(0.0f, v16_mul(v16_mul(qw, diff), diff));
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_k;
    }
  }
  let l = l16_round_max(v16_mul(v16(iscale), x), nmax);
  let lf = v16_of(l);
  var state = LevelPass(sum16(0.0f, v16_mul(v16_mul(qw, x), lf)), sum16(0.0f, v16_mul(v16_mul(qw, lf), lf)), false);
  var L = l16_byte(l);
  for (var itry = 0; itry < 5; itry++) {
    state.changed = false;
    let a = qp_move4(&state, x.a, qw.a, L.a, nmax);
    let b = qp_move4(&state, x.b, qw.b, L.b, nmax);
    let c = qp_move4(&state, x.c, qw.c, L.c, nmax);
    let d = qp_move4(&state, x.d, qw.d, L.d, nmax);
    L = L16(a, b, c, d);
    if (!state.changed) { break; }
  }
  return QxFit(select(0.0f, state.sumlx / state.suml2, state.suml2 > 0.0f), L);
}

// ---------------------------------------------------------------------------------------------------
// Subnormal safety. ggml's float arithmetic keeps subnormal numbers; many GPUs, SwiftShader among them,
// flush them to zero (WGSL allows either). Where a sub-block's numbers are so small that a search's sums,
// or the products it compares, could fall below FLUSH_MARGIN (2^-100: above the smallest normal number,
// 2^-126, by enough that a flushed term is too small to change any sum it joins), the encoder hands the
// block to the CPU reference instead. Each check bounds the leading terms of one search's sums from the
// sub-block's data; a product that underflows inside a check reads as 0, which errs towards the CPU.

const FLUSH_MARGIN = 0x1p-100f;
// For error terms w*diff^2: a diff that is not 0 is at least about 2^-25 of the values it subtracts.
const FLUSH_MARGIN_ERRORS = 0x1p-48f;

// Leading terms of make_qx_quants', make_q3_quants' and make_qp_quants' sums. Elements with |x| >= amax/2
// never get level 0, so their w*|x| and w are terms of sumlx and suml2 (times |level| >= 1).
struct QxTerms {
  amax: f32,
  sumlx: f32, // the largest w*|x| over those elements
  suml2: f32, // the largest w over those elements
  wmax: f32, // the largest w over all elements
}

fn qx_terms(x: V16, w: V16) -> QxTerms {
  let ax = v16_abs(x);
  let amax = max16(ax);
  // Elements below amax/2 count as weight 0.
  let h = vec4<f32>(0.5f * amax);
  let big = V16(select(vec4<f32>(0.0f), w.a, ax.a >= h), select(vec4<f32>(0.0f), w.b, ax.b >= h),
                select(vec4<f32>(0.0f), w.c, ax.c >= h), select(vec4<f32>(0.0f), w.d, ax.d >= h));
  return QxTerms(amax, max16(v16_mul(big, ax)), max16(big), max16(w));
}

// make_qx_quants compares sumlx^2 with best*suml2, where best = scale*sumlx and scale ~ amax/nmax. A group
// below GROUP_MAX_EPS returns before any arithmetic; all-zero weights give exact zeros.
fn qx_flush_safe(t: QxTerms) -> bool {
  if (t.amax < GROUP_MAX_EPS || t.wmax == 0.0f) {
    return true;
  }
  return t.sumlx * t.sumlx >= FLUSH_MARGIN && t.suml2 >= FLUSH_MARGIN && t.sumlx * t.amax >= FLUSH_MARGIN;
}

// make_q3_quants compares slx^2*suml2 with sumlx^2*sl2 (weights x^2).
fn q3_flush_safe(t: QxTerms) -> bool {
  if (t.amax < GROUP_MAX_EPS) {
    return true;
  }
  return t.sumlx * t.sumlx * t.suml2 >= FLUSH_MARGIN && t.sumlx * t.amax >= FLUSH_MARGIN;
}

// make_qp_quants compares slx^2*suml2 with sumlx^2*sl2, and sums qw*diff^2.
fn qp_flush_safe(t: QxTerms) -> bool {
  if (t.amax < GROUP_MAX_EPS || t.wmax == 0.0f) {
    return true;
  }
  return t.sumlx * t.sumlx * t.suml2 >= FLUSH_MARGIN && t.sumlx * t.amax >= FLUSH_MARGIN_ERRORS;
}

// make_qkx*_quants: its sums are led by the largest weight wmax (sum_w, sum_l, sum_l2) and wmax*amax
// (sum_x, sum_xl); D and the fit's numerators multiply two of them; an error term is w*diff^2 (or w*|diff|).
// All-zero x returns before any arithmetic; all-zero weights give exact zeros (callers check that a
// weight is 0 only where ggml's is).
fn qkx_flush_safe(x: Sub, w: Sub) -> bool {
  let amax = max(max16(v16_abs(x.lo)), max16(v16_abs(x.hi)));
  let wmax = max(max16(w.lo), max16(w.hi));
  if (amax == 0.0f || wmax == 0.0f) {
    return true;
  }
  return wmax * wmax >= FLUSH_MARGIN && wmax * wmax * amax >= FLUSH_MARGIN && wmax * amax * amax >= FLUSH_MARGIN_ERRORS;
}

// True for a nonzero float below the smallest normal number (which a flushing device reads as 0).
fn is_subnormal(v: f32) -> bool {
  let magnitude = bitcast<u32>(v) & 0x7fffffffu;
  return magnitude != 0u && magnitude < 0x00800000u;
}
