/** Seeded random data for tests (pure: runs in Node and in the browser tests), so any failure replays. */

import { rng } from "../src/common/random.ts";

export { rng };

/** One standard normal sample (Box-Muller) from a uniform generator. */
export function normal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** n normal values with standard deviation `std`. */
export function gaussian(n: number, std: number, seed: number): Float32Array {
  const random = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * normal(random);
  return out;
}
