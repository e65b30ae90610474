/**
 * shaders/casts.wgsl on real WebGPU: the bytes of the CPU reference src/quant/casts.ts and the float32 bits
 * of its decoders, on every code, on values made to sit on rounding midpoints and past each format's range,
 * on random tensors of many shapes streamed in small chunks, and on every stories260K tensor.
 */
import { describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { gpuQuantizerFor } from "./quantizer.ts";
import { castGpuQuantizer } from "./casts.ts";
import type { ChunkOptions } from "./kernel-chunks.ts";
import { CAST_FORMATS } from "../quant/casts.ts";
import type { QuantFormat } from "../quant/format.ts";
import { isQuantInputError } from "../quant/errors.ts";
import { bitsToF32 } from "../formats/float-bits.ts";
import { normal, rng } from "../../test/random.ts";
import { expectGpuEqualsCpu, firstBitsDiff, storiesTensors } from "../../test/gpu-quantizer-compare.ts";

const labDevice = useLabDevice();

function quantizer(format: QuantFormat, options: ChunkOptions = {}) {
  const q = castGpuQuantizer(labDevice(), format, options);
  if (!q) throw new Error(`no GPU kernel for ${format.id}`);
  return q;
}

/** Every code's value, and the midpoints between neighbouring finite codes (ties: the even code wins). */
function codesAndMidpoints(format: QuantFormat): Float32Array {
  const codes = format.blockBytes === 1 ? 256 : 65536;
  const bytes = new Uint8Array(codes * format.blockBytes);
  for (let c = 0; c < codes; c++) {
    if (format.blockBytes === 1) bytes[c] = c;
    else [bytes[2 * c], bytes[2 * c + 1]] = [c & 0xff, c >> 8];
  }
  const values = format.decode(bytes, { rows: 1, cols: codes });
  const out: number[] = [];
  for (let c = 0; c < codes; c++) {
    const v = values[c]!;
    if (!Number.isFinite(v)) continue;
    out.push(v);
    const next = values[c + 1];
    // Neighbours within one sign: their midpoint, and the float32 values just around it.
    if (next !== undefined && Number.isFinite(next) && (c & (codes / 2 - 1)) !== codes / 2 - 1) {
      const mid = Math.fround((v + next) / 2);
      out.push(mid, nextAfter(mid, -Infinity), nextAfter(mid, Infinity));
    }
  }
  return new Float32Array(out);
}

function nextAfter(x: number, toward: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (x === 0) return toward > 0 ? bitsToF32(1) : -bitsToF32(1);
  u[0]! += (x < toward) === x > 0 ? 1 : -1;
  return f[0]!;
}

/** Gaussian weights at several scales, with zeros, float32 subnormals, and values past every cast's range. */
function messyWeights(n: number, seed: number): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(n);
  const bits = new Uint32Array(x.buffer);
  for (let i = 0; i < n; i++) {
    const r = random();
    if (r < 0.05) x[i] = 0;
    else if (r < 0.06) x[i] = -0;
    else if (r < 0.08) bits[i] = (random() < 0.5 ? 0x80000000 : 0) | (Math.floor(random() * 0x7fffff) + 1);
    else if (r < 0.1) x[i] = normal(random) * 1e5; // past f16 (65504), fp8-e4m3 (448) and fp8-e5m2 (57344)
    else if (r < 0.12) x[i] = (random() < 0.5 ? -1 : 1) * (3.38e38 + random() * 0.02e38); // around bf16's largest (3.3895e38)
    else if (r < 0.2) x[i] = normal(random) * 1e-6; // f16 and fp8 subnormals
    else x[i] = normal(random) * 10 ** Math.floor(random() * 6 - 4);
  }
  return x;
}

describe("GPU casts equal the CPU reference", () => {
  it("registers a kernel for every cast format", () => {
    for (const f of CAST_FORMATS) expect(gpuQuantizerFor(labDevice(), f)?.format).toBe(f);
  });

  for (const format of CAST_FORMATS) {
    it(`${format.id}: every code and every rounding midpoint`, async () => {
      const x = codesAndMidpoints(format);
      await expectGpuEqualsCpu(quantizer(format), x, { rows: 1, cols: x.length });
    });

    it(`${format.id}: decodes every code (NaN and inf codes too) to the CPU's bits`, async () => {
      const codes = format.blockBytes === 1 ? 256 : 65536;
      const bytes = new Uint8Array(codes * format.blockBytes);
      for (let c = 0; c < codes; c++) {
        if (format.blockBytes === 1) bytes[c] = c;
        else [bytes[2 * c], bytes[2 * c + 1]] = [c & 0xff, c >> 8];
      }
      const shape = { rows: 1, cols: codes };
      expect(firstBitsDiff(await quantizer(format).decode(bytes, shape), format.decode(bytes, shape))).toBe(-1);
    });

    it(`${format.id}: random tensors of many shapes, in small chunks`, async () => {
      for (const [rows, cols] of [
        [1, 1],
        [1, 3],
        [3, 5],
        [7, 33],
        [64, 64],
        [129, 257],
      ] as const) {
        const x = messyWeights(rows * cols, rows * 1000 + cols);
        await expectGpuEqualsCpu(quantizer(format, { maxChunkBytes: 400 }), x, { rows, cols });
        await expectGpuEqualsCpu(quantizer(format), x, { rows, cols });
      }
    });
  }

  it("every stories260K tensor, every cast", async () => {
    const tensors = await storiesTensors(inject("sharedDir"));
    expect(tensors).toHaveLength(47);
    for (const format of CAST_FORMATS) for (const t of tensors) await expectGpuEqualsCpu(quantizer(format), t.values, t.shape);
  });

  it("reports NaN and Inf weights as the CPU does", async () => {
    const x = messyWeights(4 * 50, 3);
    x[117] = NaN;
    x[150] = -Infinity;
    for (const format of CAST_FORMATS) {
      const shape = { rows: 4, cols: 50 };
      let cpuError: unknown;
      try {
        format.encode(x, shape, { tensorName: "w" });
      } catch (e) {
        cpuError = e;
      }
      const gpuError = await quantizer(format, { maxChunkBytes: 256 })
        .encode(x, shape, { tensorName: "w" })
        .then(() => undefined, (e: unknown) => e);
      expect(isQuantInputError(gpuError)).toBe(true);
      expect((gpuError as Error).message).toBe((cpuError as Error).message);
      expect(gpuError).toMatchObject({ problem: "non-finite", row: 2, col: 17, count: 2 });
    }
  });

  it("encodes empty tensors to nothing", async () => {
    for (const format of CAST_FORMATS) {
      expect((await quantizer(format).encode(new Float32Array(0), { rows: 0, cols: 5 })).length).toBe(0);
    }
  });
});
