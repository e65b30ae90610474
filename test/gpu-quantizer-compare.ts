/**
 * Browser-test helpers for GPU quantizers: GPU bytes against the CPU reference's bytes and GPU decode bits
 * against the CPU decode bits, no tolerance; and stories260K's tensors as float32 arrays (fetched from
 * ../shared through Vite's /@fs/ route).
 */
import { expect } from "vitest";
import type { GpuQuantizer } from "../src/gpu/quantizer.ts";
import type { EncodeOptions, MatrixShape } from "../src/quant/format.ts";
import { BlobSource } from "../src/formats/source.ts";
import { openModel, readTensorRows, tensorRowLayout } from "../src/formats/model.ts";

/** Index of the first differing byte, -2 for a length mismatch, -1 when equal. */
export function firstByteDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Index of the first value whose float32 bits differ (-0 vs +0 and NaN payloads count), -2 / -1 as above. */
export function firstBitsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return -2;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/**
 * Encodes x on the GPU and with the CPU reference, expects the same bytes, then decodes the bytes on both
 * and expects the same float32 bits. Returns the bytes.
 */
export async function expectGpuEqualsCpu(gpu: GpuQuantizer, x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Promise<Uint8Array> {
  const format = gpu.format;
  const cpuBytes = format.encode(x, shape, opts);
  const gpuBytes = await gpu.encode(x, shape, opts);
  const at = firstByteDiff(gpuBytes, cpuBytes);
  expect(at, `${format.id} ${shape.rows}x${shape.cols}: first differing byte ${at}: GPU ${gpuBytes[at]} CPU ${cpuBytes[at]}`).toBe(-1);
  const cpuValues = format.decode(cpuBytes, shape);
  const gpuValues = await gpu.decode(cpuBytes, shape);
  const v = firstBitsDiff(gpuValues, cpuValues);
  expect(v, `${format.id} ${shape.rows}x${shape.cols}: first differing value ${v}: GPU ${gpuValues[v]} CPU ${cpuValues[v]}`).toBe(-1);
  return gpuBytes;
}

export interface NamedTensor {
  name: string;
  shape: MatrixShape;
  values: Float32Array;
}

/** Every tensor of stories260K (F32) as rows x cols float32 values. */
export async function storiesTensors(sharedDir: string): Promise<NamedTensor[]> {
  const response = await fetch(`/@fs${sharedDir}/models/stories260K/model.safetensors`);
  if (!response.ok) throw new Error(`fetching stories260K from the test server: HTTP ${response.status}`);
  const model = await openModel([new BlobSource(await response.blob(), "model.safetensors")]);
  const out: NamedTensor[] = [];
  for (const t of model.tensors) {
    const { rows, rowLength } = tensorRowLayout(t);
    const values = new Float32Array(t.params);
    let at = 0;
    for await (const chunk of readTensorRows(t)) {
      values.set(chunk.values, at);
      at += chunk.values.length;
    }
    out.push({ name: t.name, shape: { rows, cols: rowLength }, values });
  }
  return out;
}
