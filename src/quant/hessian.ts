/**
 * Calibration statistics of one linear layer's inputs, gathered in one streaming pass over the tokens
 * (activations are never held whole): the Gram matrix G = X^T X (so the GPTQ Hessian H = 2/n G), the token
 * count n, and the per-channel mean |x| and max |x| that AWQ's scale search uses.
 *
 * G is accumulated in float64 (the reference keeps a float32 running average of H; its README shows the
 * chunking and precision of H move GPTQ's error by under 0.005%). A constant factor in H does not change
 * GPTQ's result, so G itself is what the quantizers take; `hessian()` gives the reference's 2/n G.
 *
 * AWQ's clip search uses only every k-th token (tokens 0, k, 2k, ...; k = floor(n / 512), as
 * llm-awq's auto_clip_layer slices them): with `clipSampleStep` set, the Gram matrix of those tokens is
 * accumulated in the same pass.
 */
import { QuantInputError } from "./errors.ts";

/** What GPTQ and AWQ need from the calibration activations of a layer with `cols` inputs. */
export interface CalibrationStats {
  cols: number;
  /** Tokens seen (n). */
  tokens: number;
  /** X^T X, cols x cols, row-major, symmetric, float64. */
  gram: Float64Array;
  /** Mean |x| per input channel. */
  meanAbs: Float64Array;
  /** Max |x| per input channel. */
  maxAbs: Float64Array;
  /** The Gram matrix of the clip-search sample (tokens 0, k, 2k, ...), when asked for. */
  clipSample?: { step: number; tokens: number; gram: Float64Array };
}

/** AWQ's n_sample_token. */
export const AWQ_CLIP_SAMPLE_TOKENS = 512;

/**
 * The token step of AWQ's clip sample for n tokens: floor(n / 512), and 1 when there are fewer than 512
 * tokens (the reference divides by zero there; its golden data used every token, which step 1 does).
 */
export function clipSampleStep(tokens: number, sampleTokens = AWQ_CLIP_SAMPLE_TOKENS): number {
  return Math.max(1, Math.floor(tokens / sampleTokens));
}

/** Tokens transposed per pass of the Gram update: long enough inner loops, small enough to stay in cache. */
const CHUNK_TOKENS = 128;

export class HessianAccumulator {
  private readonly gram: Float64Array;
  private readonly sumAbs: Float64Array;
  private readonly maxAbs: Float64Array;
  private readonly sampleGram: Float64Array | undefined;
  private sampleTokens = 0;
  private tokens = 0;
  /** One chunk of tokens, column-major (channel c's values at c * CHUNK_TOKENS). */
  private readonly columns: Float64Array;

  constructor(
    readonly cols: number,
    private readonly opts: { clipSampleStep?: number } = {},
  ) {
    if (!Number.isInteger(cols) || cols < 1) throw new QuantInputError("calibration", `a layer needs at least one input column, not ${cols}`);
    const step = opts.clipSampleStep;
    if (step !== undefined && !(Number.isInteger(step) && step >= 1)) throw new RangeError(`clip sample step ${step} is not a positive integer`);
    this.gram = new Float64Array(cols * cols);
    this.sumAbs = new Float64Array(cols);
    this.maxAbs = new Float64Array(cols);
    this.sampleGram = step === undefined ? undefined : new Float64Array(cols * cols);
    this.columns = new Float64Array(cols * CHUNK_TOKENS);
  }

  /** The next tokens: x holds whole tokens of `cols` values each (float32, token-major, as the .f32 files). */
  add(x: Float32Array): void {
    const { cols } = this;
    if (x.length % cols !== 0) {
      throw new QuantInputError("calibration", `${x.length} activation values are not whole tokens of ${cols} values (the layer's input width)`);
    }
    const n = x.length / cols;
    assertFiniteActivations(x, cols, this.tokens);
    for (let t0 = 0; t0 < n; t0 += CHUNK_TOKENS) {
      const t1 = Math.min(n, t0 + CHUNK_TOKENS);
      this.addChunk(x, t0, t1);
    }
    this.tokens += n;
  }

  private addChunk(x: Float32Array, t0: number, t1: number): void {
    const { cols, columns, sumAbs, maxAbs } = this;
    const len = t1 - t0;
    for (let t = t0; t < t1; t++) {
      const row = t * cols;
      for (let c = 0; c < cols; c++) columns[c * CHUNK_TOKENS + (t - t0)] = x[row + c]!;
    }
    addChannelStats(x.subarray(t0 * cols, t1 * cols), cols, sumAbs, maxAbs);
    gramUpdate(this.gram, columns, cols, 0, len, 1);
    const step = this.opts.clipSampleStep;
    if (this.sampleGram && step !== undefined) {
      // Global token indices t0 + this.tokens .. : the sample is every step-th token from token 0.
      const first = this.tokens + t0;
      const offset = (step - (first % step)) % step;
      if (offset < len) {
        gramUpdate(this.sampleGram, columns, cols, offset, len, step);
        this.sampleTokens += Math.ceil((len - offset) / step);
      }
    }
  }

  get tokenCount(): number {
    return this.tokens;
  }

