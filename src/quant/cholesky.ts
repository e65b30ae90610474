/**
 * The factorization GPTQ needs: U, the upper Cholesky factor of H^-1 (H^-1 = U^T U, U upper triangular with a
 * positive diagonal), for a symmetric positive definite H. The reference computes it as
 * cholesky(cholesky_inverse(cholesky(H)), upper=True): three O(n^3) steps and an explicit inverse.
 *
 * Here it takes two steps and no explicit inverse, in float64:
 *   1. the "reversed" Cholesky factorization H = R R^T with R upper triangular (Cholesky of H with its rows
 *      and columns in reverse order, read back reversed);
 *   2. U = R^-1 (the inverse of a triangular matrix), since H^-1 = R^-T R^-1 = U^T U and U is upper with a
 *      positive diagonal, which makes it the (unique) upper Cholesky factor of H^-1.
 * Each step costs n^3/6 multiply-adds. Matrices are n x n, row-major.
 */

/**
 * R upper triangular with H = R R^T, or undefined when H is not (numerically) positive definite: a pivot
 * that is not a positive finite number. Reads only the upper triangle of H.
 */
export function reversedCholesky(h: Float64Array, n: number): Float64Array | undefined {
  const r = new Float64Array(n * n);
  for (let j = n - 1; j >= 0; j--) {
    const rowJ = j * n;
    let s = h[rowJ + j]!;
    for (let k = j + 1; k < n; k++) s -= r[rowJ + k]! * r[rowJ + k]!;
    if (!(s > 0 && s < Infinity)) return undefined;
    const pivot = Math.sqrt(s);
    r[rowJ + j] = pivot;
    const inv = 1 / pivot;
    for (let i = 0; i < j; i++) {
      const rowI = i * n;
      let t = h[rowI + j]!;
      for (let k = j + 1; k < n; k++) t -= r[rowI + k]! * r[rowJ + k]!;
      r[rowI + j] = t * inv;
    }
  }
  return r;
}

/** The inverse of an upper triangular matrix with a non-zero diagonal (upper triangular too). */
export function invertUpper(r: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  // Row i of U = -(1/R_ii) sum_{k>i} R_ik U_k (rows below are done), then U_ii = 1/R_ii.
  for (let i = n - 1; i >= 0; i--) {
    const rowI = i * n;
    for (let k = i + 1; k < n; k++) {
      const rik = r[rowI + k]!;
      if (rik === 0) continue;
      const rowK = k * n;
      for (let j = k; j < n; j++) u[rowI + j] = u[rowI + j]! + rik * u[rowK + j]!;
    }
    const inv = 1 / r[rowI + i]!;
    for (let j = i + 1; j < n; j++) u[rowI + j] = -u[rowI + j]! * inv;
    u[rowI + i] = inv;
  }
  return u;
}

/** U with H^-1 = U^T U (upper, positive diagonal), or undefined when H is not positive definite. */
export function upperCholeskyOfInverse(h: Float64Array, n: number): Float64Array | undefined {
  const r = reversedCholesky(h, n);
  return r && invertUpper(r, n);
}
