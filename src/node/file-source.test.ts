import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open, truncate } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX, SHARD_1, SHARD_2, shardedDir, storiesDir, storiesFile } from "../../test/formats-fixtures.ts";
import { GGUF_GOLDEN_DIR } from "../../test/gguf-golden.ts";
import { catalogRows } from "../formats/catalog.ts";
import { decodeToF32, encodeFromF32 } from "../formats/dtypes.ts";
import { isFormatError } from "../formats/errors.ts";
import { openModel, readTensorBytes, readTensorRows } from "../formats/model.ts";
import { safetensorsHeader } from "../formats/safetensors.ts";
import type { ByteSource } from "../formats/source.ts";
import { NodeFileSource, closeSources, openPath } from "./file-source.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "quantlab-file-source-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function withSources<T>(sources: ByteSource[], use: (s: ByteSource[]) => Promise<T>): Promise<T> {
  try {
    return await use(sources);
  } finally {
    await closeSources(sources);
  }
}

describe("openPath", () => {
  it("opens a .safetensors file as itself", async () => {
    await withSources(await openPath(storiesFile), async (sources) => {
      expect(sources.map((s) => [s.name, s.size])).toEqual([[storiesFile, 1_044_992]]);
    });
  });

  it("opens an index with the shards it lists, and a folder holding one the same way", async () => {
    for (const p of [path.join(shardedDir, INDEX), shardedDir]) {
      await withSources(await openPath(p), async (sources) => {
        expect(sources.map((s) => s.name)).toEqual([INDEX, SHARD_1, SHARD_2].map((n) => path.join(shardedDir, n)));
        const model = await openModel(sources);
        expect(model.tensors).toHaveLength(47);
        expect(model.tensors.every((t) => t.dtype === "BF16")).toBe(true);
      });
    }
  });

  it("opens a folder without an index as all its .safetensors files", async () => {
    await withSources(await openPath(storiesDir), async (sources) => {
      expect(sources.map((s) => s.name)).toEqual([storiesFile]);
    });
    const dir = mkdtempSync(path.join(tmp, "shards-"));
    for (const n of [SHARD_2, SHARD_1]) copyFileSync(path.join(shardedDir, n), path.join(dir, n));
    writeFileSync(path.join(dir, "notes.txt"), "not a model");
    await withSources(await openPath(dir), async (sources) => {
      expect(sources.map((s) => path.basename(s.name))).toEqual([SHARD_1, SHARD_2]);
      expect((await openModel(sources)).tensors).toHaveLength(47);
    });
  });

  it("leaves out a shard missing next to its index, so that openModel names it", async () => {
    const dir = mkdtempSync(path.join(tmp, "missing-"));
    for (const n of [INDEX, SHARD_1]) copyFileSync(path.join(shardedDir, n), path.join(dir, n));
    await withSources(await openPath(dir), async (sources) => {
      expect(sources.map((s) => path.basename(s.name))).toEqual([INDEX, SHARD_1]);
      await expect(openModel(sources)).rejects.toMatchObject({
        code: "bad-index",
        file: path.join(dir, INDEX),
        detail: `the index lists a shard that was not opened: ${SHARD_2}; pick (or drop) the index and all its shards together`,
      });
    });
  });

  it("reports a missing path and a folder with nothing to open", async () => {
    const missing = path.join(tmp, "nope.safetensors");
    await expect(openPath(missing)).rejects.toMatchObject({ code: "io", file: missing, detail: "no such file or directory" });
    const empty = mkdtempSync(path.join(tmp, "empty-"));
    await expect(openPath(empty)).rejects.toMatchObject({ code: "io", detail: "this folder holds no .safetensors file, no model.safetensors.index.json and no .gguf file" });
  });
});