  /** The statistics so far (copies: the accumulator can keep going). */
  result(): CalibrationStats {
    if (this.tokens === 0) throw new QuantInputError("calibration", "no calibration tokens were given");
    const { cols } = this;
    mirrorUpper(this.gram, cols);
    const stats: CalibrationStats = {
      cols,
      tokens: this.tokens,
      gram: this.gram.slice(),
      meanAbs: this.sumAbs.map((s) => s / this.tokens),
      maxAbs: this.maxAbs.slice(),
    };
    if (this.sampleGram && this.opts.clipSampleStep !== undefined) {
      mirrorUpper(this.sampleGram, cols);
      stats.clipSample = { step: this.opts.clipSampleStep, tokens: this.sampleTokens, gram: this.sampleGram.slice() };
    }
    return stats;
  }
}

/** Statistics of a whole activation matrix at once (tokens x cols), with AWQ's clip sample. */
export function calibrationStats(x: Float32Array, cols: number, opts: { clipSample?: boolean } = {}): CalibrationStats {
  if (cols < 1 || x.length % cols !== 0) {
    throw new QuantInputError("calibration", `${x.length} activation values are not whole tokens of ${cols} values (the layer's input width)`);
  }
  const tokens = x.length / cols;
  const acc = new HessianAccumulator(cols, opts.clipSample === false ? {} : { clipSampleStep: clipSampleStep(tokens) });
  acc.add(x);
  return acc.result();
}

/** The GPTQ reference's H = 2/n X^T X. */
export function hessian(stats: CalibrationStats): Float64Array {
  const f = 2 / stats.tokens;
  return stats.gram.map((v) => v * f);
}

/** Warnings about the calibration set that every method reports. */
export function calibrationWarnings(stats: Pick<CalibrationStats, "cols" | "tokens">): string[] {
  if (stats.tokens >= stats.cols) return [];
  return [
    `only ${stats.tokens} calibration tokens for ${stats.cols} input columns: the Hessian is rank-deficient ` +
      `(only the dampening makes it invertible), so the result fits these tokens and may generalise poorly`,
  ];
}

/**
 * Adds the Gram matrix of chunk tokens start, start + step, ... < len (column-major, CHUNK_TOKENS apart) to
 * the upper triangle of g. Four columns j at a time share each load of column i.
 */
function gramUpdate(g: Float64Array, columns: Float64Array, cols: number, start: number, len: number, step: number): void {
  for (let i = 0; i < cols; i++) {
    const ci = i * CHUNK_TOKENS;
    const rowI = i * cols;
    let j = i;
    for (; j + 3 < cols; j += 4) {
      const c0 = j * CHUNK_TOKENS;
      const c1 = c0 + CHUNK_TOKENS;
      const c2 = c1 + CHUNK_TOKENS;
      const c3 = c2 + CHUNK_TOKENS;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let t = start; t < len; t += step) {
        const v = columns[ci + t]!;
        s0 += v * columns[c0 + t]!;
        s1 += v * columns[c1 + t]!;
        s2 += v * columns[c2 + t]!;
        s3 += v * columns[c3 + t]!;
      }
      g[rowI + j] = g[rowI + j]! + s0;
      g[rowI + j + 1] = g[rowI + j + 1]! + s1;
      g[rowI + j + 2] = g[rowI + j + 2]! + s2;
      g[rowI + j + 3] = g[rowI + j + 3]! + s3;
    }
    for (; j < cols; j++) {
      const cj = j * CHUNK_TOKENS;
      let s = 0;
      for (let t = start; t < len; t += step) s += columns[ci + t]! * columns[cj + t]!;
      g[rowI + j] = g[rowI + j]! + s;
    }
  }
}

/** Copies the upper triangle onto the lower one. */
function mirrorUpper(g: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) g[j * n + i] = g[i * n + j]!;
}

/** Adds sum |x| and max |x| per channel of whole tokens x to sumAbs and maxAbs. */
export function addChannelStats(x: Float32Array, cols: number, sumAbs: Float64Array, maxAbs: Float64Array): void {
  for (let at = 0; at < x.length; at += cols) {
    for (let c = 0; c < cols; c++) {
      const a = Math.abs(x[at + c]!);
      sumAbs[c] = sumAbs[c]! + a;
      if (a > maxAbs[c]!) maxAbs[c] = a;
    }
  }
}

/** Throws "calibration" naming the first NaN/±Inf activation by token and channel. */
export function assertFiniteActivations(x: Float32Array, cols: number, firstToken: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (Math.abs(v) <= 3.4028234663852886e38) continue;
    let count = 0;
    for (let k = i; k < x.length; k++) if (!(Math.abs(x[k]!) <= 3.4028234663852886e38)) count++;
    const token = firstToken + Math.floor(i / cols);
    throw new QuantInputError(
      "calibration",
      `the activations hold ${count} non-finite value${count === 1 ? "" : "s"} (${v} at token ${token}, channel ${i % cols}): ` +
        `they would poison the Hessian; fix or drop those tokens`,
      { row: token, col: i % cols, count },
    );
  }
}
