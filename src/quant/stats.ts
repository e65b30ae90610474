/**
 * Summary statistics of a tensor, streamed chunk by chunk (readTensorRows), so a tensor larger than
 * memory works. Computed in double precision: each chunk's mean and squared deviations exactly in
 * two passes over the chunk, chunks merged with Chan et al.'s parallel formula (no catastrophic
 * cancellation, unlike sum of squares minus square of sum).
 */
import { readTensorRows } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";

export interface TensorStatistics {
  /** Every value, NaN and inf included (= params). */
  count: number;
  /** min, max, mean and std are over the finite values only; NaN when there is none. */
  min: number;
  max: number;
  mean: number;
  /** Population standard deviation (divides by the number of finite values). */
  std: number;
  nan: number;
  /** +inf and -inf. */
  inf: number;
  /** +0 and -0. */
  zeros: number;
  /** The first values in storage order (up to FIRST_VALUES), NaN and inf included. */
  first: number[];
}

export const FIRST_VALUES = 16;

/** Running moments over the finite values. */
class Moments {
  n = 0;
  mean = 0;
  /** Sum of squared deviations from the mean. */
  m2 = 0;
  min = Infinity;
  max = -Infinity;
  nan = 0;
  inf = 0;
  zeros = 0;

  add(values: Float32Array): void {
    let n = 0;
    let sum = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v - v !== 0) {
        // NaN or +-inf
        if (v !== v) this.nan++;
        else this.inf++;
        continue;
      }
      n++;
      sum += v;
      // -0 counts as below +0, as Math.min/Math.max and the GPU kernel (which compares bits) have it.
      if (v < this.min || (v === this.min && Object.is(v, -0))) this.min = v;
      if (v > this.max || (v === this.max && Object.is(this.max, -0))) this.max = v;
      if (v === 0) this.zeros++;
    }
    if (n === 0) return;
    const mean = sum / n;
    let m2 = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v - v === 0) m2 += (v - mean) * (v - mean);
    }
    const total = this.n + n;
    const delta = mean - this.mean;
    this.mean += (delta * n) / total;
    this.m2 += m2 + (delta * delta * this.n * n) / total;
    this.n = total;
  }
}

/** Statistics of one tensor; `chunkBytes` is readTensorRows' read size (default 8 MiB). */
export async function tensorStats(t: TensorInfo, signal?: AbortSignal, chunkBytes?: number): Promise<TensorStatistics> {
  const m = new Moments();
  const first: number[] = [];
  let count = 0;
  for await (const chunk of readTensorRows(t, { signal, flat: true, reuseBuffers: true, ...(chunkBytes === undefined ? {} : { chunkBytes }) })) {
    signal?.throwIfAborted();
    if (first.length < FIRST_VALUES) first.push(...chunk.values.subarray(0, FIRST_VALUES - first.length));
    m.add(chunk.values);
    count += chunk.values.length;
  }
  const none = m.n === 0;
  return {
    count,
    min: none ? NaN : m.min,
    max: none ? NaN : m.max,
    mean: none ? NaN : m.mean,
    std: none ? NaN : Math.sqrt(m.m2 / m.n),
    nan: m.nan,
    inf: m.inf,
    zeros: m.zeros,
    first,
  };
}
