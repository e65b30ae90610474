// The scale searches behind llama.cpp's K-quants (ggml/src/ggml-quants.c: make_qx_quants,
// make_q3_quants, make_qkx2_quants / make_qkx3_quants, make_qp_quants), ported from the CPU reference
// src/quant/ggml/kquant-search.ts in the same float32 operation order, so that on an adapter whose
// + - * / and sqrt are correctly rounded and unfused the chosen levels and scales are bit for bit ggml's.
//
// Order rules kept throughout (they decide bits): `a*b*c` is `(a*b)*c`; a sum runs in C's loop order;
// `s += a*b` is two roundings. The two shortcuts of the CPU reference are kept too (a candidate
// whose levels equal the previous one's is skipped; an error sum stops once it reaches the best error):
// both provably give ggml's result, and they save most of the work.
//
// Float constants: every constant that takes part in arithmetic goes through no_fold() (kquants.wgsl),
// which hides its value from the compiler. Some WebGPU stacks fold arithmetic with constant operands
// as if it were exact (SwiftShader's, through spirv-opt: x / 63 -> x * (1/63), 1 / (15 / x) -> x / 15,
// (y + c1) + c2 -> y + (c1 + c2)), and each of those changes the rounding.
//
// Each search works on one sub-block of n <= 32 weights held in private arrays.

const SUB_MAX = 32u;
alias SubF32 = array<f32, SUB_MAX>;
alias SubI32 = array<i32, SUB_MAX>;

// GROUP_MAX_EPS: below this |max| a group counts as all zero.
const GROUP_MAX_EPS = 1e-15f;

