// GPTQ's factorization on the GPU, column by column: U, the upper Cholesky factor of H^-1, as
// src/quant/cholesky.ts computes it on the CPU (same two steps, f32 here as in the reference):
//   reversedCholeskyColumn (j = n-1 down to 0): H = R R^T with R upper; column j of R from the columns after it
//     R_jj = sqrt(H_jj - sum_{k>j} R_jk^2),  R_ij = (H_ij - sum_{k>j} R_ik R_jk) / R_jj  (i < j)
//   invertUpperRow (i = n-1 down to 0): U = R^-1, row i from the rows below it
//     U_ii = 1 / R_ii,  U_ij = -(1 / R_ii) sum_{k=i+1..j} R_ik U_kj  (j > i)
// One dispatch per column or row; the step index comes through a dynamic uniform offset.

// Binding 0: H, n x n row-major (damped; only the upper triangle is read). invertUpperRow: R.
@group(0) @binding(0) var<storage, read> src: array<f32>;
// Binding 1: R (reversedCholeskyColumn) or U (invertUpperRow), n x n row-major, zero-initialised.
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
// Binding 2: word 0 set to 1 when a pivot is not a positive finite number (H not positive definite).
@group(0) @binding(2) var<storage, read_write> status: array<atomic<u32>>;
// Binding 3: n and the step (column j or row i), at a 256-byte dynamic offset per step.
@group(0) @binding(3) var<uniform> step: Step;

struct Step {
  n: u32,
  index: u32,
}

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;
var<workgroup> pivotShared: f32;

@compute @workgroup_size(64)
fn reversedCholeskyColumn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = step.n;
  let j = step.index;
  let rowJ = j * n;
  // Every workgroup reduces the pivot itself (cheaper than another dispatch).
  var s = 0.0;
  for (var k = j + 1u + lid.x; k < n; k += WG) {
    let v = dst[rowJ + k];
    s = fma(v, v, s);
  }
  partial[lid.x] = s;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid.x < half) {
      partial[lid.x] += partial[lid.x + half];
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let d = src[rowJ + j] - partial[0];
    var pivot = 1.0;
    if (d > 0.0 && d < 3.4e38) {
      pivot = sqrt(d);
    } else {
      atomicStore(&status[0], 1u);
    }
    pivotShared = pivot;
    if (wg.x == 0u) {
      dst[rowJ + j] = pivot;
    }
  }
  workgroupBarrier();
  let pivot = pivotShared;
  let i = wg.x * WG + lid.x;
  if (i >= j) {
    return;
  }
  let rowI = i * n;
  var t = src[rowI + j];
  for (var k = j + 1u; k < n; k++) {
    t = fma(-dst[rowI + k], dst[rowJ + k], t);
  }
  dst[rowI + j] = t / pivot;
}

@compute @workgroup_size(64)
fn invertUpperRow(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = step.n;
  let i = step.index;
  let j = i + gid.x;
  if (j >= n) {
    return;
  }
  let rowI = i * n;
  let inv = 1.0 / src[rowI + i];
  if (j == i) {
    dst[rowI + i] = inv;
    return;
  }
  var s = 0.0;
  for (var k = i + 1u; k <= j; k++) {
    s = fma(src[rowI + k], dst[k * n + j], s);
  }
  dst[rowI + j] = -inv * s;
}
