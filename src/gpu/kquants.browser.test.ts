/**
 * shaders/kquants.wgsl on real WebGPU against llama.cpp's golden vectors (../shared/golden/ggml) and the
 * CPU reference (src/quant/ggml/q{2..6}_K.ts): encoded bytes equal, decoded float32 bits equal, for the
 * reference and the importance-weighted encoders. No tolerance anywhere.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { requestLabDevice, type LabDevice } from "./device.ts";
import { kquantGpuQuantizer } from "./kquants.ts";
import { gpuQuantizerFor, type GpuQuantizer } from "./quantizer.ts";
import { getFormat } from "../quant/registry.ts";
import type { QuantFormat } from "../quant/format.ts";

const K_FORMATS = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"] as const;

let dev: LabDevice;

beforeAll(async () => {
  const { status, device } = await requestLabDevice();
  if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
  dev = device;
});

afterAll(() => dev?.device.destroy());

interface GoldenEntry {
  format: string;
  variant: "ref" | "imatrix";
  case: string;
  rows: number;
  cols: number;
  input: string;
  imatrix: string | null;
  quant: { file: string };
  dequant: { file: string };
}

const goldenDir = () => `/@fs${inject("sharedDir")}/golden/ggml`;

async function fetchBytes(relative: string): Promise<ArrayBuffer> {
  const response = await fetch(`${goldenDir()}/${relative}`);
  if (!response.ok) throw new Error(`fetching ${relative} from the test server: HTTP ${response.status}`);
  return response.arrayBuffer();
}

const bitsOf = (y: Float32Array) => new Uint32Array(y.buffer, y.byteOffset, y.length);

/** The first index where two arrays differ, for a readable failure (expect().toEqual on 100k bytes is not). */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string | undefined {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `index ${i}: ${a[i]} vs ${b[i]}`;
  return undefined;
}

function quantizerOf(format: QuantFormat, opts: { maxChunkBytes?: number } = {}): GpuQuantizer {
  const q = kquantGpuQuantizer(dev, format, opts);
  if (!q) throw new Error(`no GPU quantizer for ${format.id}`);
  return q;
}

describe("K-quant kernels on llama.cpp's golden vectors", async () => {
  const manifest = JSON.parse(new TextDecoder().decode(await fetchBytes("manifest.json"))) as { entries: GoldenEntry[] };
  const entries = manifest.entries.filter((e) => (K_FORMATS as readonly string[]).includes(e.format));

  it("has every K-quant format in both variants", () => {
    for (const id of K_FORMATS) {
      for (const variant of ["ref", "imatrix"]) expect(entries.some((e) => e.format === id && e.variant === variant)).toBe(true);
    }
  });

  for (const entry of entries) {
    it(`${entry.format} ${entry.variant} ${entry.case}: GPU bytes = golden = CPU bytes, GPU decode = golden bits`, async () => {
      const format = getFormat(entry.format);
      const shape = { rows: entry.rows, cols: entry.cols };
      const x = new Float32Array(await fetchBytes(entry.input));
      const imatrix = entry.imatrix ? new Float32Array(await fetchBytes(entry.imatrix)) : undefined;
      const golden = new Uint8Array(await fetchBytes(entry.quant.file));
      const goldenDequant = new Uint32Array(await fetchBytes(entry.dequant.file));
      const gpu = quantizerOf(format);
      const bytes = await gpu.encode(x, shape, imatrix ? { imatrix } : {});
      expect(firstDifference(bytes, golden), "GPU vs golden bytes").toBeUndefined();
      expect(firstDifference(format.encode(x, shape, imatrix ? { imatrix } : {}), golden), "CPU vs golden bytes").toBeUndefined();
      const decoded = await gpu.decode(golden, shape);
      expect(firstDifference(bitsOf(decoded), goldenDequant), "GPU decode vs golden bits").toBeUndefined();
    });
  }
});

describe("gpuQuantizerFor", () => {
  it("returns the K-quant kernels for q2_K..q6_K", () => {
    for (const id of K_FORMATS) expect(gpuQuantizerFor(dev, getFormat(id))?.format.id).toBe(id);
  });
  it("does not claim other formats", () => {
    expect(kquantGpuQuantizer(dev, getFormat("q4_0"))).toBeUndefined();
  });
});

