// GPTQ's factorization on the GPU, blocked: U, the upper Cholesky factor of H^-1, as src/quant/cholesky.ts
// computes it on the CPU (the same two steps, f32 here as in the reference):
//   the reversed Cholesky factor R (H = R R^T, R upper), then U = R^-1.
// The driver (src/gpu/gptq.ts gpuUpperCholeskyOfInverse) walks blocks of 64 columns from the last one up,
// right-looking; per block J = [j0, j1):
//   1. factorDiagonalBlock (this kernel, one workgroup): R_JJ from the block of H already updated by the
//      blocks after it, and its inverse U_JJ = R_JJ^-1 (into U and into D, a contiguous copy);
//   2. the panel R[0:j0, J] = H[0:j0, J] U_JJ^T and the update H[0:j0, 0:j0] -= R[0:j0, J] R[0:j0, J]^T
//      (upper triangle), both with the matrix-multiply kernel (shaders/matmul.wgsl);
//   3. U's block row J: U[J, j1:] = -U_JJ (R[J, j1:] U[j1:, j1:]), two more matrix multiplies.
// Inside the diagonal block, column by column (j = j1-1 down to j0):
//   R_jj = sqrt(H_jj - sum_{j<k<j1} R_jk^2),  R_ij = (H_ij - sum_{j<k<j1} R_ik R_jk) / R_jj  (j0 <= i < j)
// then row by row (i = j1-1 down to j0):
//   U_ii = 1 / R_ii,  U_ij = -(1 / R_ii) sum_{k=i+1..j} R_ik U_kj  (i < j < j1)

// Binding 0: H, n x n row-major, damped and updated by the later blocks (only the upper triangle is read).
@group(0) @binding(0) var<storage, read> h: array<f32>;
// Binding 1: R, n x n row-major, zero-initialised: this kernel writes the block's upper triangle.
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
// Binding 2: U, n x n row-major, zero-initialised: this kernel writes U_JJ.
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
// Binding 3: D, 64 x 64 row-major: U_JJ again (size x size at row stride `size`), for the multiplies that
// read it while they write U or R.
@group(0) @binding(3) var<storage, read_write> d: array<f32>;
// Binding 4: word 0 set to 1 when a pivot is not a positive finite number (H not positive definite).
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>>;
// Binding 5: the matrix size n, the block's first column j0 and its size (at most 64).
@group(0) @binding(5) var<uniform> blk: Block;

struct Block {
  n: u32,
  j0: u32,
  size: u32,
}

@compute @workgroup_size(64)
fn factorDiagonalBlock(@builtin(local_invocation_id) lid: vec3<u32>) {
  let n = blk.n;
  let j0 = blk.j0;
  let size = blk.size;
  let j1 = j0 + size;
  let t = lid.x;
  // Thread t owns row j0 + t of R (factorization) and column j0 + t of U (inverse).
  let i = j0 + t;
  for (var jj = size; jj > 0u; jj--) {
    let j = j0 + jj - 1u;
    let rowJ = j * n;
    // Every thread computes the pivot itself (the same reads for all, cache-resident): a reduction through
    // workgroup memory would cost more barriers than the 63 multiply-adds it saves (SwiftShader runs
    // invocations as coroutines, barriers are their switches).
    var dd = h[rowJ + j];
    for (var k = j + 1u; k < j1; k++) {
      let v = r[rowJ + k];
      dd = fma(-v, v, dd);
    }
    var pivot = 1.0;
    if (dd > 0.0 && dd < 3.4e38) {
      pivot = sqrt(dd);
    } else if (t == 0u) {
      atomicStore(&status[0], 1u);
    }
    if (t == 0u) {
      r[rowJ + j] = pivot;
    }
    if (i < j) {
      let rowI = i * n;
      var acc = h[rowI + j];
      for (var k = j + 1u; k < j1; k++) {
        acc = fma(-r[rowI + k], r[rowJ + k], acc);
      }
      r[rowI + j] = acc / pivot;
    }
    storageBarrier();
    workgroupBarrier();
  }
  let j = i;
  for (var ii = size; ii > 0u; ii--) {
    let row = j0 + ii - 1u;
    let rowI = row * n;
    let inv = 1.0 / r[rowI + row];
    if (j < j1 && j >= row) {
      var v = inv;
      if (j > row) {
        var s = 0.0;
        for (var k = row + 1u; k <= j; k++) {
          s = fma(r[rowI + k], u[k * n + j], s);
        }
        v = -inv * s;
      }
      u[rowI + j] = v;
      d[(row - j0) * size + (j - j0)] = v;
    } else if (j < row) {
      // D is reused block after block at another row stride: its lower triangle must be written too.
      d[(row - j0) * size + (j - j0)] = 0.0;
    }
    storageBarrier();
    workgroupBarrier();
  }
}
