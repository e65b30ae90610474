/**
 * shaders/common/*.wgsl, the functions every kernel family shares, against their CPU counterparts
 * (src/formats/float-bits.ts, src/quant/ggml/common.ts) on real WebGPU: every fp16 code, f32 bit patterns
 * around every fp16 rounding boundary, ties, subnormals, overflow, inf and NaN, and the ranges where
 * ggml's rounding tricks stop being plain rounding. Results are compared as bits.
 */
import { describe, expect, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { computePipeline, dispatch, outputStorage, readBack, uploadStorage } from "./buffers.ts";
import { withCommonWgsl } from "./wgsl.ts";
import { bitsToF32, f16BitsToF32, f32Bits, f32ToF16Bits } from "../formats/float-bits.ts";
import { nearestInt, roundHalfAway, truncToInt } from "../quant/ggml/common.ts";
import { rng } from "../../test/random.ts";

const labDevice = useLabDevice();

const OUTPUTS = 6;
const KERNEL = withCommonWgsl(
  `
@group(0) @binding(0) var<storage, read> inputs: array<u32>;
@group(0) @binding(1) var<storage, read_write> outputs: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * 64u + lid;
  if (i >= arrayLength(&inputs)) {
    return;
  }
  let bits = inputs[i];
  let v = bitcast<f32>(bits);
  let o = ${OUTPUTS}u * i;
  outputs[o] = f32_to_f16_bits(v);
  outputs[o + 1u] = bitcast<u32>(f16_bits_to_f32(bits & 0xffffu));
  outputs[o + 2u] = bitcast<u32>(trunc_to_int(round_half_away(v)));
  outputs[o + 3u] = bitcast<u32>(nearest_int(v));
  outputs[o + 4u] = bitcast<u32>(trunc_to_int(v));
  outputs[o + 5u] = select(0u, 1u, is_finite_f32(v));
}`,
  "common-wgsl test",
);

/** The kernel's outputs for f32 bit patterns, OUTPUTS words each. */
async function run(inputs: Uint32Array): Promise<Uint32Array> {
  const { device } = labDevice();
  const pipeline = await computePipeline(device, KERNEL, "main", "common-wgsl test");
  const input = uploadStorage(device, inputs, "inputs");
  const output = outputStorage(device, inputs.length * OUTPUTS * 4, "outputs");
  try {
    dispatch(device, pipeline, [input, output], Math.ceil(inputs.length / 64), "common-wgsl test");
    return new Uint32Array((await readBack(device, output, inputs.length * OUTPUTS * 4)).buffer);
  } finally {
    input.destroy();
    output.destroy();
  }
}

/**
 * Bit patterns: every exponent with mantissas at and around the fp16 rounding points (the 13 dropped bits
 * at 0, just below, at and above one half, odd and even kept bits), both signs; integers and
 * half-integers up to 2^24 and their neighbours; ggml's nearest_int range edges; and random patterns.
 */
function probeBits(): Uint32Array {
  const bits: number[] = [];
  const mantissas = [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x2fff, 0x3001, 0x400000, 0x7fe000, 0x7ff000, 0x7fffff];
  for (let e = 0; e < 256; e++) for (const m of mantissas) for (const s of [0, 0x80000000]) bits.push((s | (e << 23) | m) >>> 0);
  // Subnormal fp16 results need every shift: mantissas with a 1 at each position.
  for (let e = 100; e < 114; e++) for (let b = 0; b < 23; b++) bits.push(((e << 23) | (1 << b) | ((1 << b) >>> 1)) >>> 0);
  for (const v of [0.5, 1.5, 2.5, 4194303, 4194303.5, 4194304, 8388607.5, 8388608, 16777216, 2 ** 31, 2 ** 40]) {
    for (const x of [v, -v]) {
      const b = f32Bits(x);
      bits.push(b, b - 1, b + 1);
    }
  }
  for (let k = -300; k <= 300; k++) {
    const b = f32Bits(k + 0.5);
    bits.push(b, b - 1, b + 1, f32Bits(k));
  }
  const random = rng(2024);
  for (let i = 0; i < 200_000; i++) bits.push(Math.floor(random() * 2 ** 32) >>> 0);
  return new Uint32Array(bits);
}

describe("shared WGSL functions equal the CPU's", () => {
  it("f16_bits_to_f32 on every fp16 code", async () => {
    const codes = new Uint32Array(65536).map((_, h) => h);
    const out = await run(codes);
    let bad = -1;
    for (let h = 0; h < 65536 && bad < 0; h++) {
      const gpu = out[h * OUTPUTS + 1]!;
      const cpu = f16BitsToF32(h);
      // NaN: the CPU's value has no payload; the GPU keeps sign and payload, as a widening conversion does.
      const ok = Number.isNaN(cpu) ? gpu === (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0 : gpu === f32Bits(cpu);
      if (!ok) bad = h;
    }
    expect(bad).toBe(-1);
  });

  it("f32_to_f16_bits, ggml's rounding helpers and is_finite_f32 on tricky and random floats", async () => {
    const inputs = probeBits();
    const out = await run(inputs);
    const failures: string[] = [];
    for (let i = 0; i < inputs.length && failures.length < 5; i++) {
      const b = inputs[i]!;
      const v = bitsToF32(b);
      const got = out.subarray(i * OUTPUTS, (i + 1) * OUTPUTS);
      const nan = Number.isNaN(v);
      // ggml keeps a NaN's sign (0x7E00 | sign); the CPU helper takes a JS number, whose NaN has none.
      const f16 = nan ? ((b >>> 16) & 0x8000) | 0x7e00 : f32ToF16Bits(v);
      if (got[0] !== f16) failures.push(`f32_to_f16_bits(0x${b.toString(16)}) = 0x${got[0]!.toString(16)}, CPU 0x${f16.toString(16)}`);
      // A NaN reaches nearest_int only from inf * 0, whose default NaN C's bit trick turns into 0 (a NaN
      // input's payload would show through in C; the kernels never see one).
      const nearest = nan ? 0 : nearestInt(v);
      if ((got[3]! | 0) !== nearest) failures.push(`nearest_int(${v}) = ${got[3]! | 0}, expected ${nearest}`);
      // C's float->int conversion is only meaningful where it fits (the kernels never leave that range).
      if (!(Math.abs(v) < 2 ** 31)) {
        if (!Number.isFinite(v) && (got[2]! | 0) !== 0) failures.push(`trunc_to_int(round_half_away(${v})) = ${got[2]! | 0}, expected 0`);
        if (!Number.isFinite(v) && (got[4]! | 0) !== truncToInt(v)) failures.push(`trunc_to_int(${v}) = ${got[4]! | 0}, CPU ${truncToInt(v)}`);
      } else {
        if ((got[2]! | 0) !== truncToInt(roundHalfAway(v))) failures.push(`round_half_away(${v}) = ${got[2]! | 0}, CPU ${roundHalfAway(v)}`);
        if ((got[4]! | 0) !== truncToInt(v)) failures.push(`trunc_to_int(${v}) = ${got[4]! | 0}, CPU ${truncToInt(v)}`);
      }
      if (got[5] !== (Number.isFinite(v) ? 1 : 0)) failures.push(`is_finite_f32(${v}) = ${got[5]}`);
    }
    expect(failures).toEqual([]);
  });
});
