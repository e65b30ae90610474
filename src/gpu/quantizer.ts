/**
 * The GPU side of a quantization format: the same contract as QuantFormat.encode/decode (src/quant),
 * on a WebGPU device, producing the same bytes. The worker and the CLI ask `gpuQuantizerFor` for a
 * format's kernels; where it returns undefined the format has no kernel (yet) and the CPU reference runs.
 *
 * Kernels take one chunk of whole rows at a time: callers stream a tensor through them in chunks
 * that fit the device's maxStorageBufferBindingSize / maxBufferSize (see maxRowsPerChunk).
 */
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import type { LabDevice } from "./device.ts";
import { rowsPerChunk } from "./kernel-chunks.ts";

export interface GpuQuantizer {
  readonly format: QuantFormat;
  /** Encode rows x cols float32 values; the same bytes as format.encode. */
  encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array>;
  /** Decode what encode produced; the same float32 bits as format.decode. */
  decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array>;
  /** Free pipelines and buffers this quantizer holds. */
  destroy(): void;
}

/** Builds the GPU quantizer of one format family on a device; each family module registers one. */
export type GpuQuantizerFactory = (dev: LabDevice, format: QuantFormat) => GpuQuantizer | undefined;

const factories: GpuQuantizerFactory[] = [];

/** Called once by each kernel family module (src/gpu/<family>.ts) at import time. */
export function registerGpuQuantizers(factory: GpuQuantizerFactory): void {
  factories.push(factory);
}

/** The GPU quantizer for a format, or undefined when no family has a kernel for it. */
export function gpuQuantizerFor(dev: LabDevice, format: QuantFormat): GpuQuantizer | undefined {
  for (const make of factories) {
    const q = make(dev, format);
    if (q) return q;
  }
  return undefined;
}

/**
 * How many rows of `cols` float32 values one chunk may hold on this device so that both the input
 * and the largest output (float32 decode, or the encoded bytes) fit in one storage binding.
 */
export function maxRowsPerChunk(dev: LabDevice, format: QuantFormat, cols: number): number {
  return rowsPerChunk(dev, {}, format, cols);
}
