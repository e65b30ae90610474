/**
 * How this WebGPU device does f32 arithmetic, measured: WGSL allows a compiler to fuse a*b + c into
 * one FMA, lets division and sqrt be a few ulp off and subnormals be flushed to zero, while the CPU
 * references (and llama.cpp's C) round every operation correctly. Kernels that must give the CPU's bits
 * (src/gpu/ggml-legacy.ts explains what each depends on) check this once per device.
 *
 * One dispatch over a few thousand inputs chosen to expose each behaviour (shaders/float-probe.wgsl);
 * every GPU result is compared with the correctly rounded value computed here (Math.fround of an exact
 * or double-precision result).
 */
import probeWgsl from "../../shaders/float-probe.wgsl?raw";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { withCommonWgsl } from "./wgsl.ts";

export interface FloatArithmetic {
  /** a*b + c is rounded once (fused into an FMA) rather than twice, for some inputs at least. */
  fusedMultiplyAdd: boolean;
  /** a / b and 1 / b of runtime values are correctly rounded. */
  exactDivision: boolean;
  /** sqrt is correctly rounded. */
  exactSqrt: boolean;
  /**
   * x / 15.0 as written is correctly rounded. Often false (compilers multiply by the reciprocal instead),
   * which is why kernels hide such divisors with opaque_f32 (shaders/common/ggml-rounding.wgsl).
   */
  exactConstantDivision: boolean;
  /** Subnormal inputs and results are kept, not flushed to zero. */
  keepsSubnormals: boolean;
}

const SHADER = withCommonWgsl(probeWgsl, "float-probe.wgsl");
const RESULTS = 7;
const fr = Math.fround;

/**
 * The k-th float32 of a scrambled sequence (a multiplicative hash of k and a salt): a 24-bit significand,
 * a sign and a binary exponent in [lo, hi]. Deterministic, so the probe sees the same inputs every run.
 */
function spreadFloat(k: number, salt: number, lo: number, hi: number): number {
  const h = Math.imul((k + 1) ^ Math.imul(salt, 0x85ebca6b), 0x9e3779b1) >>> 0;
  const g = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  const significand = 1 + (g >>> 9) / 0x800000;
  const exponent = lo + (Math.imul(g ^ (g >>> 13), 0x846ca68b) >>> 0) % (hi - lo + 1);
  return fr((h & 1 ? -1 : 1) * significand * 2 ** exponent);
}

interface Case {
  a: number;
  b: number;
  c: number;
}

/**
 * The inputs, in groups: `contraction` has c = -fround(a*b), so two roundings give exactly 0 and one
 * rounding gives the rounding error of a*b (never 0 for these inputs); `arithmetic` are random normal
 * triples for division, reciprocal, sqrt and division by a constant; `subnormal` make products below
 * 2^-126, or feed a subnormal a.
 */
function probeCases(): { contraction: Case[]; arithmetic: Case[]; subnormal: Case[] } {
  const contraction: Case[] = [];
  for (let k = 0; contraction.length < 1024; k++) {
    const a = spreadFloat(k, 1, -20, 20);
    const b = spreadFloat(k, 2, -20, 20);
    const product = fr(a * b);
    if (a * b !== product) contraction.push({ a, b, c: -product });
  }
  const arithmetic: Case[] = [];
  for (let k = 0; k < 4096; k++) arithmetic.push({ a: spreadFloat(k, 3, -60, 60), b: spreadFloat(k, 4, -60, 60), c: 0 });
  const subnormal: Case[] = [];
  for (let k = 0; k < 64; k++) {
    subnormal.push({ a: spreadFloat(k, 5, -75, -70), b: spreadFloat(k, 6, -70, -60), c: 0 }); // product < 2^-126
    subnormal.push({ a: fr((1 + k) * 2 ** -140), b: 1.5, c: 0 }); // a subnormal input
  }
  return { contraction, arithmetic, subnormal };
}

/** Measures the device's f32 arithmetic (one small dispatch). */
export async function probeFloatArithmetic(dev: LabDevice): Promise<FloatArithmetic> {
  const { device } = dev;
  const { contraction, arithmetic, subnormal } = probeCases();
  const cases = [...contraction, ...arithmetic, ...subnormal];
  const inputs = new Float32Array(cases.flatMap(({ a, b, c }) => [a, b, c]));
  const pipeline = await computePipeline(device, SHADER, "probe", "float-probe.wgsl");
  const params = uniformU32(device, [cases.length, 0], "float-probe params");
  const input = uploadStorage(device, inputs, "float-probe inputs");
  const output = outputStorage(device, cases.length * RESULTS * 4, "float-probe results");
  let results: Float32Array;
  try {
    dispatch(device, pipeline, [params, input, output], Math.ceil(cases.length / 64), "float-probe");
    results = new Float32Array((await readBack(device, output, cases.length * RESULTS * 4)).buffer);
  } finally {
    for (const b of [params, input, output]) b.destroy();
  }
  // fround(x) === fround(x) for the value read back; Object.is keeps -0 apart from +0.
  const same = (index: number, result: number, expected: number) => Object.is(results[index * RESULTS + result], fr(expected));
  const all = (first: number, list: Case[], test: (index: number, c: Case) => boolean) => list.every((c, k) => test(first + k, c));

  const fusedMultiplyAdd = !all(0, contraction, (i) => same(i, 0, 0));
  const a0 = contraction.length;
  // Also a / 15 with the constant hidden as the kernels hide it: a division of runtime values again.
  const exactDivision = all(a0, arithmetic, (i, { a, b }) => same(i, 1, a / b) && same(i, 2, 1 / b) && same(i, 5, a / 15));
  const exactSqrt = all(a0, arithmetic, (i, { a }) => same(i, 3, Math.sqrt(Math.abs(a))));
  const exactConstantDivision = all(a0, arithmetic, (i, { a }) => same(i, 4, a / 15));
  const s0 = a0 + arithmetic.length;
  // a*b of two floats is exact in double, so fround rounds it once, into the subnormal range here.
  const keepsSubnormals = all(s0, subnormal, (i, { a, b }) => same(i, 6, a * b));
  return { fusedMultiplyAdd, exactDivision, exactSqrt, exactConstantDivision, keepsSubnormals };
}

const measured = new WeakMap<GPUDevice, Promise<FloatArithmetic>>();

/** probeFloatArithmetic, run once per device and remembered. */
export function floatArithmeticOf(dev: LabDevice): Promise<FloatArithmetic> {
  let result = measured.get(dev.device);
  if (!result) {
    result = probeFloatArithmetic(dev);
    measured.set(dev.device, result);
    result.catch(() => measured.delete(dev.device));
  }
  return result;
}
