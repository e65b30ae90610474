/**
 * Node-side fixtures for the formats tests: where the reference models are, the README's list of
 * stories260K tensors, and a ByteSource wrapper that records every read.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { BlobSource, type ByteSource } from "../src/formats/source.ts";

export const repoRoot = path.resolve(import.meta.dirname, "..");
export const storiesDir = path.resolve(repoRoot, "../shared/models/stories260K");
export const shardedDir = path.resolve(repoRoot, "../shared/models/stories260K-sharded");
export const storiesFile = path.join(storiesDir, "model.safetensors");
export const SHARD_1 = "model-00001-of-00002.safetensors";
export const SHARD_2 = "model-00002-of-00002.safetensors";
export const INDEX = "model.safetensors.index.json";

/** The 47 tensors of stories260K as its README lists them: name -> shape. */
export function storiesTensorShapes(): Map<string, number[]> {
  const shapes = new Map<string, number[]>([["model.embed_tokens.weight", [512, 64]]]);
  for (let n = 0; n < 5; n++) {
    const l = `model.layers.${n}`;
    shapes.set(`${l}.input_layernorm.weight`, [64]);
    shapes.set(`${l}.self_attn.q_proj.weight`, [64, 64]);
    shapes.set(`${l}.self_attn.k_proj.weight`, [32, 64]);
    shapes.set(`${l}.self_attn.v_proj.weight`, [32, 64]);
    shapes.set(`${l}.self_attn.o_proj.weight`, [64, 64]);
    shapes.set(`${l}.post_attention_layernorm.weight`, [64]);
    shapes.set(`${l}.mlp.gate_proj.weight`, [172, 64]);
    shapes.set(`${l}.mlp.up_proj.weight`, [172, 64]);
    shapes.set(`${l}.mlp.down_proj.weight`, [64, 172]);
  }
  shapes.set("model.norm.weight", [64]);
  return shapes;
}

/**
 * A safetensors file parsed the plain way, independently of src/formats: the JSON header and, per
 * tensor, its absolute byte range in the file.
 */
export function rawSafetensors(file: string): {
  bytes: Buffer;
  headerLength: number;
  tensors: Map<string, { dtype: string; shape: number[]; start: number; end: number }>;
} {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, unknown>;
  const tensors = new Map<string, { dtype: string; shape: number[]; start: number; end: number }>();
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors.set(name, { dtype: t.dtype, shape: t.shape, start: 8 + headerLength + t.data_offsets[0], end: 8 + headerLength + t.data_offsets[1] });
  }
  return { bytes, headerLength, tensors };
}

/** Float32 values of a little-endian byte range (copied, so alignment does not matter). */
export function f32At(bytes: Uint8Array, start: number, end: number): Float32Array {
  return new Float32Array(Uint8Array.prototype.slice.call(bytes, start, end).buffer); // a copy even for a Buffer
}

/** A ByteSource over bytes in memory (a Blob, as a picked File would be). */
export function memorySource(bytes: Uint8Array, name = "test.safetensors"): BlobSource {
  return new BlobSource(new Blob([bytes as Uint8Array<ArrayBuffer>]), name);
}

/** Wraps a source and records every read, to assert what a reader asks for. */
export class CountingSource implements ByteSource {
  readonly reads: { offset: number; length: number }[] = [];
  constructor(readonly inner: ByteSource) {}
  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get bytesRequested(): number {
    return this.reads.reduce((s, r) => s + r.length, 0);
  }
  get largestRead(): number {
    return this.reads.reduce((m, r) => Math.max(m, r.length), 0);
  }
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    this.reads.push({ offset, length });
    return this.inner.read(offset, length, signal);
  }
  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}

/** The float32 bit pattern of each value. */
export function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Byte equality of two views (fast: vitest's toEqual walks typed arrays element by element). */
export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
