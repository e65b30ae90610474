/**
 * readTensorRows' two buffer modes (see bench/run.ts for why they exist): fresh chunks the caller
 * may keep (F32 viewed without a copy), and reuseBuffers, where a Node file is read into one buffer
 * for the whole stream. Both must give the same values as a one-piece decode, for every dtype.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DTYPES, encodeFromF32 } from "./dtypes.ts";
import { type OpenedModel, openModel, readTensorRows, readTensorValues } from "./model.ts";
import { writeSafetensors } from "./safetensors.ts";
import { BlobSource } from "./source.ts";
import { NodeFileSource } from "../node/file-source.ts";
import { FormatError } from "./errors.ts";

const ROWS = 37;
const COLS = 13;

/** Values every dtype holds exactly (F8_E5M2 has 2 mantissa bits): -8..8, BOOL 0/1, U8 non-negative. */
function valuesFor(dtype: string): number[] {
  return Array.from({ length: ROWS * COLS }, (_, i) => (dtype === "BOOL" ? i % 2 : dtype === "U8" ? i % 200 : (i % 17) - 8));
}

let dir: string;
let filePath: string;
let bytes: Uint8Array<ArrayBuffer>;
const opened: NodeFileSource[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-rows-"));
  filePath = path.join(dir, "all-dtypes.safetensors");
  bytes = writeSafetensors(DTYPES.map((dtype) => ({ name: dtype, dtype, shape: [ROWS, COLS], data: encodeFromF32(dtype, valuesFor(dtype)) })));
  await writeFile(filePath, bytes);
});

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function nodeModel(): Promise<OpenedModel> {
  const source = await NodeFileSource.open(filePath);
  opened.push(source);
  return openModel([source]);
}

describe("readTensorRows buffer modes", () => {
  it("flat: streams a 1-D tensor larger than chunkBytes in chunks no larger than chunkBytes", async () => {
    const values = Float32Array.from({ length: 10_000 }, (_, i) => i - 5000.5);
    const file = writeSafetensors([{ name: "long", dtype: "F32", shape: [10_000], data: new Uint8Array(values.buffer) }]);
    const model = await openModel([new BlobSource(new Blob([file]), "long.safetensors")]);
    const t = model.tensors[0]!;
    const rowwise = [];
    for await (const chunk of readTensorRows(t, { chunkBytes: 4096 })) rowwise.push(chunk.values.length);
    expect(rowwise).toEqual([10_000]); // one row: row mode cannot split it
    const seen: number[] = [];
    let chunks = 0;
    for await (const chunk of readTensorRows(t, { chunkBytes: 4096, flat: true })) {
      expect(chunk.values.byteLength).toBeLessThanOrEqual(4096);
      expect(chunk.firstRow).toBe(seen.length);
      seen.push(...chunk.values);
      chunks++;
    }
    expect(chunks).toBe(Math.ceil(10_000 / 1024));
    expect(seen).toEqual(Array.from(values));
  });

  it("gives the same values in both modes, from a Node file and from a Blob, for every dtype", async () => {
    const models = [await nodeModel(), await openModel([new BlobSource(new Blob([bytes]), "all-dtypes.safetensors")])];
    for (const model of models) {
      for (const t of model.tensors) {
        const whole = await readTensorValues(t);
        for (const reuseBuffers of [false, true]) {
          const seen = new Float32Array(t.params);
          let next = 0;
          for await (const chunk of readTensorRows(t, { chunkBytes: 5 * COLS * 8, reuseBuffers })) {
            expect(chunk.firstRow * COLS).toBe(next);
            seen.set(chunk.values, next); // copied at once, as reuseBuffers requires
            next += chunk.values.length;
          }
          expect(next).toBe(t.params);
          expect(seen, `${t.name} reuseBuffers=${reuseBuffers}`).toEqual(whole);
          expect(Array.from(seen)).toEqual(valuesFor(t.dtype));
        }
      }
    }
  });

  it("reads only a band of rows, numbered as in the tensor, and rejects a band outside it", async () => {
    const models = [await nodeModel(), await openModel([new BlobSource(new Blob([bytes]), "all-dtypes.safetensors")])];
    for (const model of models) {
      const t = model.tensors.find((x) => x.dtype === "BF16")!;
      const whole = await readTensorValues(t);
      for (const reuseBuffers of [false, true]) {
        const firstRows: number[] = [];
        const seen: number[] = [];
        for await (const chunk of readTensorRows(t, { chunkBytes: 4 * COLS * 2, reuseBuffers, firstRow: 9, rowCount: 11 })) {
          firstRows.push(chunk.firstRow);
          seen.push(...chunk.values);
        }
        expect(firstRows).toEqual([9, 13, 17]);
        expect(seen).toEqual(Array.from(whole.subarray(9 * COLS, 20 * COLS)));
      }
      await expect(readTensorRows(t, { firstRow: 30, rowCount: 8 }).next()).rejects.toThrow(/rows 30\.\.38 are not inside tensor "BF16" \(37 rows\)/);
    }
  });

  it("hands out chunks the caller may keep unless reuseBuffers is set", async () => {
    const model = await nodeModel();
    for (const t of model.tensors.filter((x) => x.dtype === "F32" || x.dtype === "BF16")) {
      const kept = [];
      for await (const chunk of readTensorRows(t, { chunkBytes: 4 * COLS * 4 })) kept.push(chunk.values);
      expect(new Set(kept.map((v) => v.buffer)).size).toBe(kept.length);
      expect(kept.flatMap((v) => Array.from(v))).toEqual(valuesFor(t.dtype));
      if (t.dtype === "F32") expect(kept.every((v) => v.byteOffset === 0 && v.buffer.byteLength === v.byteLength)).toBe(true);

      const buffers = new Set<ArrayBufferLike>();
      for await (const chunk of readTensorRows(t, { chunkBytes: 4 * COLS * 4, reuseBuffers: true })) buffers.add(chunk.values.buffer);
      // F32 chunks are views of the one read buffer; other dtypes decode into one reused array.
      expect(buffers.size).toBe(1);
    }
  });

  it("reports a file that shrank with the same FormatError from readInto as from read", async () => {
    const shrinking = path.join(dir, "shrinks.safetensors");
    await writeFile(shrinking, bytes);
    const source = await NodeFileSource.open(shrinking);
    opened.push(source);
    const model = await openModel([source]);
    await writeFile(shrinking, bytes.subarray(0, bytes.length - 100));
    const last = model.tensors.at(-1)!;
    const drain = async (reuseBuffers: boolean) => {
      for await (const _ of readTensorRows(last, { reuseBuffers })) void _;
    };
    for (const reuseBuffers of [false, true]) {
      const error = await drain(reuseBuffers).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(FormatError);
      expect((error as FormatError).code).toBe("truncated");
    }
  });
});
