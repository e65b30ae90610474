/**
 * The WGSL kernels in Node through Dawn (the `webgpu` package) on SwiftShader's Vulkan driver: the same
 * bytes as the CPU reference for every format that has a kernel, and the CLI's `--backend webgpu`
 * giving llama.cpp's golden bytes. Skipped (with the reason printed) only where Dawn finds no adapter.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGML_GOLDEN_DIR, goldenManifest, loadGoldenCase } from "../../test/ggml-golden.ts";
import { quantlab } from "../../test/quantlab-cli.ts";
import { gaussian } from "../../test/random.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import type { QuantizeJson } from "../cli/quantize.ts";
import type { LabDevice } from "../gpu/device.ts";
import "../gpu/kernels.ts";
import { gpuQuantizerFor } from "../gpu/quantizer.ts";
import { FORMATS } from "../quant/registry.ts";
import { findSwiftShaderIcd, requestNodeLabDevice } from "./webgpu.ts";

const got = await requestNodeLabDevice();
const dev: LabDevice | undefined = got.device;
if (!dev) {
  const why = got.status.kind === "cpu" ? got.status.reason : "no device";
  console.warn(`src/node/webgpu.test.ts: skipped, Dawn created no WebGPU adapter on this machine: ${why}`);
}

afterAll(() => dev?.device.destroy());

describe("Dawn in Node", () => {
  it("finds an adapter wherever Chromium's SwiftShader Vulkan driver is installed", () => {
    // The reverse of the skip above: on a machine with the driver, a missing adapter is a failure.
    if (findSwiftShaderIcd()) expect(got.status).toMatchObject({ kind: "gpu" });
  });
});

describe.runIf(dev)("WGSL kernels on Dawn give the CPU reference's bytes", () => {
  const withKernel = FORMATS.filter((f) => {
    const q = gpuQuantizerFor(dev!, f);
    q?.destroy();
    return q !== undefined;
  });

  it("has kernels to test", () => {
    expect(withKernel.length).toBeGreaterThan(0);
  });

  it.each(withKernel.map((f) => [f.id, f] as const))("%s: random rows, encode and decode", async (_, format) => {
    const shape = { rows: 24, cols: 1024 };
    const x = gaussian(shape.rows * shape.cols, 0.02, 1234);
    x[77] = 0.5; // an outlier
    x.fill(0, 2048, 3072); // an all-zero row
    const q = gpuQuantizerFor(dev!, format)!;
    try {
      const gpuBytes = await q.encode(x, shape);
      expect(gpuBytes).toEqual(format.encode(x, shape));
      const gpuValues = await q.decode(gpuBytes, shape);
      const cpuValues = format.decode(gpuBytes, shape);
      expect(new Uint32Array(gpuValues.buffer, gpuValues.byteOffset, gpuValues.length)).toEqual(
        new Uint32Array(cpuValues.buffer, cpuValues.byteOffset, cpuValues.length),
      );
    } finally {
      q.destroy();
    }
  });

  const goldenFormats = withKernel.filter((f) => goldenManifest().entries.some((e) => e.format === f.id));
  it.each(goldenFormats.map((f) => [f.id, f] as const))("%s: llama.cpp's golden entries, ref and imatrix", async (_, format) => {
    const entries = goldenManifest().entries.filter((e) => e.format === format.id);
    const q = gpuQuantizerFor(dev!, format)!;
    try {
      for (const entry of entries) {
        const c = loadGoldenCase(entry);
        const shape = { rows: entry.rows, cols: entry.cols };
        const bytes = await q.encode(c.input, shape, c.imatrix ? { imatrix: c.imatrix } : {});
        expect(bytes, `${entry.format} ${entry.variant} ${entry.case}`).toEqual(c.quant);
      }
    } finally {
      q.destroy();
    }
  });
});

describe.runIf(dev)("quantlab encode/decode --backend webgpu", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-webgpu-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes llama.cpp's golden bytes and decodes them to its values", async () => {
    const withKernel = FORMATS.filter((f) => f.family === "gguf" && gpuQuantizerFor(dev!, f) !== undefined);
    const entry = goldenManifest().entries.find((e) => e.format === withKernel[0]?.id && e.variant === "ref" && e.case === "gauss_4096");
    expect(entry).toBeDefined();
    const e = entry!;
    const dims = ["--rows", String(e.rows), "--cols", String(e.cols)];
    const packed = path.join(dir, "q.bin");
    const decoded = path.join(dir, "y.f32");
    const enc = await quantlab("encode", "--backend", "webgpu", "--format", e.format, ...dims, "--in", path.join(GGML_GOLDEN_DIR, e.input), "--out", packed);
    expect(enc.stderr).toBe("");
    expect(enc.code).toBe(0);
    expect(Buffer.compare(await readFile(packed), await readFile(path.join(GGML_GOLDEN_DIR, e.quant.file)))).toBe(0);
    const dec = await quantlab("decode", "--backend", "webgpu", "--format", e.format, ...dims, "--in", packed, "--out", decoded);
    expect(dec.stderr).toBe("");
    expect(dec.code).toBe(0);
    expect(Buffer.compare(await readFile(decoded), await readFile(path.join(GGML_GOLDEN_DIR, e.dequant.file)))).toBe(0);
  });
});

describe.runIf(dev)("quantlab quantize --backend webgpu", () => {
  it("gives the CPU run's sizes and max |error|, and its other metrics within src/gpu/metrics.ts's bound", async () => {
    const model = path.join(STORIES_DIR, "model.safetensors");
    const args = ["quantize", model, "--json", "--formats", "q8_0,q4_0,q4_K,int4-g32,int8,f16,fp8-e4m3", "--tensors", "layers\\.1\\.(mlp\\.up|self_attn\\.q)"];
    const [gpuRun, cpuRun] = await Promise.all([quantlab(...args, "--backend", "webgpu"), quantlab(...args)]);
    expect(gpuRun.stderr).toBe("");
    expect(gpuRun.code).toBe(0);
    const gpu = JSON.parse(gpuRun.stdout) as QuantizeJson;
    const cpu = JSON.parse(cpuRun.stdout) as QuantizeJson;
    expect(gpu.totals).toEqual(cpu.totals);
    expect(gpu.results.length).toBe(cpu.results.length);
    let onGpu = 0;
    gpu.results.forEach((g, i) => {
      const c = cpu.results[i]!;
      if ("error" in c || "error" in g) {
        expect(g).toEqual(c);
        return;
      }
      const where = `${g.tensor} ${g.format}`;
      if (g.ran_on === "gpu") onGpu++;
      expect({ ...g, ran_on: c.ran_on, why: c.why, mse: 0, rmse: 0, snr_db: 0, cosine: 0 }, where).toEqual({ ...c, mse: 0, rmse: 0, snr_db: 0, cosine: 0 });
      // GPU sums are f32 trees: |relative error| <= gamma(block + log2(256) + 3) ~ 1.6e-5 for blocks of 256.
      expect(Math.abs(g.mse / c.mse - 1), where).toBeLessThan(1.6e-5);
      expect(Math.abs(g.rmse / c.rmse - 1), where).toBeLessThan(1.6e-5);
      expect(Math.abs(g.cosine - c.cosine), where).toBeLessThan(1e-5);
      expect(Math.abs(g.snr_db! - c.snr_db!), where).toBeLessThan(1e-3);
    });
    expect(onGpu).toBeGreaterThan(0);
  });
});