describe("openPath on GGUF files", () => {
  it("opens the one GGUF of a folder, and refuses several that are not one split model", async () => {
    const one = mkdtempSync(path.join(tmp, "one-gguf-"));
    copyFileSync(path.join(GGUF_GOLDEN_DIR, "stories260K-Q4_K_M.gguf"), path.join(one, "model.gguf"));
    await withSources(await openPath(one), async (sources) => {
      const model = await openModel(sources);
      expect([model.format, model.name, model.tensors.length]).toEqual(["gguf", "model.gguf", 48]);
    });
    await expect(openPath(GGUF_GOLDEN_DIR)).rejects.toMatchObject({
      code: "io",
      detail: "this folder holds 3 GGUF files that are not the shards of one split model (stories260K-F32.gguf, stories260K-Q2_K.gguf, stories260K-Q4_K_M.gguf); name the one to open",
    });
  });
});

describe("NodeFileSource", () => {
  it("reads at positions, refuses reads past the end, and notices a file that shrank", async () => {
    const file = path.join(tmp, "shrinks.safetensors");
    writeFileSync(file, Uint8Array.from({ length: 100 }, (_, i) => i));
    const source = await NodeFileSource.open(file, "shrinks.safetensors");
    try {
      expect(source.size).toBe(100);
      expect([...(await source.read(95, 5))]).toEqual([95, 96, 97, 98, 99]);
      await expect(source.read(98, 5)).rejects.toMatchObject({ code: "truncated", file: "shrinks.safetensors" });
      await truncate(file, 50);
      const e = await source.read(40, 20).catch((x: unknown) => x);
      expect(isFormatError(e) && e.code).toBe("truncated");
      expect((e as Error).message).toBe("shrinks.safetensors: the file ended at byte 50 while reading bytes 40..60 (it shrank?)");
    } finally {
      await source.close();
    }
  });

  it("refuses a folder", async () => {
    await expect(NodeFileSource.open(tmp)).rejects.toMatchObject({ code: "io" });
  });
});

describe("a file larger than 4 GiB (sparse)", () => {
  const file = path.join(tmp, "big.safetensors");
  // A 4.5 GiB U8 tensor of zeros, then a small F32 tensor that starts past 2^32.
  const bigShape = [1_179_648, 4096];
  const bigBytes = bigShape[0]! * bigShape[1]!;
  const smallValues = Float32Array.from({ length: 12 }, (_, i) => (i - 5.5) * 1.25e-3 + (i === 3 ? Infinity : 0));
  const header = safetensorsHeader([
    { name: "big", dtype: "U8", shape: bigShape, byteLength: bigBytes },
    { name: "small", dtype: "F32", shape: [3, 4], byteLength: 48 },
  ]);
  const smallOffset = header.length + bigBytes;

  beforeAll(async () => {
    const handle = await open(file, "w");
    try {
      await handle.write(header, 0, header.length, 0);
      await handle.write(encodeFromF32("F32", smallValues), 0, 48, smallOffset); // the file is sparse up to here
    } finally {
      await handle.close();
    }
  });

  it("is inspected and its tensor past 2^32 reads back exactly", async () => {
    expect(smallOffset).toBeGreaterThan(2 ** 32);
    await withSources(await openPath(file), async (sources) => {
      expect(sources[0]!.size).toBe(smallOffset + 48);
      const model = await openModel(sources);
      const rows = catalogRows(model);
      expect(rows.map((r) => [r.name, r.dtype, r.shape, r.bytes, r.offset])).toEqual([
        ["big", "U8", bigShape, bigBytes, header.length],
        ["small", "F32", [3, 4], 48, smallOffset],
      ]);
      expect(model.totalBytes).toBe(bigBytes + 48);
      const small = model.tensors.find((t) => t.name === "small")!;
      expect(decodeToF32("F32", await readTensorBytes(small))).toEqual(smallValues);
      const chunks = [];
      for await (const c of readTensorRows(small, { chunkBytes: 16 })) chunks.push(...c.values);
      expect(new Float32Array(chunks)).toEqual(smallValues);
      // the big tensor's last row, just below the small one, is zeros
      const big = model.tensors.find((t) => t.name === "big")!;
      expect((await big.source.read(big.offset + bigBytes - 4096, 4096)).every((b) => b === 0)).toBe(true);
    });
  });
});
