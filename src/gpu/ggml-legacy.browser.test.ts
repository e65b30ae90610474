/**
 * shaders/ggml-legacy.wgsl on real WebGPU: every byte the GPU encodes equals the CPU reference's
 * (src/quant/ggml/legacy.ts) and llama.cpp's golden vectors, and every value it decodes has the same
 * float32 bits. No tolerance anywhere.
 */
import { describe, expect, inject, it } from "vitest";
import type { LabDevice } from "./device.ts";
import { gpuQuantizerFor } from "./quantizer.ts";
import "./kernels.ts";
import { encodeIsExact, legacyGpuQuantizer, type LegacyGpuOptions } from "./ggml-legacy.ts";
import { floatArithmeticOf } from "./float-probe.ts";
import { getFormat } from "../quant/registry.ts";
import { GGML_LEGACY_FORMATS } from "../quant/ggml/legacy.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { isQuantInputError, QuantInputError } from "../quant/errors.ts";
import { fetchGoldenCase, fetchGoldenManifest, type GoldenEntry } from "../../test/ggml-golden-fetch.ts";
import { gaussian, normal, rng } from "../../test/random.ts";
import { useLabDevice } from "../../test/gpu-device.ts";
import { firstBitsDiff, firstByteDiff, storiesTensors } from "../../test/gpu-quantizer-compare.ts";

const labDevice = useLabDevice();

function quantizer(format: QuantFormat, options: LegacyGpuOptions = {}, device = labDevice()) {
  const q = legacyGpuQuantizer(device, format, options);
  if (!q) throw new Error(`no GPU kernel for ${format.id}`);
  return q;
}

function where(format: QuantFormat, at: number): string {
  return at < 0 ? "" : `byte ${at} (block ${Math.floor(at / format.blockBytes)})`;
}

/** GPU encode and decode against the CPU reference on the same input: bytes and bits identical. */
async function expectSameAsCpu(format: QuantFormat, x: Float32Array, shape: MatrixShape, imatrix?: Float32Array, options: LegacyGpuOptions = {}) {
  const opts = imatrix ? { imatrix } : undefined;
  const cpu = format.encode(x, shape, opts);
  const gpu = await quantizer(format, options).encode(x, shape, opts);
  expect(where(format, firstByteDiff(gpu, cpu))).toBe("");
  const decoded = await quantizer(format, options).decode(gpu, shape);
  expect(firstBitsDiff(decoded, format.decode(cpu, shape))).toBe(-1);
}

describe("golden vectors (llama.cpp's own bytes and values)", async () => {
  const sharedDir = inject("sharedDir");
  const manifest = await fetchGoldenManifest(sharedDir);
  const ids = new Set(GGML_LEGACY_FORMATS.map((f) => f.id));
  const entries = manifest.entries.filter((e) => ids.has(e.format));

  it("has every legacy format, both variants", () => {
    expect(entries.length).toBe(90);
    expect(new Set(entries.map((e) => `${e.format}/${e.variant}`)).size).toBe(10);
  });

  /** q8_K bsums of all-zero blocks are not written by ggml (`quant.untouched_bytes`); we write 0. */
  function maskUntouched(e: GoldenEntry, format: QuantFormat, input: Float32Array, gpu: Uint8Array): Uint8Array {
    if (!e.quant.untouched_bytes) return gpu;
    const masked = gpu.slice();
    for (let b = 0; b < input.length / format.blockWeights; b++) {
      const block = input.subarray(b * format.blockWeights, (b + 1) * format.blockWeights);
      if (block.every((v) => v === 0)) {
        for (let i = b * format.blockBytes + 260; i < (b + 1) * format.blockBytes; i++) {
          expect(gpu[i]).toBe(0);
          masked[i] = 0;
        }
      }
    }
    return masked;
  }

  for (const e of entries) {
    const name = `${e.format} ${e.variant} ${e.case} (${e.rows}x${e.cols})`;
    it(`encode and decode: ${name}`, async () => {
      const g = await fetchGoldenCase(sharedDir, e);
      const format = getFormat(e.format);
      const shape = { rows: e.rows, cols: e.cols };
      const opts = g.imatrix ? { imatrix: g.imatrix } : undefined;
      const gpu = await quantizer(format).encode(g.input, shape, opts);
      expect(where(format, firstByteDiff(gpu, format.encode(g.input, shape, opts)))).toBe("");
      expect(where(format, firstByteDiff(maskUntouched(e, format, g.input, gpu), g.quant))).toBe("");
      const decoded = await quantizer(format).decode(g.quant, shape);
      expect(firstBitsDiff(decoded, new Float32Array(g.dequantBits.buffer))).toBe(-1);
    });
  }
});

