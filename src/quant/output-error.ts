/**
 * The relative output error of a quantized linear layer on activations X (the GPTQ/AWQ issue's and the
 * golden reference's metric): ||X W^T - X Q^T||_F^2 / ||X W^T||_F^2, in float64, with the numerator computed as
 * ||X (W - Q)^T||_F^2.
 *
 * From the activations themselves (relOutputError) or from their Gram matrix G = X^T X, where it is
 * sum_o d_o^T G d_o / sum_o w_o^T G w_o (relOutputErrorGram): cheaper when there are more tokens than columns,
 * and all that a streamed calibration pass keeps.
 */
import type { MatrixShape } from "./format.ts";

/** ||X (W - Q)^T||^2 / ||X W^T||^2 for X [tokens, cols], W and Q [rows, cols] (row-major float32). */
export function relOutputError(x: Float32Array, w: Float32Array, q: Float32Array, shape: MatrixShape): number {
  const { rows, cols } = shape;
  const tokens = x.length / cols;
  const wRow = new Float64Array(cols);
  const dRow = new Float64Array(cols);
  let num = 0;
  let den = 0;
  for (let o = 0; o < rows; o++) {
    for (let k = 0; k < cols; k++) {
      wRow[k] = w[o * cols + k]!;
      dRow[k] = w[o * cols + k]! - q[o * cols + k]!;
    }
    for (let t = 0; t < tokens; t++) {
      const base = t * cols;
      let y = 0;
      let e = 0;
      for (let k = 0; k < cols; k++) {
        const v = x[base + k]!;
        y += v * wRow[k]!;
        e += v * dRow[k]!;
      }
      den += y * y;
      num += e * e;
    }
  }
  return num / den;
}

/** d^T G d for one row d (float64) and a symmetric cols x cols G. */
export function gramQuadratic(g: Float64Array, d: Float64Array, cols: number): number {
  let total = 0;
  for (let i = 0; i < cols; i++) {
    const di = d[i]!;
    if (di === 0) continue;
    const row = i * cols;
    let s = 0;
    for (let j = 0; j < cols; j++) s += g[row + j]! * d[j]!;
    total += di * s;
  }
  return total;
}

/**
 * sum over rows r of d_r^T G d_r for D [rows, cols] (float64, row-major): four rows share each pass over G, so
 * G (often larger than the cache) is streamed a quarter as often.
 */
export function sumGramQuadratic(g: Float64Array, d: Float64Array, rows: number, cols: number): number {
  let total = 0;
  let r = 0;
  for (; r + 3 < rows; r += 4) {
    const a = r * cols;
    const b = a + cols;
    const c = b + cols;
    const e = c + cols;
    for (let i = 0; i < cols; i++) {
      const row = i * cols;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < cols; j++) {
        const gij = g[row + j]!;
        s0 += gij * d[a + j]!;
        s1 += gij * d[b + j]!;
        s2 += gij * d[c + j]!;
        s3 += gij * d[e + j]!;
      }
      total += d[a + i]! * s0 + d[b + i]! * s1 + d[c + i]! * s2 + d[e + i]! * s3;
    }
  }
  for (; r < rows; r++) total += gramQuadratic(g, d.subarray(r * cols, (r + 1) * cols), cols);
  return total;
}

/** The same error from the Gram matrix G = X^T X (any positive multiple of it gives the same ratio). */
export function relOutputErrorGram(gram: Float64Array, w: Float32Array, q: Float32Array, shape: MatrixShape): number {
  const { rows, cols } = shape;
  const wide = Float64Array.from(w);
  const diff = new Float64Array(rows * cols);
  for (let i = 0; i < diff.length; i++) diff[i] = w[i]! - q[i]!;
  return sumGramQuadratic(gram, diff, rows, cols) / sumGramQuadratic(gram, wide, rows, cols);
}

/** mean((W - Q)^2). */
export function weightMse(w: Float32Array, q: Float32Array): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) {
    const d = w[i]! - q[i]!;
    s += d * d;
  }
  return w.length === 0 ? 0 : s / w.length;
}
