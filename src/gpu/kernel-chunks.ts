/**
 * What the plain-int, bitsandbytes and cast kernel families (src/gpu/intq.ts, bnb.ts, casts.ts) share on the
 * TypeScript side: their shader text (the common WGSL, the exact division, the family file), chunk sizes
 * within the device's limits, and the non-finite flag their encoders raise.
 */
import divisionWgsl from "../../shaders/common/division.wgsl?raw";
import { assertFinite } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { outputStorage, readBack } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { withCommonWgsl } from "./wgsl.ts";

/** A family's shader: shaders/common/*.wgsl, shaders/common/division.wgsl, then the family's file. */
export function familyShader(source: string, file: string): string {
  return withCommonWgsl(source, file, [["common/division.wgsl", divisionWgsl]]);
}

export interface ChunkOptions {
  /**
   * Largest input or output of one dispatch in bytes (default: the device's binding and buffer limits).
   * Tests make it small to stream a tensor through many chunks.
   */
  maxChunkBytes?: number;
}

/** The largest buffer one dispatch may bind on this device, capped by the caller's maxChunkBytes. */
export function chunkByteLimit(dev: LabDevice, opts: ChunkOptions): number {
  const { maxStorageBufferBindingSize, maxBufferSize } = dev.info.limits;
  return Math.min(opts.maxChunkBytes ?? Infinity, maxStorageBufferBindingSize, maxBufferSize);
}

/**
 * How many whole units (rows, or runs of weights) of `unitBytes` (the larger of input and output per unit)
 * one chunk holds, at least 1.
 */
export function unitsPerChunk(dev: LabDevice, opts: ChunkOptions, unitBytes: number): number {
  return Math.max(1, Math.floor(chunkByteLimit(dev, opts) / Math.max(1, unitBytes)));
}

/** Rows of `cols` weights per dispatch: whole rows whose float32 input and encoded output both fit. */
export function rowsPerChunk(dev: LabDevice, opts: ChunkOptions, format: QuantFormat, cols: number): number {
  return unitsPerChunk(dev, opts, Math.max(cols * 4, format.encodedBytes({ rows: 1, cols })));
}

/**
 * The loop every family runs over a tensor: `total` units (rows or weights) in chunks of `perChunk`, one after
 * the other, checking `signal` before each; `run(first, count)` uploads, dispatches and reads back one chunk.
 */
export async function forEachChunk(
  total: number,
  perChunk: number,
  signal: AbortSignal | undefined,
  run: (first: number, count: number) => Promise<void>,
): Promise<void> {
  for (let first = 0; first < total; first += perChunk) {
    signal?.throwIfAborted();
    await run(first, Math.min(perChunk, total - first));
  }
}

/** Runs `body`, then destroys `buffers` (undefined ones skipped), whether or not it threw. */
export async function withBuffers<T>(buffers: readonly (GPUBuffer | undefined)[], body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } finally {
    for (const b of buffers) b?.destroy();
  }
}

/**
 * Promise.all that waits for every promise to settle before it rejects (with the first failure): the
 * read-backs of a round trip still free their staging buffers before it returns, cancelled or not.
 */
export async function allSettled<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}

/** Runs `body`, which fills `output`: returns its result, or destroys `output` and rethrows if it throws. */
export async function keepOnSuccess<T>(output: GPUBuffer, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    output.destroy();
    throw e;
  }
}

/** Workgroups for `invocations` threads in workgroups of `size`. */
export const workgroupsFor = (invocations: number, size: number): number => Math.ceil(invocations / size);

/** Bits of the flags word encoders raise with atomicOr (the WGSL side names them FLAG_*). */
export const ENCODER_FLAG = {
  /** A weight is NaN or +-Inf. */
  nonFinite: 1,
  /** A scale does not fit its storage type (e.g. an fp16 scale above 65504): the CPU reference throws. */
  scaleOverflow: 2,
} as const;

/**
 * The flags word an encoder raises (atomicOr) when it meets input the CPU reference rejects. Once read, a
 * raised flag throws the CPU reference's own error: QuantInputError from assertFinite (the first position and
 * the count) for NaN/Inf, or whatever the format's encode throws for an out-of-range scale.
 */
export class EncoderFlags {
  readonly buffer: GPUBuffer;
  constructor(private readonly device: GPUDevice) {
    this.buffer = outputStorage(device, 4, "encoder flags");
  }

  /** Throws the CPU's error when a flag is up. */
  async check(
    format: QuantFormat,
    x: Float32Array,
    shape: MatrixShape,
    opts: (EncodeOptions & { signal?: AbortSignal }) | undefined,
  ): Promise<void> {
    const word = await readBack(this.device, this.buffer, 4, opts?.signal);
    const flags = new Uint32Array(word.buffer)[0]!;
    if (flags === 0) return;
    if (flags & ENCODER_FLAG.nonFinite) assertFinite(x, shape, opts?.tensorName);
    if (flags & ENCODER_FLAG.scaleOverflow) format.encode(x, shape, opts);
    throw new Error(`a ${format.id} kernel rejected input (flags ${flags}) that the CPU reference accepts`);
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

/**
 * x itself when its length is a multiple of `multiple`, else a copy zero-padded to one: kernels that load 4
 * weights at a time (array<vec4<u32>>) need whole 16-byte elements, and bnb's whole blocks of 64; a zero
 * weight is harmless to every encoder.
 */
export function zeroPadded(x: Float32Array, multiple: number): Float32Array {
  if (x.length % multiple === 0) return x;
  const padded = new Float32Array(Math.ceil(x.length / multiple) * multiple);
  padded.set(x);
  return padded;
}