/**
 * Rows of many kinds: Gaussian at scales from 1e3 down to fp16-subnormal (1e-5) and fp16-underflow
 * (1e-8) scales, all +0 and all -0 rows, constant rows, rows with ±20σ outliers, sparse rows, rows of
 * small integers (x/d lands exactly on .5 ties), and f32-subnormal magnitudes.
 */
function messyRows(rows: number, cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const x = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const kind = r % 12;
    const std = [1, 0.02, 1e3, 1e-5, 1e-8, 0.3][Math.floor(random() * 6)]!;
    for (let c = 0; c < cols; c++) {
      const g = normal(random);
      switch (kind) {
        case 0: row[c] = 0; break;
        case 1: row[c] = -0; break;
        case 2: row[c] = r % 7 === 2 ? 0.0123 : -3.5; break;
        case 3: row[c] = std * g * (random() < 0.02 ? 20 : 1); break;
        case 4: row[c] = random() < 0.9 ? 0 : std * g; break;
        case 5: row[c] = Math.round(g * 8); break; // integer values: ties at x/d + 0.5
        case 6: row[c] = 0.75 + 0.1 * g; break; // all positive: q4_1's min > 0
        case 7: row[c] = g * 1e-36; break; // near the bottom of the normal f32 range
        case 8: row[c] = g * 1e-41; break; // f32 subnormals
        default: row[c] = std * g;
      }
    }
  }
  return x;
}

function randomImatrix(cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const w = new Float32Array(cols);
  // exp(N(0,1)) like real activations, some columns never reached (0), a few dominant ones.
  for (let c = 0; c < cols; c++) w[c] = random() < 0.05 ? 0 : Math.exp(normal(random)) * (random() < 0.02 ? 100 : 1);
  return w;
}

