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
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.k; k0 += TK) {
    for (var s = 0u; s < 4u; s++) {
      let idx = t + s * 256u;
      let ar = idx / TK;
      let ak = idx % TK;
      var av = 0.0;
      if (m0 + ar < p.m && k0 + ak < p.k) {
        av = a[p.aOff + (m0 + ar) * p.aRow + (k0 + ak) * p.aCol];
      }
      tileA[idx] = av;
      let bk = idx / TILE;
      let bn = idx % TILE;
      var bv = 0.0;
      if (k0 + bk < p.k && n0 + bn < p.n) {
        bv = b[p.bOff + (k0 + bk) * p.bRow + (n0 + bn) * p.bCol];
      }
      tileB[idx] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var bv: array<f32, 4>;
      for (var j = 0u; j < 4u; j++) {
        bv[j] = tileB[kk * TILE + lid.x * 4u + j];
      }
      for (var i = 0u; i < 4u; i++) {
        let av = tileA[(lid.y * 4u + i) * TK + kk];
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(av, bv[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y * 4u + i;
    if (m >= p.m) {
      continue;
    }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x * 4u + j;
      if (n >= p.n) {
        continue;
      }
      let at = p.cOff + m * p.cRow + n;
      var old = 0.0;
      if (p.beta != 0.0) {
        old = p.beta * c[at];
      }
      c[at] = old + p.alpha * acc[i * 4u + j];
    }
  }
}
