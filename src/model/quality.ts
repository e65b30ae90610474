/**
 * Output quality measured the way llama.cpp's perplexity tool does (tools/perplexity, --kl-divergence):
 * perplexity from the log-probability of each next token, and against a full-precision run the KL divergence
 * of the token distributions (sum p log(p / q), p = fp32), its mean, median, 99th percentile and maximum,
 * the share of positions where the most likely token agrees, and the change in perplexity. Pure: typed
 * arrays in, numbers out; logits are [positions, vocabulary] float32 rows, sums are float64.
 */

/** log softmax of one row, in float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  const n = row.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(row[i]! - max);
  const logZ = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = row[i]! - logZ;
  return out;
}

function row(logits: Float32Array, vocab: number, t: number): Float32Array {
  return logits.subarray(t * vocab, (t + 1) * vocab);
}

function positionsOf(logits: Float32Array, vocab: number): number {
  if (vocab <= 0 || logits.length % vocab !== 0) throw new RangeError(`${logits.length} logits are not rows of ${vocab}`);
  return logits.length / vocab;
}

/** nll[t] = -log p(ids[t+1] | ids[..t]) for t = 0..ids.length-2 (logits row t predicts token t+1). */
export function tokenNll(logits: Float32Array, vocab: number, ids: readonly number[]): Float64Array {
  const rows = positionsOf(logits, vocab);
  if (rows < ids.length - 1) throw new RangeError(`${rows} logit rows cannot score ${ids.length} tokens`);
  const out = new Float64Array(Math.max(0, ids.length - 1));
  for (let t = 0; t < out.length; t++) out[t] = -logSoftmax(row(logits, vocab, t))[ids[t + 1]!]!;
  return out;
}

export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return values.length === 0 ? NaN : s / values.length;
}

/** exp(mean nll). */
export function perplexity(nll: ArrayLike<number>): number {
  return Math.exp(mean(nll));
}

/** The q-quantile with linear interpolation between order statistics (numpy's default, "linear"). */
export function quantile(values: ArrayLike<number>, q: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** KL(p || q) of two rows of logits, p the reference. */
export function klDivergence(reference: ArrayLike<number>, other: ArrayLike<number>): number {
  const lp = logSoftmax(reference);
  const lq = logSoftmax(other);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p > 0) kl += p * (lp[i]! - lq[i]!);
  }
  return Math.max(0, kl); // rounding can leave -1e-17 for identical rows
}

export interface QualityReport {
  /** Scored tokens (the first token has no prediction). */
  tokens: number;
  ppl: number;
  meanNll: number;
  /** Share of positions whose most likely next token is the right one. */
  top1Accuracy: number;
}

export interface Comparison extends QualityReport {
  deltaPpl: number;
  kldMean: number;
  kldMedian: number;
  kldP99: number;
  kldMax: number;
  /** Share of positions where the most likely token equals the reference's. */
  top1Agree: number;
}

/** Perplexity and accuracy of logits [T, V] on `ids` (the rows predicting ids[1..]). */
export function qualityOf(logits: Float32Array, vocab: number, ids: readonly number[]): QualityReport {
  const nll = tokenNll(logits, vocab, ids);
  let right = 0;
  for (let t = 0; t < nll.length; t++) if (argmax(row(logits, vocab, t)) === ids[t + 1]) right++;
  const meanNll = mean(nll);
  return { tokens: nll.length, ppl: Math.exp(meanNll), meanNll, top1Accuracy: right / nll.length };
}

/** Quality of `logits` and how far its distributions are from `reference` (the fp32 run on the same ids). */
export function compareLogits(reference: Float32Array, logits: Float32Array, vocab: number, ids: readonly number[]): Comparison {
  if (reference.length !== logits.length) throw new RangeError(`${logits.length} logits against ${reference.length} reference logits`);
  const base = qualityOf(reference, vocab, ids);
  const own = qualityOf(logits, vocab, ids);
  const scored = own.tokens;
  const kld = new Float64Array(scored);
  let agree = 0;
  for (let t = 0; t < scored; t++) {
    const p = row(reference, vocab, t);
    const q = row(logits, vocab, t);
    kld[t] = klDivergence(p, q);
    if (argmax(p) === argmax(q)) agree++;
  }
  return {
    ...own,
    deltaPpl: own.ppl - base.ppl,
    kldMean: mean(kld),
    kldMedian: quantile(kld, 0.5),
    kldP99: quantile(kld, 0.99),
    kldMax: kld.reduce((a, b) => Math.max(a, b), 0),
    top1Agree: agree / scored,
  };
}

/** The index of the first place two token sequences differ, or -1 when one is a prefix of the other. */
export function firstDeparture(reference: readonly number[], other: readonly number[]): number {
  const n = Math.min(reference.length, other.length);
  for (let i = 0; i < n; i++) if (reference[i] !== other[i]) return i;
  return -1;
}
