import { describe, expect, it } from "vitest";
import { calibrationStats, clipSampleStep, hessian, HessianAccumulator } from "./hessian.ts";
import { relOutputError, relOutputErrorGram } from "./output-error.ts";
import { upperCholeskyOfInverse } from "./cholesky.ts";
import { isQuantInputError } from "./errors.ts";
import { gaussian } from "../../test/random.ts";

/** X^T X summed token by token in the plainest way. */
function naiveGram(x: Float32Array, cols: number, step = 1): { gram: Float64Array; tokens: number } {
  const n = x.length / cols;
  const gram = new Float64Array(cols * cols);
  let tokens = 0;
  for (let t = 0; t < n; t += step, tokens++) {
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) gram[i * cols + j] = gram[i * cols + j]! + x[t * cols + i]! * x[t * cols + j]!;
  }
  return { gram, tokens };
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m / scale;
}

describe("HessianAccumulator", () => {
  const cols = 37;
  const tokens = 1100;
  const x = gaussian(tokens * cols, 1.5, 7);

  it("streams chunks of any size to the Gram matrix, token count and channel statistics of the whole set", () => {
    const acc = new HessianAccumulator(cols, { clipSampleStep: 2 });
    for (const [a, b] of [[0, 1], [1, 130], [130, 131], [131, 700], [700, tokens]] as const) acc.add(x.subarray(a * cols, b * cols));
    const got = acc.result();
    const want = naiveGram(x, cols);
    expect(got.tokens).toBe(tokens);
    expect(maxRelDiff(got.gram, want.gram)).toBeLessThan(1e-13);
    // The GPTQ reference's H = 2/n X^T X.
    expect(maxRelDiff(hessian(got), want.gram.map((v) => (2 * v) / tokens))).toBeLessThan(1e-13);
    for (let c = 0; c < cols; c++) {
      let sum = 0;
      let max = 0;
      for (let t = 0; t < tokens; t++) {
        sum += Math.abs(x[t * cols + c]!);
        max = Math.max(max, Math.abs(x[t * cols + c]!));
      }
      expect(got.meanAbs[c]).toBeCloseTo(sum / tokens, 12);
      expect(got.maxAbs[c]).toBe(max);
    }
    // AWQ's clip sample: tokens 0, 2, 4, ... across chunk boundaries that split the stride.
    const sample = naiveGram(x, cols, 2);
    expect(got.clipSample?.tokens).toBe(sample.tokens);
    expect(maxRelDiff(got.clipSample!.gram, sample.gram)).toBeLessThan(1e-13);
  });

  it("samples every floor(n/512)-th token for the clip search, all of them below 512 tokens", () => {
    expect(clipSampleStep(1024)).toBe(2);
    expect(clipSampleStep(2048)).toBe(4);
    expect(clipSampleStep(1000)).toBe(1);
    expect(clipSampleStep(509)).toBe(1);
    expect(calibrationStats(x, cols).clipSample?.step).toBe(clipSampleStep(tokens));
  });

  it("rejects activations that are not whole tokens, hold NaN, or are missing", () => {
    const acc = new HessianAccumulator(cols);
    const catchIt = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(isQuantInputError(e)).toBe(true);
        return e as Error & { problem: string };
      }
      throw new Error("expected an error");
    };
    expect(catchIt(() => acc.add(new Float32Array(cols + 1))).message).toMatch(/not whole tokens of 37 values/);
    const bad = x.slice(0, 3 * cols);
    bad[2 * cols + 5] = NaN;
    acc.add(x.subarray(0, 4 * cols));
    const e = catchIt(() => acc.add(bad));
    expect(e.problem).toBe("calibration");
    expect(e.message).toMatch(/NaN at token 6, channel 5/);
    expect(catchIt(() => new HessianAccumulator(cols).result()).message).toMatch(/no calibration tokens/);
  });
});

describe("output error", () => {
  it("is the same from the activations and from their Gram matrix", () => {
    const cols = 24;
    const rows = 10;
    const x = gaussian(300 * cols, 1, 1);
    const w = gaussian(rows * cols, 0.1, 2);
    const q = w.map((v, i) => v + (i % 3 === 0 ? 0.01 : -0.004));
    const direct = relOutputError(x, w, q, { rows, cols });
    expect(direct).toBeGreaterThan(0);
    expect(relOutputErrorGram(calibrationStats(x, cols).gram, w, q, { rows, cols })).toBeCloseTo(direct, 12);
  });
});

describe("upperCholeskyOfInverse", () => {
  it("gives U upper with a positive diagonal and U^T U H = I", () => {
    const n = 45;
    const stats = calibrationStats(gaussian(200 * n, 1, 3), n);
    const h = hessian(stats);
    const u = upperCholeskyOfInverse(h, n)!;
    for (let i = 0; i < n; i++) {
      expect(u[i * n + i]).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
    }
    // (U^T U) H
    let worst = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) {
          let inv = 0;
          for (let m = 0; m <= Math.min(i, k); m++) inv += u[m * n + i]! * u[m * n + k]!;
          s += inv * h[k * n + j]!;
        }
        worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
      }
    }
    expect(worst).toBeLessThan(1e-10);
  });

  it("says when the matrix is not positive definite", () => {
    const n = 3;
    expect(upperCholeskyOfInverse(Float64Array.from([1, 2, 0, 2, 1, 0, 0, 0, 1]), n)).toBeUndefined();
    expect(upperCholeskyOfInverse(new Float64Array(9), n)).toBeUndefined();
  });
});
