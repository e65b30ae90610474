import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeFileSource, closeSources, openPath } from "../node/file-source.ts";
import {
  CountingSource,
  INDEX,
  SHARD_1,
  SHARD_2,
  bitsOf,
  f32At,
  memorySource,
  rawSafetensors,
  sameBytes,
  shardedDir,
  storiesFile,
  storiesTensorShapes,
} from "../../test/formats-fixtures.ts";
import { encodeFromF32 } from "./dtypes.ts";
import { isFormatError, type FormatError } from "./errors.ts";
import { baseName, type OpenedModel, openModel, readTensorRows, readTensorValues, tensorRowLayout } from "./model.ts";
import { writeSafetensors, type TensorInfo } from "./safetensors.ts";
import type { ByteSource } from "./source.ts";

/** The README's cast rule, on float32 bits: round to nearest even into the top 16 bits. */
const bf16Rule = (u: number) => (((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16) >>> 0;

const fileBytes = (name: string) => readFileSync(path.join(shardedDir, name));
const shardedSources = (names: string[]) => names.map((n) => memorySource(fileBytes(n), n));

async function openFailure(sources: ByteSource[]): Promise<FormatError> {
  try {
    await openModel(sources);
  } catch (e) {
    if (isFormatError(e)) return e;
    throw e;
  }
  throw new Error("opened");
}

async function allValues(t: TensorInfo): Promise<Float32Array> {
  return await readTensorValues(t);
}

describe("the BF16 sharded copy through its index", () => {
  let sources: ByteSource[];
  let model: OpenedModel;
  const f32 = rawSafetensors(storiesFile);

  beforeAll(async () => {
    sources = await openPath(path.join(shardedDir, INDEX));
    model = await openModel(sources);
  });
  afterAll(() => closeSources(sources));

  it("has the 47 tensors, shapes and BF16 dtype of the README, split across the two shards", () => {
    expect(model.name).toBe(INDEX);
    expect(model.index).toBe(path.join(shardedDir, INDEX));
    expect(model.files.map(baseName)).toEqual([SHARD_1, SHARD_2]);
    expect(new Map(model.tensors.map((t) => [t.name, t.shape]))).toEqual(storiesTensorShapes());
    expect(model.tensors.every((t) => t.dtype === "BF16")).toBe(true);
    expect(model.tensors.filter((t) => baseName(t.file) === SHARD_1)).toHaveLength(24);
    expect(model.tensors.filter((t) => baseName(t.file) === SHARD_2)).toHaveLength(23);
    const inShard = (name: string) => baseName(model.tensors.find((t) => t.name === name)!.file);
    expect(inShard("model.layers.2.self_attn.o_proj.weight")).toBe(SHARD_1);
    expect(inShard("model.layers.2.post_attention_layernorm.weight")).toBe(SHARD_2);
    expect(model.totalParams).toBe(260_032);
    expect(model.totalBytes).toBe(520_064);
    expect(model.metadata).toEqual({ format: "pt", total_size: "520064" });
  });

  it("every value equals the F32 model's value rounded to BF16 by the README's rule, bit for bit", async () => {
    let checked = 0;
    for (const t of model.tensors) {
      const r = f32.tensors.get(t.name)!;
      const expected = bitsOf(f32At(f32.bytes, r.start, r.end)).map(bf16Rule);
      expect(sameBytes(bitsOf(await allValues(t)), expected), t.name).toBe(true);
      checked += t.params;
    }
    expect(checked).toBe(260_032);
  });

  it("matches the README's worked examples", async () => {
    const value = async (name: string, index: number) => (await allValues(model.tensors.find((t) => t.name === name)!))[index];
    const bf16Bits = async (name: string, index: number) => bitsOf(new Float32Array([(await value(name, index))!]))[0]! >>> 16;
    expect(await value("model.embed_tokens.weight", 0)).toBe(-0.294921875);
    expect(await value("model.norm.weight", 0)).toBe(2.453125);
    expect(await bf16Bits("model.embed_tokens.weight", 0)).toBe(0xbe97);
    expect(await bf16Bits("model.norm.weight", 0)).toBe(0x401d);
    expect(await bf16Bits("model.layers.0.self_attn.q_proj.weight", 0)).toBe(0x3d36);
    expect(await bf16Bits("model.layers.4.mlp.down_proj.weight", 63 * 172 + 171)).toBe(0xbb66);
    // the ties: 0x3EAE8000 stays 0x3EAE, 0xBCB18000 goes to 0xBCB2
    expect(await bf16Bits("model.embed_tokens.weight", 22101)).toBe(0x3eae);
    expect(await bf16Bits("model.layers.2.mlp.gate_proj.weight", 3913)).toBe(0xbcb2);
  });
});

describe("what openModel accepts", () => {
  it("the shards without their index: merged, natural file order, no index", async () => {
    const model = await openModel(shardedSources([SHARD_2, SHARD_1]));
    expect(model.index).toBeUndefined();
    expect(model.files).toEqual([SHARD_1, SHARD_2]);
    expect(model.name).toBe(`${SHARD_1} + 1 more`);
    expect(model.tensors).toHaveLength(47);
    expect(model.metadata).toEqual({ format: "pt" });
  });

  it("the index and shards in any order, with other files of the folder ignored", async () => {
    const extras = ["config.json", "tokenizer.json"].map((n) => memorySource(fileBytes(n), n));
    const a = await openModel([...extras, ...shardedSources([SHARD_2, INDEX, SHARD_1])]);
    const b = await openModel(shardedSources([INDEX, SHARD_1, SHARD_2]));
    expect(a.tensors.map((t) => [t.name, t.file, t.offset])).toEqual(b.tensors.map((t) => [t.name, t.file, t.offset]));
  });

  it("an index without one of its shards names the missing file and says to pick them together", async () => {
    const e = await openFailure(shardedSources([INDEX, SHARD_1]));
    expect(e.code).toBe("bad-index");
    expect(e.file).toBe(INDEX);
    expect(e.detail).toBe(`the index lists a shard that was not opened: ${SHARD_2}; pick (or drop) the index and all its shards together`);
    const none = await openFailure(shardedSources([INDEX]));
    expect(none.detail).toContain(`${SHARD_1}, ${SHARD_2}`);
  });

  it("an index that maps a tensor to a shard that lacks it", async () => {
    const index = JSON.parse(fileBytes(INDEX).toString()) as { weight_map: Record<string, string> };
    index.weight_map["model.norm.weight"] = SHARD_1;
    const e = await openFailure([memorySource(new TextEncoder().encode(JSON.stringify(index)), INDEX), ...shardedSources([SHARD_1, SHARD_2])]);
    expect(e.code).toBe("bad-index");
    expect(e.detail).toBe(`weight_map puts "model.norm.weight" in ${SHARD_1}, but that file has no such tensor`);
  });

  it("an index that is not JSON, or has no weight_map", async () => {
    for (const [text, detail] of [
      ["{nope", "the index is not valid JSON"],
      ['{"metadata":{}}', 'the index has no "weight_map" object'],
      ['{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}', '"weight_map" has the key "a" twice'],
    ] as const) {
      const e = await openFailure([memorySource(new TextEncoder().encode(text), INDEX), ...shardedSources([SHARD_1])]);
      expect([e.code, e.detail]).toEqual(["bad-index", detail]);
    }
  });

  it("the same tensor name in two files without an index", async () => {
    const e = await openFailure([memorySource(fileBytes(SHARD_1), "a.safetensors"), memorySource(fileBytes(SHARD_1), "b.safetensors")]);
    expect(e.code).toBe("duplicate-name");
    expect(e.file).toBe("b.safetensors");
    expect(e.detail).toBe('tensor "model.embed_tokens.weight" is also in a.safetensors');
  });

  it("two index files", async () => {
    const idx = fileBytes(INDEX);
    const e = await openFailure([memorySource(idx, "a.safetensors.index.json"), memorySource(idx, "b.safetensors.index.json"), ...shardedSources([SHARD_1, SHARD_2])]);
    expect(e.code).toBe("bad-index");
    expect(e.detail).toContain("2 index files were given");
  });

  it("a bad shard's error names that shard", async () => {
    const e = await openFailure([memorySource(fileBytes(SHARD_1), SHARD_1), memorySource(fileBytes(SHARD_2).subarray(0, 200_000), SHARD_2)]);
    expect(e.file).toBe(SHARD_2);
    expect(e.code).toBe("truncated");
  });

  it("a file without the .safetensors extension, when nothing else is recognizable", async () => {
    const model = await openModel([memorySource(fileBytes(SHARD_1), "https://example.org/download?id=7")]);
    expect(model.tensors).toHaveLength(24);
  });

  it("baseName strips folders and URL queries", () => {
    expect(baseName("/a/b/model.safetensors")).toBe("model.safetensors");
    expect(baseName("C:\\m\\x.safetensors")).toBe("x.safetensors");
    expect(baseName("https://huggingface.co/o/r/resolve/main/model-00001-of-00002.safetensors?download=true")).toBe("model-00001-of-00002.safetensors");
    expect(baseName("https://h/x/my%20model.safetensors#frag")).toBe("my model.safetensors");
  });
});

describe("readTensorRows", () => {
  /** A model of one file whose reads are recorded. */
  async function counted(bytes: Uint8Array): Promise<{ model: OpenedModel; source: CountingSource }> {
    const source = new CountingSource(memorySource(bytes));
    return { model: await openModel([source]), source };
  }

  const values = Float32Array.from({ length: 7 * 5 }, (_, i) => i * 0.5 - 3);
  const file = writeSafetensors([
    { name: "m", dtype: "F32", shape: [7, 5], data: encodeFromF32("F32", values) },
    { name: "v", dtype: "F16", shape: [6], data: encodeFromF32("F16", [1, 2, 3, 4, 5, 6]) },
    { name: "s", dtype: "I8", shape: [], data: encodeFromF32("I8", [-4]) },
    { name: "e", dtype: "F32", shape: [3, 0], data: new Uint8Array(0) },
    { name: "c", dtype: "BF16", shape: [2, 3, 4], data: encodeFromF32("BF16", Array.from({ length: 24 }, (_, i) => i)) },
  ]);

  it("streams whole rows, each chunk one read of at most chunkBytes", async () => {
    const { model, source } = await counted(file);
    const m = model.tensors.find((t) => t.name === "m")!;
    source.reads.length = 0;
    const chunks = [];
    for await (const c of readTensorRows(m, { chunkBytes: 64 })) chunks.push(c);
    // rows of 5 float32 = 20 bytes: 3 rows per 64-byte chunk
    expect(chunks.map((c) => [c.firstRow, c.rows, c.values.length])).toEqual([
      [0, 3, 15],
      [3, 3, 15],
      [6, 1, 5],
    ]);
    expect(source.reads).toEqual([
      { offset: m.offset, length: 60 },
      { offset: m.offset + 60, length: 60 },
      { offset: m.offset + 120, length: 20 },
    ]);
    const joined = new Float32Array(chunks.flatMap((c) => [...c.values]));
    expect(joined).toEqual(values);
  });

  it("reads one row at a time when a row is larger than chunkBytes, and the whole tensor by default", async () => {
    const { model, source } = await counted(file);
    const m = model.tensors.find((t) => t.name === "m")!;
    source.reads.length = 0;
    let n = 0;
    for await (const c of readTensorRows(m, { chunkBytes: 1 })) {
      expect(c.rows).toBe(1);
      n++;
    }
    expect(n).toBe(7);
    expect(source.largestRead).toBe(20);
    source.reads.length = 0;
    for await (const c of readTensorRows(m)) expect(c.values).toEqual(values);
    expect(source.reads).toEqual([{ offset: m.offset, length: 140 }]);
  });

  it("treats a 1-D tensor as one row, a scalar as a row of one, an empty tensor as no rows, >2-D by its last dim", async () => {
    const { model } = await counted(file);
    const rows = async (name: string) => {
      const out = [];
      for await (const c of readTensorRows(model.tensors.find((t) => t.name === name)!, { chunkBytes: 16 })) out.push([c.firstRow, c.rows, [...c.values]]);
      return out;
    };
    expect(await rows("v")).toEqual([[0, 1, [1, 2, 3, 4, 5, 6]]]);
    expect(await rows("s")).toEqual([[0, 1, [-4]]]);
    expect(await rows("e")).toEqual([]);
    expect((await rows("c")).map((r) => [r[0], r[1]])).toEqual([
      [0, 2],
      [2, 2],
      [4, 2],
    ]);
    expect(tensorRowLayout({ shape: [2, 3, 4], params: 24 })).toEqual({ rows: 6, rowLength: 4 });
  });

  it("stops reading when the consumer stops", async () => {
    const { model, source } = await counted(file);
    const m = model.tensors.find((t) => t.name === "m")!;
    source.reads.length = 0;
    for await (const c of readTensorRows(m, { chunkBytes: 20 })) {
      expect(c.firstRow).toBe(0);
      break;
    }
    // the first chunk, and at most the one read ahead
    expect(source.reads.length).toBeLessThanOrEqual(2);
  });

  it("honours an abort signal", async () => {
    const { model } = await counted(file);
    const controller = new AbortController();
    controller.abort();
    const iterate = async () => {
      for await (const _ of readTensorRows(model.tensors[0]!, { signal: controller.signal })) void _;
    };
    await expect(iterate()).rejects.toMatchObject({ name: "AbortError" });
  });

  it("reads stories260K's F32 file chunk by chunk to the same values", async () => {
    const source = await NodeFileSource.open(storiesFile);
    try {
      const model = await openModel([source]);
      const raw = rawSafetensors(storiesFile);
      for (const t of model.tensors) {
        const parts: number[] = [];
        for await (const c of readTensorRows(t, { chunkBytes: 4096 })) {
          expect(c.values.length * 4).toBeLessThanOrEqual(Math.max(4096, t.shape[t.shape.length - 1]! * 4));
          parts.push(...c.values);
        }
        const r = raw.tensors.get(t.name)!;
        expect(sameBytes(new Float32Array(parts), f32At(raw.bytes, r.start, r.end)), t.name).toBe(true);
      }
    } finally {
      await source.close();
    }
  });
});
