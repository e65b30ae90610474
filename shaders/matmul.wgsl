// C = beta * C + alpha * A B, f32, with every operand addressed through (offset, row stride, column stride),
// so one kernel serves the calibration Gram matrix G += X^T X (A = X read transposed) and GPTQ's lazy batch
// update W[:, i2:] -= Err1 U[i1:i2, i2:] (sub-blocks of larger matrices).
//
// Tiling: a workgroup computes a 64 x 64 tile of C with 16 x 16 threads, 4 x 4 values each; A and B pass
// through workgroup memory 16 along K at a time. With `upperOnly`, tiles wholly below the diagonal are
// skipped (the Gram matrix is symmetric; the CPU mirrors the upper triangle).

// Binding 0: A's values (any layout; element (m, k) at aOff + m * aRow + k * aCol).
@group(0) @binding(0) var<storage, read> a: array<f32>;
// Binding 1: B's values (element (k, n) at bOff + k * bRow + n * bCol). May be the same buffer as A.
@group(0) @binding(1) var<storage, read> b: array<f32>;
// Binding 2: C, updated in place (element (m, n) at cOff + m * cRow + n).
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
// Binding 3: shapes, addressing and coefficients.
@group(0) @binding(3) var<uniform> p: Params;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  upperOnly: u32,
  aOff: u32,
  aRow: u32,
  aCol: u32,
  bOff: u32,
  bRow: u32,
  bCol: u32,
  cOff: u32,
  cRow: u32,
  alpha: f32,
  beta: f32,
}

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tileA: array<f32, 1024>; // 64 x 16, row-major
var<workgroup> tileB: array<f32, 1024>; // 16 x 64, row-major

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m0 = wg.y * TILE;
  let n0 = wg.x * TILE;
  if (p.upperOnly != 0u && m0 >= n0 + TILE) {
    return; // uniform across the workgroup: no barrier is skipped by some threads only
  }
  let t = lid.y * 16u + lid.x;
  // Four rows of four accumulators as vectors (no dynamically indexed arrays: some drivers spill those).
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.k; k0 += TK) {
    for (var s = 0u; s < 4u; s++) {
      let idx = t + s * 256u;
      // Neighbouring threads read neighbouring addresses: along k when A's rows are contiguous, along m
      // when its columns are (X read transposed for X^T X).
      var ar = idx / TK;
      var ak = idx % TK;
      if (p.aRow < p.aCol) {
        ar = idx % TILE;
        ak = idx / TILE;
      }
      var av = 0.0;
      if (m0 + ar < p.m && k0 + ak < p.k) {
        av = a[p.aOff + (m0 + ar) * p.aRow + (k0 + ak) * p.aCol];
      }
      tileA[ar * TK + ak] = av;
      let bk = idx / TILE;
      let bn = idx % TILE;
      var bv = 0.0;
      if (k0 + bk < p.k && n0 + bn < p.n) {
        bv = b[p.bOff + (k0 + bk) * p.bRow + (n0 + bn) * p.bCol];
      }
      tileB[idx] = bv;
    }
    workgroupBarrier();
    let aBase = lid.y * 4u * TK;
    let bBase = lid.x * 4u;
    for (var kk = 0u; kk < TK; kk++) {
      let b4 = vec4<f32>(tileB[kk * TILE + bBase], tileB[kk * TILE + bBase + 1u], tileB[kk * TILE + bBase + 2u], tileB[kk * TILE + bBase + 3u]);
      acc0 = fma(vec4<f32>(tileA[aBase + kk]), b4, acc0);
      acc1 = fma(vec4<f32>(tileA[aBase + TK + kk]), b4, acc1);
      acc2 = fma(vec4<f32>(tileA[aBase + 2u * TK + kk]), b4, acc2);
      acc3 = fma(vec4<f32>(tileA[aBase + 3u * TK + kk]), b4, acc3);
    }
    workgroupBarrier();
  }
  store(m0 + lid.y * 4u, n0 + lid.x * 4u, acc0);
  store(m0 + lid.y * 4u + 1u, n0 + lid.x * 4u, acc1);
  store(m0 + lid.y * 4u + 2u, n0 + lid.x * 4u, acc2);
  store(m0 + lid.y * 4u + 3u, n0 + lid.x * 4u, acc3);
}

// C[m, n0 .. n0+3] = beta * C + alpha * v, inside the matrix only.
fn store(m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.m) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j;
    if (n >= p.n) {
      return;
    }
    let at = p.cOff + m * p.cRow + n;
    var old = 0.0;
    if (p.beta != 0.0) {
      old = p.beta * c[at];
    }
    c[at] = old + p.alpha * v[j];
  }
}
