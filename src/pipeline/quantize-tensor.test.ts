/**
 * The pipeline on the CPU path (Node has no WebGPU here): real stories260K tensors streamed in small chunks
 * give exactly what the formats and the metrics give on the whole tensor; row lengths, NaN, cancelling,
 * progress; and the GPU bookkeeping (kernel failure, device loss) with a stand-in device whose "kernels"
 * are the CPU references.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeFromF32 } from "../formats/dtypes.ts";
import { type OpenedModel, openModel, readTensorValues } from "../formats/model.ts";
import { readSafetensors, writeSafetensors, type TensorInfo } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import type { LabDevice } from "../gpu/device.ts";
import { registerGpuQuantizers, type GpuQuantizer } from "../gpu/quantizer.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { errorMetrics, metricsBlockSize, sizeMetrics } from "../quant/metrics.ts";
import { FORMATS, getFormat } from "../quant/registry.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { encodesRowsIndependently, quantizeTensor, type FormatResult, type QuantizeProgress } from "./quantize-tensor.ts";

let model: OpenedModel;
beforeAll(async () => {
  model = await openModel(await openPath(path.join(STORIES_DIR, "model.safetensors")));
});
afterAll(async () => {
  await closeSources([...new Set(model.tensors.map((t) => t.source))]);
});

function tensorNamed(name: string): TensorInfo {
  const t = model.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name} in stories260K`);
  return t;
}

async function valuesOf(t: TensorInfo): Promise<Float32Array> {
  return await readTensorValues(t);
}

function succeeded(r: FormatResult | undefined): Extract<FormatResult, { ok: true }> {
  if (!r?.ok) throw new Error(`expected a result, got ${JSON.stringify(r)}`);
  return r;
}

function failed(r: FormatResult | undefined): Extract<FormatResult, { ok: false }> {
  if (!r || r.ok) throw new Error(`expected an error, got ${r ? `numbers for ${r.format}` : "nothing"}`);
  return r;
}

/** A one-tensor safetensors file in memory. */
async function memoryTensor(name: string, shape: [number, number], values: Float32Array): Promise<TensorInfo> {
  const bytes = writeSafetensors([{ name, dtype: "F32", shape, data: encodeFromF32("F32", values) }]);
  const file = await readSafetensors(new BlobSource(new Blob([bytes]), `${name}.safetensors`));
  return file.tensors[0]!;
}

/** Deterministic values with a spread of magnitudes (no test depends on their distribution). */
function wavyValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(i * 0.37 + seed) * (1 + ((i * 7919) % 13)) * 0.01;
  return out;
}

