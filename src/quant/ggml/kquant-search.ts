/**
 * The scale searches behind llama.cpp's K-quants, in ggml's float32 operation order
 * (ggml/src/ggml-quants.c: make_qx_quants, make_q3_quants, make_qkx2_quants, make_qkx3_quants,
 * make_qp_quants).
 *
 * Bit-exactness rules kept throughout:
 * - every C `float` result goes through fr(); `a*b + c` is two roundings (the golden files were built
 *   without FMA contraction), and sums run in C's loop order;
 * - a product like `w*l*l` is `(w*l)*l`: C evaluates left to right;
 * - C's narrowing stores (`uint8_t L[i] = l`) wrap: we store into Uint8Array/Int8Array, which wraps the
 *   same way, and read back the stored value where C reads L[i].
 *
 * Shape for the WGSL port: plain functions over (array, offset) pairs, no allocation, no closures. Each
 * function documents which array slots it reads and writes.
 *
 * Speed notes (V8): each function takes `Math.fround` into a local `fr`, and keeps numeric constants and
 * typed copies of flag parameters in locals. Module-level bindings and untyped parameters are reloaded and
 * re-checked on every loop iteration by TurboFan, which costs 10-30% in these loops.
 */
import { GROUP_MAX_EPS, nearestInt, nearestIntInRange, ROUND_MAGIC, signedAbsMax } from "./common.ts";

/**
 * How make_qx_quants and make_q3_quants start: the signed value with the largest |x| in the group; or, when
 * that is below GROUP_MAX_EPS (an all-zero group), 0, with the group's levels L[lo..lo+n) set to 0.
 */
function groupMax(xBits: Int32Array, xo: number, n: number, L: Int8Array, lo: number): number {
  const max = signedAbsMax(xBits, xo, n);
  if (Math.abs(max) >= GROUP_MAX_EPS) return max;
  for (let i = 0; i < n; i++) L[lo + i] = 0;
  return 0;
}

/** make_qx_quants' candidate scales: ggml's first fit (is = 0), then is = -9..-1, 1..9. */
export const QX_CANDIDATES = 19;

/** The length makeQxQuants needs of its `levels` scratch for groups of n weights. */
export function qxLevelsLength(n: number): number {
  return QX_CANDIDATES * n;
}

/** The length makeQxQuants needs of its `scratch` for groups of n weights. */
export function qxScratchLength(n: number): number {
  return 4 * n + 2 * QX_CANDIDATES;
}

/**
 * make_qx_quants with rmse_type 1 (the only type the K-quants use): symmetric levels -nmax..nmax-1,
 * stored as L = level + nmax in L[lo..lo+n), weighted by w[wo..wo+n) (ggml's qw, or x^2 when qw is NULL:
 * the caller fills w then). Reads x[xo..xo+n) (xBits: its bits, see signedAbsMax). Returns the scale.
 * Scratch: levels[0..qxLevelsLength(n)) holds candidate k's levels at [kn, kn+n) as integral doubles, so
 * the sums load them without a conversion each (1.03-1.09x); scratch[0..qxScratchLength(n)) holds the
 * group's x, w and w*x as doubles (exact, being float32 values; 1.07-1.14x), then each candidate's two sums,
 * then the weights some candidate clamps.
 *
 * ggml tries iscale = -(nmax + 0.1*is)/max for is = -9..9 after its first fit (is = 0). Here that runs in
 * three passes with ggml's result:
 * 1. Every candidate's levels, unclamped, four candidates a loop (one load of x for all four, 1.07x over
 *    two). A candidate whose levels equal the previous one's has the same sums: if that one won, winning
 *    again would store the same L, scale and best; if it lost, best has not moved and this one loses again. So only the
 *    candidates whose levels changed need their sums (the unclamped levels can differ where the clamped
 *    ones do not: then a candidate is summed for nothing, never skipped wrongly).
 *    The clamp to -nmax..nmax-1 comes after, on the weights that need it: a weight's level is monotone
 *    in is (each step, fround and round-half-even included, is monotone), so it leaves the range for
 *    some candidate only if it does for is = -9 or is = 9. Those are a few weights near |max|; the clamp's
 *    two compare-and-branch pairs per weight and candidate were a quarter of this loop (1.1x).
 * 2. The sums of the changed candidates, four at a time: each float32 sum is a chain of dependent
 *    add-and-round steps, bound by latency, and eight chains run side by side (1.05x over four).
 * 3. ggml's winner tests, in its candidate order.
 */
