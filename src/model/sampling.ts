/** How the next token is picked from a row of logits: greedy (argmax) or sampled at a temperature, seeded. */
import { rng } from "../common/random.ts";
import { argmax } from "./quality.ts";

export type Sampling = { kind: "greedy" } | { kind: "sample"; temperature: number; seed: number };

/** A picker for DecoderSession.generate; a sampled one owns its seeded generator (fresh per generation). */
export function tokenPicker(sampling: Sampling): (logits: Float32Array) => number {
  if (sampling.kind === "greedy") return argmax;
  const { temperature } = sampling;
  if (!(temperature > 0)) throw new RangeError(`temperature must be above 0, got ${temperature}`);
  const random = rng(sampling.seed);
  return (logits) => {
    let max = -Infinity;
    for (const v of logits) if (v > max) max = v;
    const weights = new Float64Array(logits.length);
    let sum = 0;
    for (let i = 0; i < logits.length; i++) sum += weights[i] = Math.exp((logits[i]! - max) / temperature);
    let u = random() * sum;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i]!;
      if (u < 0) return i;
    }
    return argmax(logits);
  };
}