describe("random tensors: GPU bytes and bits equal the CPU reference's", () => {
  for (const format of GGML_LEGACY_FORMATS) {
    // An odd number of blocks per row and of rows, so the last unit holds a single block.
    const cols = format.blockWeights * (format.blockWeights === 32 ? 7 : 3);
    const rows = format.blockWeights === 32 ? 3001 : 403;
    it(`${format.id}: ${rows} x ${cols}, with the device's division and with div_f32_exact`, async () => {
      const x = messyRows(rows, cols, rows + cols);
      await expectSameAsCpu(format, x, { rows, cols });
      await expectSameAsCpu(format, x, { rows, cols }, undefined, { integerDivision: true });
    });
    if (format.id !== "q8_0" && format.id !== "q8_K") {
      it(`${format.id} with an importance matrix: ${rows} x ${cols}`, async () => {
        await expectSameAsCpu(format, messyRows(rows, cols, 7 * rows), { rows, cols }, randomImatrix(cols, 11));
      });
    }
  }

  it("keeps the sign of zeros where C's order decides it (a block's minimum of +0 or -0 is q4_1/q5_1's m)", async () => {
    const shape = { rows: 8, cols: 256 };
    const random = rng(8);
    const x = new Float32Array(shape.rows * shape.cols);
    for (let i = 0; i < x.length; i++) {
      const r = random();
      x[i] = r < 0.3 ? 0 : r < 0.6 ? -0 : r < 0.8 ? random() : -random() * (i % 512 < 256 ? 0 : 1);
    }
    for (const format of GGML_LEGACY_FORMATS) await expectSameAsCpu(format, x, shape);
  });

  it("streams a tensor through many small chunks", async () => {
    const shape = { rows: 301, cols: 256 };
    const x = messyRows(shape.rows, shape.cols, 5);
    for (const id of ["q4_0", "q5_1", "q8_K"]) {
      await expectSameAsCpu(getFormat(id), x, shape, undefined, { maxChunkBytes: 7 * 1024 });
    }
    await expectSameAsCpu(getFormat("q4_1"), x, shape, randomImatrix(shape.cols, 3), { maxChunkBytes: 5 * 1024 });
  });

  it("splits large dispatches over a 2-D grid", async () => {
    const dev = labDevice();
    const narrow: LabDevice = { ...dev, info: { ...dev.info, limits: { ...dev.info.limits, maxComputeWorkgroupsPerDimension: 3 } } };
    const shape = { rows: 1000, cols: 64 };
    const x = messyRows(shape.rows, shape.cols, 9);
    const format = getFormat("q5_0");
    // buffers.ts reads the limit from the GPUDevice itself, so fake it there.
    const limits = { maxComputeWorkgroupsPerDimension: 3 } as GPUSupportedLimits;
    const device = new Proxy(dev.device, {
      get(target, key) {
        if (key === "limits") return limits;
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const gpu = await quantizer(format, {}, { ...narrow, device }).encode(x, shape);
    expect(where(format, firstByteDiff(gpu, format.encode(x, shape)))).toBe("");
  });
});

describe("real weights and the CPU's help", () => {
  it("stories260K: every tensor whose rows fit, with and without an importance matrix", async () => {
    const tensors = await storiesTensors(inject("sharedDir"));
    let checked = 0;
    for (const format of GGML_LEGACY_FORMATS) {
      for (const t of tensors) {
        if (!format.checkRowLength(t.shape.cols).ok) continue;
        const imatrix = randomImatrix(t.shape.cols, t.shape.cols);
        await expectSameAsCpu(format, t.values, t.shape);
        await expectSameAsCpu(format, t.values, t.shape, imatrix);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("hands rows of subnormal-sized weights to the CPU where the device flushes subnormals, and only those", async () => {
    const flushes = !(await floatArithmeticOf(labDevice())).keepsSubnormals;
    const shape = { rows: 64, cols: 256 };
    const x = gaussian(shape.rows * shape.cols, 0.02, 77);
    // Rows 3, 11, 19, ...: a few f32 subnormals; rows 5, 13, ...: one block of values around 1e-33 (< 2^-96).
    const tinyRows = new Set<number>();
    for (let r = 0; r < shape.rows; r++) {
      if (r % 8 === 3) for (let c = 0; c < 5; c++) x[r * 256 + 40 * c] = (c + 1) * -1e-40;
      if (r % 8 === 5) for (let c = 64; c < 96; c++) x[r * 256 + c] = x[r * 256 + c]! * 1e-31;
      if (r % 8 === 3 || r % 8 === 5) tinyRows.add(r);
    }
    for (const id of ["q4_0", "q4_1", "q5_1", "q8_0", "q8_K"]) {
      const format = getFormat(id);
      const q = quantizer(format);
      const gpu = await q.encode(x, shape);
      expect(where(format, firstByteDiff(gpu, format.encode(x, shape)))).toBe("");
      expect(q.cpuAssistedRows).toBe(flushes ? tinyRows.size : 0);
      expect(firstBitsDiff(await q.decode(gpu, shape), format.decode(gpu, shape))).toBe(-1);
    }
  });
});

describe("bad input fails as on the CPU", () => {
  /** The QuantInputError a call throws (or undefined). */
  async function errorOf(call: () => unknown): Promise<QuantInputError | undefined> {
    try {
      await call();
    } catch (e) {
      if (isQuantInputError(e)) return e;
      throw e;
    }
    return undefined;
  }

  function expectSameError(gpu: QuantInputError | undefined, cpu: QuantInputError | undefined) {
    expect(cpu).toBeDefined();
    expect(gpu?.problem).toBe(cpu?.problem);
    expect(gpu?.message).toBe(cpu?.message);
    expect({ row: gpu?.row, col: gpu?.col, count: gpu?.count, fallback: gpu?.fallback }).toEqual({
      row: cpu?.row,
      col: cpu?.col,
      count: cpu?.count,
      fallback: cpu?.fallback,
    });
  }

  it("reports NaN and ±Inf weights with their first position and count, in any chunk", async () => {
    const shape = { rows: 64, cols: 256 };
    const x = messyRows(shape.rows, shape.cols, 1);
    x[50 * 256 + 17] = NaN;
    x[60 * 256 + 3] = -Infinity;
    for (const format of GGML_LEGACY_FORMATS) {
      const opts = { tensorName: "blk.0.ffn_up.weight" };
      const gpu = await errorOf(() => quantizer(format, { maxChunkBytes: 16 * 1024 }).encode(x, shape, opts));
      expectSameError(gpu, await errorOf(() => format.encode(x, shape, opts)));
      expect(gpu).toMatchObject({ problem: "non-finite", row: 50, col: 17, count: 2, tensor: "blk.0.ffn_up.weight" });
    }
    // With an importance matrix too (the weighted kernels check as well), even a bad one.
    const q4_0 = getFormat("q4_0");
    for (const imatrix of [randomImatrix(256, 1), new Float32Array(256).fill(-1)]) {
      const gpu = await errorOf(() => quantizer(q4_0).encode(x, shape, { imatrix }));
      expectSameError(gpu, await errorOf(() => q4_0.encode(x, shape, { imatrix })));
    }
  });

  it("rejects rows that are not whole blocks, naming the tensor and llama.cpp's fallback", async () => {
    for (const format of GGML_LEGACY_FORMATS) {
      const shape = { rows: 2, cols: format.blockWeights + 16 };
      const x = new Float32Array(shape.rows * shape.cols);
      const opts = { tensorName: "token_embd.weight" };
      const gpu = await errorOf(() => quantizer(format).encode(x, shape, opts));
      expectSameError(gpu, await errorOf(() => format.encode(x, shape, opts)));
      expect(gpu?.message).toContain("token_embd.weight");
      const bytes = new Uint8Array(format.blockBytes * 2);
      expectSameError(await errorOf(() => quantizer(format).decode(bytes, shape)), await errorOf(() => format.decode(bytes, shape)));
    }
  });

  it("rejects a bad importance matrix, a wrong value count and a wrong byte count", async () => {
    const format = getFormat("q5_1");
    const shape = { rows: 2, cols: 64 };
    const x = messyRows(2, 64, 2);
    for (const imatrix of [new Float32Array(32).fill(1), new Float32Array(64).fill(NaN)]) {
      expectSameError(await errorOf(() => quantizer(format).encode(x, shape, { imatrix })), await errorOf(() => format.encode(x, shape, { imatrix })));
    }
    expectSameError(await errorOf(() => quantizer(format).encode(x.subarray(1), shape)), await errorOf(() => format.encode(x.subarray(1), shape)));
    const q = new Uint8Array(format.encodedBytes(shape) + 1);
    expectSameError(await errorOf(() => quantizer(format).decode(q, shape)), await errorOf(() => format.decode(q, shape)));
  });

  it("gives empty results for empty tensors", async () => {
    for (const format of GGML_LEGACY_FORMATS) {
      const shape = { rows: 0, cols: format.blockWeights };
      expect((await quantizer(format).encode(new Float32Array(0), shape)).length).toBe(0);
      expect((await quantizer(format).decode(new Uint8Array(0), shape)).length).toBe(0);
    }
  });
});

describe("encodeIsExact", () => {
  it("holds on this device for both kinds of encoder (the tests above check the bytes), and not where a*b+c fuses", async () => {
    const arithmetic = await floatArithmeticOf(labDevice());
    expect(encodeIsExact(arithmetic, false)).toBe(true);
    expect(encodeIsExact(arithmetic, true)).toBe(true);
    expect(encodeIsExact({ ...arithmetic, fusedMultiplyAdd: true }, false)).toBe(false);
    expect(encodeIsExact({ ...arithmetic, exactDivision: false }, false)).toBe(true);
    expect(encodeIsExact({ ...arithmetic, exactDivision: false }, true)).toBe(false);
  });
});

describe("registration", () => {
  it("gpuQuantizerFor returns these kernels for the legacy formats", async () => {
    for (const format of GGML_LEGACY_FORMATS) {
      const q = gpuQuantizerFor(labDevice(), format);
      expect(q?.format).toBe(format);
      const shape = { rows: 3, cols: format.blockWeights };
      const x = messyRows(3, format.blockWeights, 4);
      expect(await q!.encode(x, shape)).toEqual(format.encode(x, shape));
    }
  });
});