export function makeQxQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  xBits: Int32Array,
  xo: number,
  L: Int8Array,
  lo: number,
  w: Float32Array,
  wo: number,
  levels: Float64Array,
  scratch: Float64Array,
): number {
  const f = scratch;
  const fr = Math.fround;
  const max = groupMax(xBits, xo, n, L, lo);
  if (max === 0) return 0;
  const lmin = -nmax;
  const lmax = nmax - 1;
  const sums = 3 * n; // candidate k's sumlx at f[sums + 2k], suml2 at f[sums + 2k + 1]
  const clamped = sums + 2 * QX_CANDIDATES; // f[clamped..clamped+nClamped): weights to clamp
  const tenth = fr(0.1);
  // |iscale * x| <= nmax + 1 for every candidate, well inside nearest_int's range; the literal
  // 6755399441055744 is ROUND_MAGIC (a module-level constant is reloaded and unboxed at every use).
  const iscale = fr(-nmax / max);
  const iscaleFirst = fr(-fr(nmax + fr(tenth * -9)) / max);
  const iscaleLast = fr(-fr(nmax + fr(tenth * 9)) / max);
  let nClamped = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const wi = w[wo + i]!;
    levels[i] = fr(iscale * xi) + 6755399441055744 - 6755399441055744;
    const lFirst = fr(iscaleFirst * xi) + 6755399441055744 - 6755399441055744;
    const lLast = fr(iscaleLast * xi) + 6755399441055744 - 6755399441055744;
    if (lFirst < lmin || lFirst > lmax || lLast < lmin || lLast > lmax) f[clamped + nClamped++] = i;
    f[i] = xi;
    f[n + i] = wi;
    f[2 * n + i] = fr(wi * xi);
  }
  // Pass 1: candidates 1..18 (is = -9..-1, 1..9) four a loop (1..4, 5..8, 9..12, 13..16), then 17 and 18;
  // bit k of `changed` when candidate k changed.
  let changed = 1;
  for (let k = 1; k < 17; k += 4) {
    const is0 = k <= 9 ? k - 10 : k - 9;
    const is1 = k + 1 <= 9 ? k - 9 : k - 8;
    const is2 = k + 2 <= 9 ? k - 8 : k - 7;
    const is3 = k + 3 <= 9 ? k - 7 : k - 6;
    const iscale0 = fr(-fr(nmax + fr(tenth * is0)) / max);
    const iscale1 = fr(-fr(nmax + fr(tenth * is1)) / max);
    const iscale2 = fr(-fr(nmax + fr(tenth * is2)) / max);
    const iscale3 = fr(-fr(nmax + fr(tenth * is3)) / max);
    const a = k * n;
    const prev = a - n;
    let changed0 = 0;
    let changed1 = 0;
    let changed2 = 0;
    let changed3 = 0;
    for (let i = 0; i < n; i++) {
      const xi = f[i]!;
      const l0 = fr(iscale0 * xi) + 6755399441055744 - 6755399441055744;
      const l1 = fr(iscale1 * xi) + 6755399441055744 - 6755399441055744;
      const l2 = fr(iscale2 * xi) + 6755399441055744 - 6755399441055744;
      const l3 = fr(iscale3 * xi) + 6755399441055744 - 6755399441055744;
      const d0 = l0 - levels[prev + i]!;
      const d1 = l1 - l0;
      const d2 = l2 - l1;
      const d3 = l3 - l2;
      changed0 += d0 * d0;
      changed1 += d1 * d1;
      changed2 += d2 * d2;
      changed3 += d3 * d3;
      levels[a + i] = l0;
      levels[a + n + i] = l1;
      levels[a + 2 * n + i] = l2;
      levels[a + 3 * n + i] = l3;
    }
    if (changed0 !== 0) changed |= 1 << k;
    if (changed1 !== 0) changed |= 2 << k;
    if (changed2 !== 0) changed |= 4 << k;
    if (changed3 !== 0) changed |= 8 << k;
  }
  {
    const iscaleA = fr(-fr(nmax + fr(tenth * 8)) / max);
    const iscaleB = fr(-fr(nmax + fr(tenth * 9)) / max);
    const a = 17 * n;
    let changedA = 0;
    let changedB = 0;
    for (let i = 0; i < n; i++) {
      const xi = f[i]!;
      const la = fr(iscaleA * xi) + 6755399441055744 - 6755399441055744;
      const lb = fr(iscaleB * xi) + 6755399441055744 - 6755399441055744;
      const da = la - levels[a - n + i]!;
      const db = lb - la;
      changedA += da * da;
      changedB += db * db;
      levels[a + i] = la;
      levels[a + n + i] = lb;
    }
    if (changedA !== 0) changed |= 1 << 17;
    if (changedB !== 0) changed |= 1 << 18;
  }
  for (let c = clamped; c < clamped + nClamped; c++) {
    for (let o = f[c]!; o < QX_CANDIDATES * n; o += n) {
      const l = levels[o]!;
      levels[o] = l < lmin ? lmin : l > lmax ? lmax : l;
    }
  }
  // Pass 2: the changed candidates' sums, four at a time (the last group filled up by repeating its last).
  for (let m = changed; m !== 0; ) {
    const k0 = 31 - Math.clz32(m & -m);
    m &= m - 1;
    const k1 = m === 0 ? k0 : 31 - Math.clz32(m & -m);
    m &= m - 1;
    const k2 = m === 0 ? k1 : 31 - Math.clz32(m & -m);
    m &= m - 1;
    const k3 = m === 0 ? k2 : 31 - Math.clz32(m & -m);
    m &= m - 1;
    candidateSums4(n, f, levels, k0, k1, k2, k3, sums);
  }
  // Pass 3: ggml's winner tests, in its order.
  const sumlx = f[sums]!;
  const suml2 = f[sums + 1]!;
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  let winner = 0;
  for (let k = 1; k < QX_CANDIDATES; k++) {
    if ((changed & (1 << k)) === 0) continue;
    const sx = f[sums + 2 * k]!;
    const s2 = f[sums + 2 * k + 1]!;
    if (s2 > 0 && fr(sx * sx) > fr(best * s2)) {
      scale = fr(sx / s2);
      best = fr(scale * sx);
      winner = k;
    }
  }
  for (let i = 0, from = winner * n; i < n; i++) L[lo + i] = levels[from + i]! + nmax;
  return scale;
}

