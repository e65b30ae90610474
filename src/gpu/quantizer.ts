/**
 * The GPU side of a quantization format: the same contract as QuantFormat.encode/decode (src/quant),
 * on a WebGPU device, producing the same bytes. The worker and the CLI ask `gpuQuantizerFor` for a
 * format's kernels; where it returns undefined the format has no kernel (yet) and the CPU reference runs.
 *
 * encode and decode take arrays on the CPU and stream them through the kernels in chunks that fit the
 * device's maxStorageBufferBindingSize / maxBufferSize. roundTrip works on one such chunk already on the
 * device (the caller streams, at most maxRowsPerChunk rows a call): it encodes and decodes without the
 * bytes or the decoded values passing through the CPU, for the metrics and heatmap kernels to read in place.
 */
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { padTo4 } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { rowsPerChunk } from "./kernel-chunks.ts";

/** Weights on the device: `values` on the CPU and a storage buffer holding them from byte 0 (uploadWeights). */
export interface DeviceWeights {
  readonly values: Float32Array;
  readonly buffer: GPUBuffer;
}

export interface RoundTripOptions extends EncodeOptions {
  signal?: AbortSignal;
  /** Also read the encoded bytes back (an export, the CLI's encode); metrics and heatmaps need only `decoded`. */
  bytes?: boolean;
}

/** What roundTrip leaves: the decoded values on the device, and the encoded bytes when asked for. */
export interface RoundTrip {
  /** rows x cols float32 from byte 0, the bits of decode(encode(x)). The caller destroys it. */
  readonly decoded: GPUBuffer;
  /** The bytes encode returns, when RoundTripOptions.bytes was set. */
  readonly bytes?: Uint8Array;
}

export interface GpuQuantizer {
  readonly format: QuantFormat;
  /** Encode rows x cols float32 values; the same bytes as format.encode. */
  encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array>;
  /** Decode what encode produced; the same float32 bits as format.decode. */
  decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array>;
  /**
   * encode then decode of rows x cols weights already on the device (at most maxRowsPerChunk rows: the
   * caller chunks), as one piece: a per-tensor format takes the piece as the whole tensor, as encode does.
   * The same errors as encode, and the same fallbacks to the CPU reference for the rare rows or blocks a
   * kernel leaves to it (their decoded values are written into `decoded`). Every buffer it made is freed
   * when it returns or throws, except `decoded`.
   */
  roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip>;
  /** Free pipelines and buffers this quantizer holds. */
  destroy(): void;
}

/**
 * Floats a roundTrip input buffer is zero-padded to a multiple of: the largest unit a kernel loads at once
 * (bitsandbytes' blocks of 64; others read 4 or 1). Zeros are harmless to every encoder.
 */
export const WEIGHTS_PADDING = 64;

/** Uploads weights for roundTrip (and the metrics and heatmap kernels, which read the first rows x cols). */
export function uploadWeights(device: GPUDevice, values: Float32Array, label = "weights"): DeviceWeights {
  const bytes = padTo4(Math.ceil(values.length / WEIGHTS_PADDING) * WEIGHTS_PADDING * 4);
  const buffer = device.createBuffer({
    label,
    size: Math.max(4 * WEIGHTS_PADDING, bytes),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  new Float32Array(buffer.getMappedRange()).set(values);
  buffer.unmap();
  return { values, buffer };
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
