// C = beta * C + alpha * A B, f32, with every operand addressed through (offset, row stride, column stride),
// so one kernel serves the calibration Gram matrix G += X^T X (A = X read transposed) and GPTQ's lazy batch
// update W[:, i2:] -= Err1 U[i1:i2, i2:] (sub-blocks of larger matrices).
//
// Tiling, chosen for SwiftShader (a CPU running invocations 4 at a time as SIMD lanes, where workgroup memory
// and barriers are costly and straight-line arithmetic is cheap): no workgroup memory, no barrier. Measured
// there against the classic 64 x 64 tile through workgroup memory: 2 to 4 times the GFLOP/s; per-invocation
// vec4 loads, 8 x 8 or 4 x 4 blocks and columns interleaved across lanes were all slower than 8 x 4.
// Each invocation keeps an 8 x 4 block of C in registers and walks K reading A's 8 values and B's 4 values
// straight from storage (cache-resident), 32 fused multiply-adds per step, two steps per loop turn. A workgroup of 8 x 8 invocations covers 64 x 32 of C. Reads past a
// sub-matrix's edge stay inside the buffer (WebGPU's bounds-checked access) and only feed values that are
// never stored. With `upperOnly`, blocks wholly below the diagonal are skipped (the Gram matrix is symmetric;
// the CPU mirrors the upper triangle); with `bUpper`, K stops at the block's last column (B upper triangular,
// as U in the factorization's block-row update).

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
  // Nonzero when B is upper triangular (element (k, n) zero for k > n): the products with those zeros are skipped.
  bUpper: u32,
}

// Rows x columns of C per invocation, and invocations per workgroup along each (src/gpu/gptq.ts dispatches).
const ROWS: u32 = 8u;
const COLS: u32 = 4u;
const WG_X: u32 = 8u;
const WG_Y: u32 = 8u;

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * WG_Y * ROWS + (li / WG_X) * ROWS;
  let n0 = wg.x * WG_X * COLS + (li % WG_X) * COLS;
  if (m0 >= p.m || n0 >= p.n || (p.upperOnly != 0u && m0 >= n0 + COLS)) {
    return;
  }
  // Accumulators as separate vectors (no dynamically indexed arrays: those live in memory).
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  var acc4 = vec4<f32>(0.0);
  var acc5 = vec4<f32>(0.0);
  var acc6 = vec4<f32>(0.0);
  var acc7 = vec4<f32>(0.0);
  let aBase = p.aOff + m0 * p.aRow;
  let bBase = p.bOff + n0 * p.bCol;
  var kEnd = p.k;
  if (p.bUpper != 0u) {
    kEnd = min(kEnd, n0 + COLS);
  }
  let kEven = kEnd & ~1u;
  var k = 0u;
  for (; k < kEven; k += 2u) {
    step(aBase + k * p.aCol, bBase + k * p.bRow, &acc0, &acc1, &acc2, &acc3, &acc4, &acc5, &acc6, &acc7);
    step(aBase + (k + 1u) * p.aCol, bBase + (k + 1u) * p.bRow, &acc0, &acc1, &acc2, &acc3, &acc4, &acc5, &acc6, &acc7);
  }
  if (k < kEnd) {
    step(aBase + k * p.aCol, bBase + k * p.bRow, &acc0, &acc1, &acc2, &acc3, &acc4, &acc5, &acc6, &acc7);
  }
  store(m0 + 0u, n0, acc0);
  store(m0 + 1u, n0, acc1);
  store(m0 + 2u, n0, acc2);
  store(m0 + 3u, n0, acc3);
  store(m0 + 4u, n0, acc4);
  store(m0 + 5u, n0, acc5);
  store(m0 + 6u, n0, acc6);
  store(m0 + 7u, n0, acc7);
}

// One step along K: A's column k at rows m0 .. m0+7 (starting at aAt) times B's row k at columns n0 .. n0+3.
fn step(
  aAt: u32,
  bAt: u32,
  acc0: ptr<function, vec4<f32>>,
  acc1: ptr<function, vec4<f32>>,
  acc2: ptr<function, vec4<f32>>,
  acc3: ptr<function, vec4<f32>>,
  acc4: ptr<function, vec4<f32>>,
  acc5: ptr<function, vec4<f32>>,
  acc6: ptr<function, vec4<f32>>,
  acc7: ptr<function, vec4<f32>>,
) {
  let bv = vec4<f32>(b[bAt], b[bAt + p.bCol], b[bAt + 2u * p.bCol], b[bAt + 3u * p.bCol]);
  *acc0 = fma(vec4<f32>(a[aAt + 0u * p.aRow]), bv, *acc0);
  *acc1 = fma(vec4<f32>(a[aAt + 1u * p.aRow]), bv, *acc1);
  *acc2 = fma(vec4<f32>(a[aAt + 2u * p.aRow]), bv, *acc2);
  *acc3 = fma(vec4<f32>(a[aAt + 3u * p.aRow]), bv, *acc3);
  *acc4 = fma(vec4<f32>(a[aAt + 4u * p.aRow]), bv, *acc4);
  *acc5 = fma(vec4<f32>(a[aAt + 5u * p.aRow]), bv, *acc5);
  *acc6 = fma(vec4<f32>(a[aAt + 6u * p.aRow]), bv, *acc6);
  *acc7 = fma(vec4<f32>(a[aAt + 7u * p.aRow]), bv, *acc7);
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