/**
 * make_qx_quants' sums (sumlx = sum of w*x*l, suml2 = sum of w*l*l, in order, in float32) of candidates
 * ka..kd (their levels at levels[k*n..]), into f[sums + 2k] and f[sums + 2k + 1]; f holds w at [n, 2n) and
 * w*x at [2n, 3n).
 */
function candidateSums4(n: number, f: Float64Array, levels: Float64Array, ka: number, kb: number, kc: number, kd: number, sums: number): void {
  const fr = Math.fround;
  const a = ka * n;
  const b = kb * n;
  const c = kc * n;
  const d = kd * n;
  let sxA = 0;
  let s2A = 0;
  let sxB = 0;
  let s2B = 0;
  let sxC = 0;
  let s2C = 0;
  let sxD = 0;
  let s2D = 0;
  for (let i = 0; i < n; i++) {
    const wi = f[n + i]!;
    const wxi = f[2 * n + i]!;
    const la = levels[a + i]!;
    const lb = levels[b + i]!;
    const lc = levels[c + i]!;
    const ld = levels[d + i]!;
    sxA = fr(sxA + fr(wxi * la));
    s2A = fr(s2A + fr(fr(wi * la) * la));
    sxB = fr(sxB + fr(wxi * lb));
    s2B = fr(s2B + fr(fr(wi * lb) * lb));
    sxC = fr(sxC + fr(wxi * lc));
    s2C = fr(s2C + fr(fr(wi * lc) * lc));
    sxD = fr(sxD + fr(wxi * ld));
    s2D = fr(s2D + fr(fr(wi * ld) * ld));
  }
  f[sums + 2 * ka] = sxA;
  f[sums + 2 * ka + 1] = s2A;
  f[sums + 2 * kb] = sxB;
  f[sums + 2 * kb + 1] = s2B;
  f[sums + 2 * kc] = sxC;
  f[sums + 2 * kc + 1] = s2C;
  f[sums + 2 * kd] = sxD;
  f[sums + 2 * kd + 1] = s2D;
}

/**
 * make_q3_quants (q3_K reference): like make_qx_quants with x^2 weights, then up to 5 passes that move
 * single levels while the weighted fit improves. Writes L[lo..lo+n) = level + nmax (0 for an all-zero
 * group). Returns the scale.
 */
