/**
 * Files the e2e tests make: broken safetensors (each with the FormatError code the lab must report)
 * and a sparse file larger than 4 GiB with a small tensor placed past 2^32.
 * Headers are written by hand here, not with the project's writer, so the reader is checked against
 * bytes that no project code produced (and the broken ones are files the writer would never make).
 */
import { open, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FormatErrorCode } from "../src/formats/errors.ts";

export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
export const storiesDir = path.resolve(repoRoot, "../shared/models/stories260K");
export const shardedDir = path.resolve(repoRoot, "../shared/models/stories260K-sharded");
export const storiesFile = path.join(storiesDir, "model.safetensors");
export const shardedFiles = [
  "model.safetensors.index.json",
  "model-00001-of-00002.safetensors",
  "model-00002-of-00002.safetensors",
].map((f) => path.join(shardedDir, f));

/** 8-byte little-endian header length, then the header text, then the data. */
export function safetensorsBytes(header: string, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

export interface BrokenFile {
  name: string;
  code: FormatErrorCode;
  bytes: Uint8Array;
}

/** One broken file per problem the issue lists; `truncated` is the real model cut short. */
export async function brokenFiles(): Promise<BrokenFile[]> {
  const real = await readFile(storiesFile);
  const f32x4 = new Uint8Array(16);
  return [
    { name: "truncated.safetensors", code: "truncated", bytes: new Uint8Array(real.subarray(0, 600_000)) },
    {
      name: "header-past-end.safetensors",
      code: "header-too-large",
      bytes: safetensorsBytes("{}", new Uint8Array(100), 1_000_000n),
    },
    {
      name: "huge-header-length.safetensors",
      code: "header-too-large",
      bytes: safetensorsBytes("{}", new Uint8Array(100), 2n ** 62n),
    },
    { name: "not-json.safetensors", code: "bad-json", bytes: safetensorsBytes("this is not json", new Uint8Array(8)) },
    {
      name: "overlapping.safetensors",
      code: "bad-offsets",
      bytes: safetensorsBytes(
        JSON.stringify({
          a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
          b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
        }),
        f32x4,
      ),
    },
    {
      name: "out-of-range.safetensors",
      code: "bad-offsets",
      // Starts past the 16 data bytes the file holds.
      bytes: safetensorsBytes(JSON.stringify({ a: { dtype: "F32", shape: [8], data_offsets: [16, 48] } }), f32x4),
    },
    {
      name: "size-mismatch.safetensors",
      code: "size-mismatch",
      bytes: safetensorsBytes(JSON.stringify({ a: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }), f32x4),
    },
    {
      name: "unknown-dtype.safetensors",
      code: "unknown-dtype",
      bytes: safetensorsBytes(JSON.stringify({ a: { dtype: "F12", shape: [4], data_offsets: [0, 16] } }), f32x4),
    },
  ];
}

/** The tensor past 4 GiB in the sparse file, and the values it holds. */
export const PAST_4GIB = {
  name: "past_4gib.weight",
  shape: [2, 4],
  values: [1.5, -2.25, 3.125, 0.001, -1000, 65504, 1.1754943508222875e-38, 7],
};
export const BIG_ZEROS_BYTES = 4_300_000_000; // > 2^32 = 4,294,967,296

/**
 * Writes a sparse file of ~4.3 GB: a U8 tensor of zeros filling past 2^32, then PAST_4GIB (F32).
 * Only the header and the last tensor occupy disk blocks.
 */
export async function writeSparseBigFile(filePath: string): Promise<{ size: number; tensorOffset: number }> {
  const valuesBytes = new Uint8Array(new Float32Array(PAST_4GIB.values).buffer);
  let header = JSON.stringify({
    __metadata__: { made_by: "quantlab e2e", note: "sparse file larger than 4 GiB" },
    "big.zeros": { dtype: "U8", shape: [BIG_ZEROS_BYTES], data_offsets: [0, BIG_ZEROS_BYTES] },
    [PAST_4GIB.name]: {
      dtype: "F32",
      shape: PAST_4GIB.shape,
      data_offsets: [BIG_ZEROS_BYTES, BIG_ZEROS_BYTES + valuesBytes.length],
    },
  });
  header += " ".repeat((8 - (header.length % 8)) % 8);
  const headerBytes = safetensorsBytes(header);
  const tensorOffset = headerBytes.length + BIG_ZEROS_BYTES;
  const size = tensorOffset + valuesBytes.length;
  const handle = await open(filePath, "w");
  try {
    await handle.write(headerBytes, 0, headerBytes.length, 0);
    await handle.write(valuesBytes, 0, valuesBytes.length, tensorOffset);
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
  return { size, tensorOffset };
}

export async function writeFiles(dir: string, files: { name: string; bytes: Uint8Array }[]): Promise<string[]> {
  return Promise.all(
    files.map(async (f) => {
      const p = path.join(dir, f.name);
      await writeFile(p, f.bytes);
      return p;
    }),
  );
}

export async function removeQuietly(p: string): Promise<void> {
  await rm(p, { force: true, recursive: true });
}