describe("quantizeTensor on the CPU reference", () => {
  // Row-independent formats of each family, and whole-tensor ones (per-tensor int, bitsandbytes).
  const formatIds = ["q8_0", "q4_0", "q5_1", "int4-g32", "int8", "int3-asym-channel", "int4-tensor", "nf4", "nf4-dq", "llm-int8", "f16", "fp8-e4m3"];

  for (const name of ["model.layers.1.self_attn.q_proj.weight", "model.embed_tokens.weight", "model.layers.3.mlp.gate_proj.weight"]) {
    it(`${name}: streamed in small chunks, the same bytes and metrics as the formats on the whole tensor`, async () => {
      const tensor = tensorNamed(name);
      const formats = formatIds.map(getFormat);
      // 3 rows of 64 weights a chunk: many chunks, so concatenation and metrics streaming are exercised.
      const run = await quantizeTensor(tensor, formats, { keepBytes: true, chunkBytes: 3 * 64 * 4, noDeviceReason: "Node has no WebGPU here" });
      const x = await valuesOf(tensor);
      const shape = run.shape;
      expect(shape.rows * shape.cols).toBe(tensor.params);
      expect(run.results.map((r) => r.format)).toEqual(formats.map((f) => f.id));
      for (const [i, format] of formats.entries()) {
        const r = succeeded(run.results[i]);
        const q = format.encode(x, shape, { tensorName: name });
        expect(r.bytes, format.id).toEqual(q);
        expect(r.metrics, format.id).toEqual(errorMetrics(x, format.decode(q, shape), shape, metricsBlockSize(format)));
        expect(r.size, format.id).toEqual(sizeMetrics(format, shape, tensor.bytes));
        expect(r.ranOn).toBe("cpu");
        expect(r.why).toBe("Node has no WebGPU here");
      }
    });
  }

  it("metrics only unless the bytes are asked for", async () => {
    const run = await quantizeTensor(tensorNamed("model.norm.weight"), [getFormat("q8_0")]);
    const r = succeeded(run.results[0]);
    expect(r.bytes).toBeUndefined();
    expect(r.why).toBe("no WebGPU device");
    expect(r.metrics.count).toBe(64);
    expect(r.metrics.snrDb).toBeGreaterThan(30);
  });

  it("q4_K on the 172-wide down_proj: an error naming the tensor and llama.cpp's fallback; the other formats still run", async () => {
    const name = "model.layers.4.mlp.down_proj.weight";
    const tensor = tensorNamed(name);
    expect(tensor.shape).toEqual([64, 172]);
    const q4K = getFormat("q4_K");
    const check = q4K.checkRowLength(172);
    if (check.ok) throw new Error("q4_K should refuse rows of 172");
    const run = await quantizeTensor(tensor, [q4K, getFormat("f16"), getFormat("int8")]);
    const error = failed(run.results[0]).error;
    expect(error.problem).toBe("row-length");
    expect(error.fallback).toBe(check.fallback);
    expect(error.message).toContain(name);
    expect(error.message).toContain(check.fallback!);
    expect(succeeded(run.results[1]).metrics.count).toBe(64 * 172);
    expect(succeeded(run.results[2]).metrics.count).toBe(64 * 172);
  });

  it("a NaN in a later chunk fails every format, naming its tensor row and column", async () => {
    const values = wavyValues(40 * 64, 1);
    values[29 * 64 + 7] = NaN;
    values[33 * 64 + 1] = Infinity;
    const tensor = await memoryTensor("bad.weight", [40, 64], values);
    const run = await quantizeTensor(tensor, [getFormat("q8_0"), getFormat("int4-g64"), getFormat("nf4")], { chunkBytes: 8 * 64 * 4 });
    for (const r of run.results) {
      const error = failed(r).error;
      expect(error.problem).toBe("non-finite");
      expect([error.row, error.col]).toEqual([29, 7]);
      expect(error.message).toContain("bad.weight");
      expect(error.message).toContain("row 29, column 7");
    }
  });

  it("an all-zero tensor gives exact zeros", async () => {
    const tensor = await memoryTensor("zeros.weight", [4, 256], new Float32Array(4 * 256));
    const run = await quantizeTensor(tensor, ["q4_K", "q8_0", "int4-asym-g128", "nf4-dq", "fp8-e5m2"].map(getFormat));
    for (const r of run.results) {
      const m = succeeded(r).metrics;
      expect(m.mse, r.format).toBe(0);
      expect(m.maxAbsErr, r.format).toBe(0);
    }
  });

  it("progress runs from the first piece to the total, format by format", async () => {
    const tensor = tensorNamed("model.layers.0.mlp.up_proj.weight");
    const seen: QuantizeProgress[] = [];
    await quantizeTensor(tensor, [getFormat("q8_0"), getFormat("q4_K"), getFormat("int8")], {
      chunkBytes: 16 * 64 * 4,
      onProgress: (p) => seen.push(p),
    });
    const total = tensor.bytes * 3;
    expect(seen.every((p) => p.totalBytes === total)).toBe(true);
    expect(seen.at(-1)!.doneBytes).toBe(total);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.doneBytes).toBeGreaterThan(seen[i - 1]!.doneBytes);
    // q4_K cannot take rows of 64: counted as done at once; the others advance chunk by chunk.
    expect(new Set(seen.map((p) => p.format))).toEqual(new Set(["q8_0", "q4_K", "int8-channel"]));
    expect(seen.length).toBeGreaterThan(3);
  });

  it("cancelling stops the job with an AbortError between chunks", async () => {
    const tensor = tensorNamed("model.embed_tokens.weight");
    const controller = new AbortController();
    let progressCalls = 0;
    const job = quantizeTensor(tensor, [getFormat("q4_0"), getFormat("q6_K")], {
      chunkBytes: 8 * 64 * 4,
      signal: controller.signal,
      onProgress: () => {
        progressCalls++;
        if (progressCalls === 2) controller.abort();
      },
    });
    await expect(job).rejects.toMatchObject({ name: "AbortError" });
    expect(progressCalls).toBe(2);
    // An already-aborted signal does not start.
    await expect(quantizeTensor(tensor, [getFormat("q4_0")], { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
  });

  it("a tensor above the whole-tensor limit: formats that need it whole say so, the streaming ones run", async () => {
    const tensor = tensorNamed("model.embed_tokens.weight");
    const run = await quantizeTensor(tensor, [getFormat("nf4"), getFormat("q8_0")], { maxWholeTensorBytes: 64 * 1024 });
    const error = failed(run.results[0]).error;
    expect(error.problem).toBe("too-large");
    expect(error.message).toContain("model.embed_tokens.weight");
    expect(succeeded(run.results[1]).metrics.count).toBe(512 * 64);
  });
});

describe("encodesRowsIndependently", () => {
  it("is true exactly for the formats whose rows encoded one by one concatenate to the whole encoding", () => {
    const shape: MatrixShape = { rows: 3, cols: 256 };
    const x = wavyValues(shape.rows * shape.cols, 2);
    // Rows with different ranges, so a shared (per-tensor) scale shows.
    for (let c = 0; c < 256; c++) x[2 * 256 + c]! *= 5;
    for (const format of FORMATS) {
      const whole = format.encode(x, shape);
      const byRows = new Uint8Array(whole.length + 64);
      let at = 0;
      for (let r = 0; r < shape.rows; r++) {
        const q = format.encode(x.subarray(r * 256, (r + 1) * 256), { rows: 1, cols: 256 });
        if (at + q.length <= byRows.length) byRows.set(q, at);
        at += q.length;
      }
      const same = at === whole.length && byRows.subarray(0, at).every((b, i) => b === whole[i]);
      expect(encodesRowsIndependently(format), format.id).toBe(same);
    }
  });
});

describe("quantizeTensor with a GPU (stand-in kernels)", () => {
  /** A device whose "kernels" are the CPU references, failing on demand; small bindings force several pieces. */
  function standInDevice(opts: { failAfterEncodes?: number; loseDevice?: boolean; kernelFor?: (f: QuantFormat) => boolean }) {
    let resolveLost!: (info: GPUDeviceLostInfo) => void;
    const lost = new Promise<GPUDeviceLostInfo>((r) => (resolveLost = r));
    const limit = 16 * 64 * 4;
    const device = {
      device: {} as GPUDevice,
      info: { limits: { maxStorageBufferBindingSize: limit, maxBufferSize: limit } },
      lost,
    } as unknown as LabDevice;
    let encodes = 0;
    const stats = { gpuEncodes: 0 };
    registerGpuQuantizers((dev, format) => {
      if (dev !== device || !(opts.kernelFor?.(format) ?? true)) return undefined;
      const quantizer: GpuQuantizer = {
        format,
        async encode(x, shape, o) {
          if (opts.failAfterEncodes !== undefined && encodes++ >= opts.failAfterEncodes) {
            if (opts.loseDevice) resolveLost({ reason: "unknown", message: "stand-in device reset" } as GPUDeviceLostInfo);
            throw new Error("stand-in kernel failure");
          }
          stats.gpuEncodes++;
          return format.encode(x, shape, o);
        },
        async decode(q, shape) {
          return format.decode(q, shape);
        },
        // Device buffers need a real device: the pipeline uses roundTrip only with GPU metrics, which these lack.
        roundTrip: () => Promise.reject(new Error("stand-in kernels have no device buffers")),
        destroy() {},
      };
      return quantizer;
    });
    return { device, stats };
  }

  it("runs on the 'GPU' in pieces the device can bind, and says where it ran", async () => {
    const { device, stats } = standInDevice({});
    const tensor = tensorNamed("model.layers.2.mlp.gate_proj.weight"); // 172 x 64
    const run = await quantizeTensor(tensor, [getFormat("int4-g32"), getFormat("q6_K"), getFormat("int4-tensor")], { device, keepBytes: true });
    const [g32, q6K, int4] = run.results;
    expect(succeeded(g32).ranOn).toBe("gpu");
    expect(succeeded(g32).why).toBeUndefined();
    // 172 rows in pieces of at most 16 rows (the binding limit): 11 pieces.
    expect(stats.gpuEncodes).toBe(11);
    const x = await valuesOf(tensor);
    expect(succeeded(g32).bytes).toEqual(getFormat("int4-g32").encode(x, run.shape));
    // The whole tensor does not fit one binding here: int4-tensor runs on the CPU, and says why.
    expect(succeeded(int4).ranOn).toBe("cpu");
    expect(succeeded(int4).why).toMatch(/does not fit in one GPU buffer binding/);
    // q6_K cannot take rows of 64; its error is unchanged by the GPU.
    expect(failed(q6K).error.problem).toBe("row-length");
  });

  it("a device lost mid-run: the formats finish on the CPU with the same bytes, and the result says so", async () => {
    const { device } = standInDevice({ failAfterEncodes: 5, loseDevice: true });
    const tensor = tensorNamed("model.embed_tokens.weight"); // 512 x 64: 32 pieces of 16 rows
    const formats = [getFormat("int4-g32"), getFormat("f16")];
    const run = await quantizeTensor(tensor, formats, { device, keepBytes: true });
    const x = await valuesOf(tensor);
    for (const [i, format] of formats.entries()) {
      const r = succeeded(run.results[i]);
      expect(r.ranOn).toBe("cpu");
      expect(r.why).toMatch(/GPU device was lost \(stand-in device reset\) after \d+ of 512 rows on the GPU; the rest ran on the CPU reference/);
      expect(r.bytes).toEqual(format.encode(x, run.shape));
    }
    // One chunk holds the whole tensor: int4-g32 had 5 pieces of 16 rows on the GPU before the loss, f16 none.
    expect(succeeded(run.results[0]).why).toContain("after 80 of 512 rows");
    expect(succeeded(run.results[1]).why).toContain("after 0 of 512 rows");
  });

  it("a failing kernel moves only its format to the CPU", async () => {
    const { device } = standInDevice({ failAfterEncodes: 0, kernelFor: (f) => f.id === "int4-g64" });
    const tensor = tensorNamed("model.layers.0.self_attn.k_proj.weight");
    const run = await quantizeTensor(tensor, [getFormat("int4-g64"), getFormat("int8-channel")], { device });
    expect(succeeded(run.results[0]).why).toMatch(/the GPU kernel failed \(stand-in kernel failure\) after 0 of 32 rows/);
    expect(succeeded(run.results[1]).why).toBe("no WGSL kernel for int8-channel yet");
  });

  it("ggml formats stay on the CPU when the device's float arithmetic is not known to be the CPU's", async () => {
    // The stand-in cannot run the float probe (src/gpu/float-probe.ts): as on a GPU that fuses multiply-add,
    // the ggml formats must not risk other bytes than llama.cpp's; the other formats use the GPU.
    const { device } = standInDevice({});
    const run = await quantizeTensor(tensorNamed("model.layers.0.self_attn.k_proj.weight"), [getFormat("q8_0"), getFormat("int8-channel")], { device });
    expect(succeeded(run.results[0]).ranOn).toBe("cpu");
    expect(succeeded(run.results[0]).why).toMatch(/float arithmetic could not be probed .*: ran on the CPU reference/);
    expect(succeeded(run.results[1]).ranOn).toBe("gpu");
  });
});