export function makeQ3Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xBits: Int32Array,
  xo: number,
  L: Int8Array,
  lo: number,
  doRmse: boolean,
): number {
  const fr = Math.fround;
  const max = groupMax(xBits, xo, n, L, lo);
  if (max === 0) return 0;
  const lmin = -nmax;
  const lmax = nmax - 1;
  const iscale = fr(-nmax / max);
  if (doRmse) {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      let l = nearestInt(fr(iscale * xi));
      l = l < lmin ? lmin : l > lmax ? lmax : l;
      L[lo + i] = l;
      const w = fr(xi * xi);
      sumlx = fr(sumlx + fr(fr(w * xi) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    for (let itry = 0; itry < 5; itry++) {
      let nChanged = 0;
      for (let i = 0; i < n; i++) {
        const xi = x[xo + i]!;
        const w = fr(xi * xi);
        const li = L[lo + i]!;
        let slx = fr(sumlx - fr(fr(w * xi) * li));
        if (slx > 0) {
          let sl2 = fr(suml2 - fr(fr(w * li) * li));
          let newL = nearestInt(fr(fr(xi * sl2) / slx));
          newL = newL < lmin ? lmin : newL > lmax ? lmax : newL;
          if (newL !== li) {
            slx = fr(slx + fr(fr(w * xi) * newL));
            sl2 = fr(sl2 + fr(fr(w * newL) * newL));
            if (sl2 > 0 && fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2)) {
              L[lo + i] = newL;
              sumlx = slx;
              suml2 = sl2;
              nChanged++;
            }
          }
        }
      }
      if (nChanged === 0) break;
    }
    for (let i = 0; i < n; i++) L[lo + i] = L[lo + i]! + nmax;
    return suml2 > 0 ? fr(sumlx / suml2) : 0;
  }
  for (let i = 0; i < n; i++) {
    const l = nearestInt(fr(iscale * x[xo + i]!));
    L[lo + i] = (l < lmin ? lmin : l > lmax ? lmax : l) + nmax;
  }
  return fr(1 / iscale);
}

/**
 * The arguments that pick one of ggml's make_qkx*_quants searches: the candidate grid rmin + rdelta*is for
 * is = 0..nstep, the error measure (use_mad: |diff| instead of diff^2), and the function, which decides how
 * a candidate level is rounded:
 * - make_qkx2_quants: clamp(nearest_int(v), 0, nmax);
 * - make_qkx3_quants: `v > 0 ? nearest_int(min(v, nmax)) : 0`, as current ggml writes it (min can sit at or
 *   near max by then, so v may be huge, inf or NaN); for every v that older ggml's clamp(nearest_int(v))
 *   handled without overflow the two agree.
 * (They also differ in `max == min` vs `max <= min`, the same for finite x.)
 */
export interface QkxSearch {
  readonly fn: "make_qkx2_quants" | "make_qkx3_quants";
  readonly rmin: number;
  readonly rdelta: number;
  readonly nstep: number;
  readonly useMad: boolean;
}

/** What every importance-weighted encoder with a min uses (q2_K, q4_K, q5_K, q4_1, q5_1). */
export const QKX3_IMATRIX: QkxSearch = { fn: "make_qkx3_quants", rmin: Math.fround(-0.9), rdelta: Math.fround(0.05), nstep: 36, useMad: false };

/**
 * make_qkx2_quants and make_qkx3_quants (see QkxSearch): asymmetric levels 0..nmax with a min <= 0,
 * weighted by weights[0..n). Tries nstep+1 inverse scales (rmin + rdelta*is + nmax)/(max - min) and keeps
 * the least-squares fit with the smallest weighted error. Writes L[lo..lo+n) and minOut[minIdx] = -min
 * (>= 0); Laux[0..n) and xm[0..n) are scratch. Returns the scale.
 *
 * Two shortcuts that cannot change the result: a step whose levels equal the previous step's is skipped
 * (the sums, the fit and its error depend only on the levels, and that error was already compared with
 * the best, which has not moved since or is that error); and the error sum stops once it reaches the
 * best error, since its terms are >= 0 (weights are >= 0) and adding a term >= 0 never makes a float sum
 * smaller.
 */
export function makeQkxQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  xm: Float32Array,
  search: QkxSearch,
  minOut: Float32Array,
  minIdx: number,
): number {
  const fr = Math.fround;
  const bounded = search.fn === "make_qkx3_quants";
  const mad = search.useMad === true;
  const { rmin, rdelta, nstep } = search;
  const top = nmax | 0;
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = fr(sumW + w);
    sumX = fr(sumX + fr(w * xi));
  }
  if (min > 0) min = 0;
  if (max <= min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    minOut[minIdx] = -min;
    return 0;
  }
  let range = fr(max - min);
  let iscale = fr(nmax / range);
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const d = fr(xi - min);
    xm[i] = d;
    const l = nearestInt(fr(iscale * d));
    const lc = l < 0 ? 0 : l > top ? top : l;
    L[lo + i] = lc;
    let diff = fr(fr(fr(scale * lc) + min) - xi);
    diff = mad ? Math.abs(diff) : fr(diff * diff);
    bestError = fr(bestError + fr(weights[i]! * diff));
  }
  if (nstep < 1) {
    minOut[minIdx] = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    // min moves to the best fit found so far, so the range (max - min) changes between steps.
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / range);
    let changed = is === 0 ? 1 : 0;
    if (bounded) {
      for (let i = 0; i < n; i++) {
        const v = fr(iscale * xm[i]!);
        const l = v > 0 ? nearestIntInRange(v < top ? v : top) : 0;
        changed |= l ^ Laux[i]!;
        Laux[i] = l;
      }
    } else {
      for (let i = 0; i < n; i++) {
        let l = nearestInt(fr(iscale * xm[i]!));
        l = l < 0 ? 0 : l > top ? top : l;
        changed |= l ^ Laux[i]!;
        Laux[i] = l;
      }
    }
    if (changed === 0) continue;
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Laux[i]!;
      const wl = fr(weights[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[xo + i]!));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      // Stops once the partial sum reaches bestError: this fit can no longer win (see above).
      let curError = 0;
      for (let i = 0; i < n && curError < bestError; i++) {
        let diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = mad ? Math.abs(diff) : fr(diff * diff);
        curError = fr(curError + fr(weights[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
        range = fr(max - min);
        for (let i = 0; i < n; i++) xm[i] = fr(x[xo + i]! - min);
      }
    }
  }
  minOut[minIdx] = -min;
  return scale;
}