// make_qx_quants with rmse_type 1 (the only kind the K-quants use): symmetric levels -nmax..nmax-1 with
// weights w; tries the inverse scales -(nmax + 0.1*k)/max for k = -9..9 and keeps the least-squares
// fit with the largest sumlx^2/suml2. Writes L[i] = level + nmax (0 for an all-zero group); returns the scale.
fn make_qx_quants(n: u32, nmax: i32, x: ptr<function, SubF32>, w: ptr<function, SubF32>, L: ptr<function, SubI32>) -> f32 {
  var max_x = 0.0f; // the signed value with the largest |x|; the first one wins ties
  var amax = 0.0f;
  for (var i = 0u; i < n; i++) {
    let ax = abs(x[i]);
    if (ax > amax) {
      amax = ax;
      max_x = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (var i = 0u; i < n; i++) { L[i] = 0; }
    return 0.0f;
  }
  let fnmax = no_fold(f32(nmax));
  var iscale = -fnmax / max_x;
  var levels: SubI32; // this candidate's levels, before adding nmax
  var wx: SubF32; // w*x, the same for every candidate
  var sumlx = 0.0f;
  var suml2 = 0.0f;
  for (var i = 0u; i < n; i++) {
    let l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    levels[i] = l;
    L[i] = l + nmax;
    wx[i] = w[i] * x[i];
    let fl = f32(l);
    sumlx += wx[i] * fl;
    suml2 += w[i] * fl * fl;
  }
  var scale = select(0.0f, sumlx / suml2, suml2 != 0.0f);
  var best = scale * sumlx;
  for (var candidate = -9; candidate <= 9; candidate++) {
    if (candidate == 0) { continue; }
    iscale = -(fnmax + no_fold(0.1f) * f32(candidate)) / max_x;
    var changed = 0;
    for (var i = 0u; i < n; i++) {
      let l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      changed |= l ^ levels[i];
      levels[i] = l;
    }
    if (changed == 0) { continue; } // same levels, same sums: the same verdict as the previous candidate
    sumlx = 0.0f;
    suml2 = 0.0f;
    for (var i = 0u; i < n; i++) {
      let fl = f32(levels[i]);
      sumlx += wx[i] * fl;
      suml2 += w[i] * fl * fl;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (var i = 0u; i < n; i++) { L[i] = levels[i] + nmax; }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// make_q3_quants with do_rmse (q3_K's reference encoder): make_qx_quants' first fit with x^2 weights,
// then up to 5 passes that move single levels while the weighted fit improves.
// Writes L[i] = level + nmax (0 for an all-zero group); returns the scale.
fn make_q3_quants(n: u32, nmax: i32, x: ptr<function, SubF32>, L: ptr<function, SubI32>) -> f32 {
  var max_x = 0.0f;
  var amax = 0.0f;
  for (var i = 0u; i < n; i++) {
    let ax = abs(x[i]);
    if (ax > amax) {
      amax = ax;
      max_x = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (var i = 0u; i < n; i++) { L[i] = 0; }
    return 0.0f;
  }
  let iscale = -no_fold(f32(nmax)) / max_x;
  var sumlx = 0.0f;
  var suml2 = 0.0f;
  for (var i = 0u; i < n; i++) {
    let xi = x[i];
    let l = clamp(nearest_int(iscale * xi), -nmax, nmax - 1);
    L[i] = l;
    let w = xi * xi;
    let fl = f32(l);
    sumlx += w * xi * fl;
    suml2 += w * fl * fl;
  }
  for (var itry = 0; itry < 5; itry++) {
    var n_changed = 0;
    for (var i = 0u; i < n; i++) {
      let xi = x[i];
      let w = xi * xi;
      let li = f32(L[i]);
      var slx = sumlx - w * xi * li;
      if (slx > 0.0f) {
        var sl2 = suml2 - w * li * li;
        let new_l = clamp(nearest_int(xi * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          let fl = f32(new_l);
          slx += w * xi * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = new_l;
            sumlx = slx;
            suml2 = sl2;
            n_changed++;
          }
        }
      }
    }
    if (n_changed == 0) { break; }
  }
  for (var i = 0u; i < n; i++) { L[i] += nmax; }
  return select(0.0f, sumlx / suml2, suml2 > 0.0f);
}

// What make_qkx_quants returns besides the levels.
struct AffineFit {
  scale: f32,
  // -min (>= 0): the value stored for the sub-block's offset
  neg_min: f32,
}

// make_qkx2_quants (bounded = false: levels clamp(nearest_int(v), 0, nmax)) and make_qkx3_quants
// (bounded = true: v > 0 ? nearest_int(min(v, nmax)) : 0), for q2_K/q4_K/q5_K (ref and imatrix):
// asymmetric levels 0..nmax with a min <= 0, weighted by w. Tries nstep+1 inverse scales
// (rmin + rdelta*k + nmax)/(max - min) and keeps the least-squares fit with the smallest weighted
// error (squared, or absolute when use_mad). Writes L; returns the scale and -min.
fn make_qkx_quants(n: u32, nmax: i32, x: ptr<function, SubF32>, w: ptr<function, SubF32>, L: ptr<function, SubI32>,
                   rmin: f32, rdelta: f32, nstep: i32, use_mad: bool, bounded: bool) -> AffineFit {
  let fnmax = no_fold(f32(nmax));
  var min_x = x[0];
  var max_x = x[0];
  var sum_w = w[0];
  var sum_x = sum_w * x[0];
  for (var i = 1u; i < n; i++) {
    let xi = x[i];
    if (xi < min_x) { min_x = xi; }
    if (xi > max_x) { max_x = xi; }
    sum_w += w[i];
    sum_x += w[i] * xi;
  }
  if (min_x > 0.0f) { min_x = 0.0f; }
  if (max_x <= min_x) {
    for (var i = 0u; i < n; i++) { L[i] = 0; }
    return AffineFit(0.0f, -min_x);
  }
  var range = max_x - min_x;
  var iscale = fnmax / range;
  var scale = no_fold(1.0f) / iscale;
  var xm: SubF32; // x - min for the current best min
  var best_error = 0.0f;
  for (var i = 0u; i < n; i++) {
    let xi = x[i];
    xm[i] = xi - min_x;
    let l = clamp(nearest_int(iscale * xm[i]), 0, nmax);
    L[i] = l;
    var diff = scale * f32(l) + min_x - xi;
    diff = select(diff * diff, abs(diff), use_mad);
    best_error += w[i] * diff;
  }
  if (nstep < 1) { return AffineFit(scale, -min_x); }
  var laux: SubI32; // this candidate's levels
  for (var candidate = 0; candidate <= nstep; candidate++) {
    iscale = (no_fold(rmin) + no_fold(rdelta) * f32(candidate) + fnmax) / range;
    var changed = select(0, 1, candidate == 0);
    for (var i = 0u; i < n; i++) {
      let v = iscale * xm[i];
      var l: i32;
      if (bounded) {
        l = select(0, nearest_int(select(fnmax, v, v < fnmax)), v > 0.0f);
      } else {
        l = clamp(nearest_int(v), 0, nmax);
      }
      changed |= l ^ laux[i];
      laux[i] = l;
    }
    if (changed == 0) { continue; } // same levels as the previous candidate: same fit, same error
    var sum_l = 0.0f;
    var sum_l2 = 0.0f;
    var sum_xl = 0.0f;
    for (var i = 0u; i < n; i++) {
      let fl = f32(laux[i]);
      let wl = w[i] * fl;
      sum_l += wl;
      sum_l2 += wl * fl;
      sum_xl += wl * x[i];
    }
    let D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      var this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      var this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      // The terms are >= 0, so once the partial sum reaches best_error this fit cannot win.
      var cur_error = 0.0f;
      for (var i = 0u; i < n && cur_error < best_error; i++) {
        var diff = this_scale * f32(laux[i]) + this_min - x[i];
        diff = select(diff * diff, abs(diff), use_mad);
        cur_error += w[i] * diff;
      }
      if (cur_error < best_error) {
        for (var i = 0u; i < n; i++) { L[i] = laux[i]; }
        best_error = cur_error;
        scale = this_scale;
        min_x = this_min;
        range = max_x - min_x;
        for (var i = 0u; i < n; i++) { xm[i] = x[i] - min_x; }
      }
    }
  }
  return AffineFit(scale, -min_x);
}

// make_qp_quants (the imatrix encoders' scale step): quantizes n non-negative sub-block scales (or mins)
// x to 0..nmax with weights qw; writes L and returns the super-block scale. ggml stores L as uint8_t, so a
// level is kept modulo 256 exactly where C's store wraps.
fn make_qp_quants(n: u32, nmax: i32, x: ptr<function, SubF32>, L: ptr<function, SubI32>, qw: ptr<function, SubF32>) -> f32 {
  let fnmax = no_fold(f32(nmax));
  var max_x = 0.0f;
  for (var i = 0u; i < n; i++) {
    max_x = select(x[i], max_x, max_x > x[i]); // MAX(a, b) = a > b ? a : b
  }
  if (max_x < GROUP_MAX_EPS) {
    for (var i = 0u; i < n; i++) { L[i] = 0; }
    return 0.0f;
  }
  var iscale = fnmax / max_x;
  for (var i = 0u; i < n; i++) { L[i] = nearest_int(iscale * x[i]) & 0xff; }
  let scale = no_fold(1.0f) / iscale;
  var best_mse = 0.0f;
  for (var i = 0u; i < n; i++) {
    let diff = x[i] - scale * f32(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (var candidate = -4; candidate <= 4; candidate++) {
    if (candidate == 0) { continue; }
    let iscale_step = (no_fold(0.1f) * f32(candidate) + fnmax) / max_x;
    let scale_step = no_fold(1.0f) / iscale_step;
    var mse = 0.0f;
    for (var i = 0u; i < n; i++) {
      let l = min(nearest_int(iscale_step * x[i]), nmax);
      let diff = x[i] - scale_step * f32(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_step;
    }
  }
  var sumlx = 0.0f;
  var suml2 = 0.0f;
  for (var i = 0u; i < n; i++) {
    let l = min(nearest_int(iscale * x[i]), nmax);
    L[i] = l & 0xff;
    let fl = f32(l);
    sumlx += qw[i] * x[i] * fl;
    suml2 += qw[i] * fl * fl;
  }
  for (var itry = 0; itry < 5; itry++) {
    var n_changed = 0;
    for (var i = 0u; i < n; i++) {
      let w = qw[i];
      let xi = x[i];
      let li = f32(L[i]);
      var slx = sumlx - w * xi * li;
      var sl2 = suml2 - w * li * li;
      if (slx > 0.0f && sl2 > 0.0f) {
        let new_l = min(nearest_int(xi * sl2 / slx), nmax);
        if (new_l != L[i]) {
          let fl = f32(new_l);
          slx += w * xi * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = new_l & 0xff;
            sumlx = slx;
            suml2 = sl2;
            n_changed++;
          }
        }
      }
    }
    if (n_changed == 0) { break; }
  }
  return select(0.0f, sumlx / suml2, suml2 > 0.0f);
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

fn qx_terms(n: u32, x: ptr<function, SubF32>, w: ptr<function, SubF32>) -> QxTerms {
  var t = QxTerms(0.0f, 0.0f, 0.0f, 0.0f);
  for (var i = 0u; i < n; i++) {
    t.amax = max(t.amax, abs(x[i]));
    t.wmax = max(t.wmax, w[i]);
  }
  for (var i = 0u; i < n; i++) {
    if (abs(x[i]) >= 0.5f * t.amax) {
      t.sumlx = max(t.sumlx, w[i] * abs(x[i]));
      t.suml2 = max(t.suml2, w[i]);
    }
  }
  return t;
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
fn qkx_flush_safe(n: u32, x: ptr<function, SubF32>, w: ptr<function, SubF32>) -> bool {
  var amax = 0.0f;
  var wmax = 0.0f;
  for (var i = 0u; i < n; i++) {
    amax = max(amax, abs(x[i]));
    wmax = max(wmax, w[i]);
  }
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
