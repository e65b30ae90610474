/**
 * shaders/common/division.wgsl: div_f32_exact(n, d) equals Math.fround(n / d) bit for bit, with integer
 * operations only, on random pairs over the whole f32 range, subnormal and overflowing quotients, ties, and
 * the quotients the quantizers take (1 / absmax, 127 / absmax, 1 / fp16 scale).
 */
import { describe, expect, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import divisionWgsl from "../../shaders/common/division.wgsl?raw";
import { computePipeline, dispatch, outputStorage, readBack, uploadStorage } from "./buffers.ts";
import { bitsToF32, f16BitsToF32 } from "../formats/float-bits.ts";
import { rng } from "../../test/random.ts";

const labDevice = useLabDevice();

const KERNEL = `${divisionWgsl}
@group(0) @binding(0) var<storage, read> pairs: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> quotients: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < arrayLength(&pairs)) {
    let p = pairs[id.x];
    quotients[id.x] = bitcast<u32>(div_f32_exact(bitcast<f32>(p.x), bitcast<f32>(p.y)));
  }
}`;

/** GPU quotients of (n, d) pairs given as f32 bit patterns. */
async function gpuDivide(pairs: Uint32Array): Promise<Uint32Array> {
  const { device } = labDevice();
  const pipeline = await computePipeline(device, KERNEL, "main", "division test");
  const input = uploadStorage(device, pairs, "pairs");
  const output = outputStorage(device, (pairs.length / 2) * 4, "quotients");
  dispatch(device, pipeline, [input, output], Math.ceil(pairs.length / 2 / 64), "division test");
  const bytes = await readBack(device, output, (pairs.length / 2) * 4);
  input.destroy();
  output.destroy();
  return new Uint32Array(bytes.buffer);
}

const f32Bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;

async function expectExact(pairs: Uint32Array): Promise<void> {
  const got = await gpuDivide(pairs);
  for (let i = 0; i < got.length; i++) {
    const n = bitsToF32(pairs[2 * i]!);
    const d = bitsToF32(pairs[2 * i + 1]!);
    const want = f32Bits(Math.fround(n / d));
    if (got[i] !== want) expect(`${n} / ${d}: GPU bits ${got[i]!.toString(16)}`).toBe(`${n} / ${d}: bits ${want.toString(16)}`);
  }
}

describe("div_f32_exact", () => {
  it("equals fround(n / d) on random pairs over the whole positive f32 range (subnormals included)", async () => {
    const random = rng(1);
    const pairs = new Uint32Array(2 * 200_000);
    const anyPositive = () => Math.floor(random() * 0x7f800000); // every finite positive pattern, 0 too
    for (let i = 0; i < pairs.length; i += 2) {
      pairs[i] = anyPositive();
      pairs[i + 1] = Math.max(1, anyPositive());
    }
    await expectExact(pairs);
  });

  it("equals fround(n / d) on close exponents, ties, overflow and underflow", async () => {
    const random = rng(2);
    const list: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      // Exponents near each other: quotients around 1, where most rounding happens.
      const e = Math.floor(random() * 254) + 1;
      const n = (e << 23) | Math.floor(random() * 0x800000);
      const dExp = Math.min(254, Math.max(1, e + Math.floor(random() * 5) - 2));
      list.push(n, (dExp << 23) | Math.floor(random() * 0x800000));
    }
    // Exact quotients and halfway cases: (odd * 2^k) / 2^j with small significands.
    for (let m = 1; m < 2000; m += 2) for (const s of [1, 3, 0.5, 2 ** -100, 2 ** 100]) list.push(f32Bits(m * s), f32Bits(s * 2));
    // The largest and smallest quotients.
    const max = 0x7f7fffff;
    list.push(max, 1, max, 0x00800000, 1, max, 1, 0x3f800000, 0x00000001, 0x7f000000, 0x3f800000, 0x00400000, 0, 0x3f800000);
    await expectExact(new Uint32Array(list));
  });

  it("gives the quantizers' scales: 1 / absmax, 127 / absmax and 1 / every fp16 scale", async () => {
    const random = rng(3);
    const list: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const absmax = f32Bits(Math.fround(random() * 10 ** (random() * 10 - 6)));
      list.push(f32Bits(1), Math.max(1, absmax), f32Bits(127), Math.max(1, absmax));
    }
    for (let h = 1; h < 0x7c00; h++) list.push(f32Bits(1), f32Bits(f16BitsToF32(h)));
    await expectExact(new Uint32Array(list));
  });
});