/**
 * make_qp_quants (imatrix K-quants): quantizes the n non-negative sub-block scales (or mins) x[0..n) to
 * 0..nmax with weights qw[0..n), writes L[0..n) and returns the super-block scale.
 */
export function makeQpQuants(n: number, nmax: number, x: Float32Array, L: Uint8Array, qw: Float32Array): number {
  const fr = Math.fround;
  const top = nmax | 0;
  let max = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[i]!;
    max = max > xi ? max : xi; // MAX(a,b) = a > b ? a : b
  }
  if (max < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return 0;
  }
  let iscale = fr(top / max);
  for (let i = 0; i < n; i++) L[i] = nearestInt(fr(iscale * x[i]!));
  const scale = fr(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = fr(x[i]! - fr(scale * L[i]!));
    bestMse = fr(bestMse + fr(fr(qw[i]! * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = fr(fr(fr(fr(0.1) * is) + top) / max);
    const scaleIs = fr(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      let l = nearestInt(fr(iscaleIs * x[i]!));
      l = l < top ? l : top;
      const diff = fr(x[i]! - fr(scaleIs * l));
      mse = fr(mse + fr(fr(qw[i]! * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    let l = nearestInt(fr(iscale * x[i]!));
    l = l < top ? l : top;
    L[i] = l;
    const w = qw[i]!;
    sumlx = fr(sumlx + fr(fr(w * x[i]!) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i]!;
      const xi = x[i]!;
      const li = L[i]!;
      let slx = fr(sumlx - fr(fr(w * xi) * li));
      let sl2 = fr(suml2 - fr(fr(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        let newL = nearestInt(fr(fr(xi * sl2) / slx));
        newL = newL < top ? newL : top;
        if (newL !== li) {
          slx = fr(slx + fr(fr(w * xi) * newL));
          sl2 = fr(sl2 + fr(fr(w * newL) * newL));
          if (fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2)) {
            L[i] = newL;
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (nChanged === 0) break;
  }
  return suml2 > 0 ? fr(sumlx / suml2) : 0;
}
