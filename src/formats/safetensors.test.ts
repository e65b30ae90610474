import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeFileSource } from "../node/file-source.ts";
import {
  CountingSource,
  f32At,
  memorySource,
  rawSafetensors,
  sameBytes,
  storiesFile,
  storiesTensorShapes,
} from "../../test/formats-fixtures.ts";
import { DTYPE_BYTES, DTYPES, decodeToF32, encodeFromF32, type DType } from "./dtypes.ts";
import { FormatError, isFormatError, type FormatErrorCode } from "./errors.ts";
import { readTensorBytes, readTensorValues } from "./model.ts";
import { MAX_HEADER_BYTES, readSafetensors, safetensorsHeader, writeSafetensors, type SafetensorsFile, type TensorToWrite } from "./safetensors.ts";

/** A file from header text and data, with the true header length unless another is claimed. */
function fileOf(header: string, data: Uint8Array | number = 0, claimedLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, claimedLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

async function failure(bytes: Uint8Array, name = "bad.safetensors"): Promise<FormatError> {
  try {
    await readSafetensors(memorySource(bytes, name));
  } catch (e) {
    if (isFormatError(e)) return e;
    throw e;
  }
  throw new Error("the file was accepted");
}

async function expectFailure(bytes: Uint8Array, code: FormatErrorCode, detail: string | RegExp): Promise<FormatError> {
  const e = await failure(bytes);
  expect(e.code).toBe(code);
  expect(e.file).toBe("bad.safetensors");
  expect(e.message.startsWith("bad.safetensors: ")).toBe(true);
  if (typeof detail === "string") expect(e.detail).toBe(detail);
  else expect(e.detail).toMatch(detail);
  return e;
}

describe("reading stories260K/model.safetensors", () => {
  let source: NodeFileSource;
  let file: SafetensorsFile;
  const raw = rawSafetensors(storiesFile);

  beforeAll(async () => {
    source = await NodeFileSource.open(storiesFile);
    file = await readSafetensors(source);
  });
  afterAll(() => source.close());

  it("has the README's header, metadata and 47 tensors with their shapes, all F32", () => {
    expect(file.size).toBe(1_044_992);
    expect(file.headerLength).toBe(4856);
    expect(file.dataStart).toBe(4864);
    expect(file.metadata).toEqual({ format: "pt" });
    const expected = storiesTensorShapes();
    expect(file.tensors).toHaveLength(47);
    expect(new Map(file.tensors.map((t) => [t.name, t.shape]))).toEqual(expected);
    for (const t of file.tensors) {
      expect(t.dtype).toBe("F32");
      expect(t.params).toBe(t.shape.reduce((a, b) => a * b, 1));
      expect(t.bytes).toBe(4 * t.params);
      expect(t.file).toBe(storiesFile);
      expect(t.source).toBe(source);
    }
    expect(file.tensors.reduce((s, t) => s + t.params, 0)).toBe(260_032);
  });

  it("lists tensors in file order: sorted by name, contiguous from the data start", () => {
    const names = file.tensors.map((t) => t.name);
    expect(names).toEqual([...names].sort());
    let pos = file.dataStart;
    for (const t of file.tensors) {
      expect(t.offset).toBe(pos);
      expect(t.offset).toBe(raw.tensors.get(t.name)!.start);
      pos += t.bytes;
    }
    expect(pos).toBe(file.size);
  });

  it("reads every tensor's values equal to its bytes as float32", async () => {
    for (const t of file.tensors) {
      const values = await readTensorValues(t);
      const r = raw.tensors.get(t.name)!;
      expect(sameBytes(values, f32At(raw.bytes, r.start, r.end)), t.name).toBe(true);
    }
  });

  it("reads only the header to open the file", () => {
    return (async () => {
      const counting = new CountingSource(source);
      await readSafetensors(counting);
      expect(counting.reads).toEqual([
        { offset: 0, length: 8 },
        { offset: 8, length: 4856 },
      ]);
    })();
  });

  it("the writer reproduces the official serializer's file byte for byte", async () => {
    const tensors: TensorToWrite[] = [];
    for (const t of file.tensors) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await readTensorBytes(t) });
    const written = writeSafetensors(tensors, { format: "pt" });
    expect(written.length).toBe(raw.bytes.length);
    expect(Buffer.from(written).equals(raw.bytes)).toBe(true);
  });
});

/** Values worth round-tripping in each dtype: specials, subnormals, extremes. */
function interestingValues(dtype: DType): number[] {
  switch (dtype) {
    case "F64":
    case "F32":
      return [0, -0, 1, -1.5, Infinity, -Infinity, NaN, 2 ** -149, -(2 ** -126), 3.4028234663852886e38, 0.1];
    case "F16":
      return [0, -0, 1, -2.5, Infinity, -Infinity, NaN, 2 ** -24, -(2 ** -14), 65504, 0.333251953125];
    case "BF16":
      return [0, -0, 1, -2.5, Infinity, -Infinity, NaN, 2 ** -133, -(2 ** -126), 3.3895313892515355e38, 0.333984375];
    case "F8_E4M3":
      return [0, -0, 1, -2.5, NaN, 2 ** -9, -(2 ** -6), 448, -448, 0.3125];
    case "F8_E5M2":
      return [0, -0, 1, -2.5, Infinity, -Infinity, NaN, 2 ** -16, -(2 ** -14), 57344, 0.3125];
    case "I64":
    case "I32":
      return [0, -1, 1, 2 ** 24, -(2 ** 24), 123456, -7];
    case "I16":
      return [0, -1, 32767, -32768, 12345];
    case "I8":
      return [0, -1, 127, -128, 5];
    case "U8":
      return [0, 1, 255, 128];
    case "BOOL":
      return [0, 1, 1, 0];
  }
}

describe("writing files in every dtype", () => {
  it("round-trips names, shapes, metadata and exact values for all twelve dtypes", async () => {
    const tensors: TensorToWrite[] = DTYPES.map((dtype) => {
      const values = interestingValues(dtype);
      return { name: `t.${dtype}`, dtype, shape: [1, values.length], data: encodeFromF32(dtype, values) };
    });
    tensors.push({ name: "scalar", dtype: "F32", shape: [], data: encodeFromF32("F32", [7]) });
    tensors.push({ name: "empty", dtype: "F16", shape: [3, 0], data: new Uint8Array(0) });
    const metadata = { format: "pt", note: 'quotes " and \\ and ünïcode' };
    const bytes = writeSafetensors(tensors, metadata);
    const file = await readSafetensors(memorySource(bytes));
    expect(file.metadata).toEqual(metadata);
    expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(tensors.map((t) => [t.name, t.dtype, t.shape]));
    for (const [i, t] of file.tensors.entries()) {
      const data = await readTensorBytes(t);
      expect([...data]).toEqual([...tensors[i]!.data]);
      if (t.params === 0) continue;
      const decoded = [...decodeToF32(t.dtype, data)];
      const expected = t.name === "scalar" ? [7] : interestingValues(t.dtype);
      decoded.forEach((v, j) => {
        // every value is exact in its dtype; Object.is: -0 stays -0, NaN equals NaN whatever its payload
        if (!Object.is(v, Math.fround(expected[j]!))) throw new Error(`${t.name}[${j}]: ${v} != ${expected[j]}`);
      });
    }
  });

  it("pads the JSON with spaces to a multiple of 8 and refuses inconsistent input", () => {
    const header = safetensorsHeader([{ name: "a", dtype: "F32", shape: [2], byteLength: 8 }]);
    const n = Number(new DataView(header.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    expect(header.length).toBe(8 + n);
    const text = new TextDecoder().decode(header.subarray(8));
    expect(text).toBe('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'.padEnd(n, " "));
    expect(() => safetensorsHeader([{ name: "a", dtype: "F32", shape: [2], byteLength: 7 }])).toThrow(/needs 8/);
    expect(() =>
      safetensorsHeader([
        { name: "a", dtype: "U8", shape: [1], byteLength: 1 },
        { name: "a", dtype: "U8", shape: [1], byteLength: 1 },
      ]),
    ).toThrow(/twice/);
    expect(() => safetensorsHeader([{ name: "__metadata__", dtype: "U8", shape: [1], byteLength: 1 }])).toThrow();
  });

  it("keeps integer-like tensor names in the order given (no JSON object key reordering)", async () => {
    const tensors: TensorToWrite[] = ["b", "10", "2", "a"].map((name) => ({ name, dtype: "U8", shape: [1], data: new Uint8Array([name.length]) }));
    const file = await readSafetensors(memorySource(writeSafetensors(tensors)));
    expect(file.tensors.map((t) => t.name)).toEqual(["b", "10", "2", "a"]);
  });
});

describe("bad files give a FormatError that names the file and the problem", () => {
  const f32x6 = '{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}';

  it("accepts the well-formed reference case", async () => {
    const file = await readSafetensors(memorySource(fileOf(f32x6, 24)));
    expect(file.tensors.map((t) => [t.name, t.offset, t.bytes])).toEqual([["x", 8 + f32x6.length, 24]]);
  });

  it("a file shorter than the 8-byte length", async () => {
    await expectFailure(new Uint8Array(5), "truncated", /5 bytes long/);
  });

  it("a header length above 100 MB, even a huge one, is refused after reading 8 bytes", async () => {
    for (const claimed of [2n ** 60n, 2n ** 64n - 1n, BigInt(MAX_HEADER_BYTES + 1)]) {
      const bytes = fileOf(f32x6, 24, claimed);
      const counting = new CountingSource(memorySource(bytes, "bad.safetensors"));
      const e = await readSafetensors(counting).catch((x: unknown) => x);
      expect(isFormatError(e) && e.code).toBe("header-too-large");
      expect((e as FormatError).detail).toContain(`says ${claimed} bytes, above the 100000000-byte limit`);
      expect(counting.reads).toEqual([{ offset: 0, length: 8 }]);
    }
  });

  it("a header length past the end of the file", async () => {
    const bytes = fileOf(f32x6, 0, 1000n);
    const counting = new CountingSource(memorySource(bytes, "bad.safetensors"));
    await expect(readSafetensors(counting)).rejects.toMatchObject({
      code: "header-too-large",
      detail: `the header length field says 1000 bytes but only ${f32x6.length} bytes follow it (the file is truncated or not safetensors)`,
    });
    expect(counting.largestRead).toBe(8);
  });

  it("a header that is not JSON, not UTF-8, empty, or not an object", async () => {
    await expectFailure(fileOf('{"x": nope}'), "bad-json", /^the header is not valid JSON \(/);
    const notUtf8 = fileOf('{"a":"zz"}');
    notUtf8[8 + 6] = 0xff; // a lone continuation byte inside the string
    await expectFailure(notUtf8, "bad-json", "the header is not valid UTF-8 text");
    await expectFailure(fileOf(""), "bad-json", "the header is empty");
    await expectFailure(fileOf("        "), "bad-json", "the header is empty");
    await expectFailure(fileOf("[1,2]"), "bad-json", "the header is JSON but not an object (it is an array)");
    await expectFailure(fileOf("null"), "bad-json", "the header is JSON but not an object (it is null)");
  });

  it("a size that does not match the shape", async () => {
    await expectFailure(
      fileOf('{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}}', 12),
      "size-mismatch",
      'tensor "x": data_offsets [0, 12] hold 12 bytes but shape [2,3] of F32 needs 24',
    );
  });

  it("an unknown dtype", async () => {
    await expectFailure(fileOf('{"x":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}', 2), "unknown-dtype", 'tensor "x": unknown dtype "Q4_K"');
  });

  it("overlapping offsets", async () => {
    const h = '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}';
    await expectFailure(fileOf(h, 12), "bad-offsets", 'tensor "a" (data_offsets [0, 8]) and tensor "b" (data_offsets [4, 12]) overlap');
  });

  it("offsets out of the data section", async () => {
    const h = '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[100,104]}}';
    await expectFailure(fileOf(h, 8), "bad-offsets", 'tensor "b" (data_offsets [100, 104]) lies outside the data section, which holds 8 bytes');
  });

  it("a gap between tensors, and bytes after the last one (the official reader's MetadataIncompleteBuffer)", async () => {
    const gap = '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}';
    await expectFailure(fileOf(gap, 10), "bad-offsets", 'bytes 4..6 of the data section belong to no tensor (between tensor "a" (data_offsets [0, 4]) and tensor "b" (data_offsets [6, 10]))');
    await expectFailure(fileOf(f32x6, 30), "bad-offsets", "the last 6 bytes of the data section belong to no tensor (tensors end at 24, the data section holds 30)");
  });

  it("a truncated data section", async () => {
    await expectFailure(fileOf(f32x6, 20), "truncated", 'tensor "x" (data_offsets [0, 24]) ends past the data section, which holds 20 bytes: the file is truncated (or its offsets are out of range)');
  });

  it("reversed or malformed data_offsets", async () => {
    await expectFailure(fileOf('{"x":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}', 4), "bad-offsets", 'tensor "x": data_offsets [4, 0] end before they begin');
    for (const offsets of ["[0]", "[0,1,2]", "[-1,0]", "[0.5,1]", '["0","1"]', "null", "[0,1e300]"]) {
      await expectFailure(fileOf(`{"x":{"dtype":"U8","shape":[1],"data_offsets":${offsets}}}`, 1), "bad-offsets", /^tensor "x": data_offsets must be two non-negative integers/);
    }
  });

  it("duplicate tensor names, however they are spelled", async () => {
    const t = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
    await expectFailure(fileOf(`{"x":${t},"x":${t}}`, 1), "duplicate-name", 'the tensor name "x" appears twice in the header');
    await expectFailure(fileOf(`{"x":${t},"\\u0078":${t}}`, 1), "duplicate-name", 'the tensor name "x" appears twice in the header');
    await expectFailure(fileOf(`{"x":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}}`, 1), "bad-header", 'tensor "x" has the key "dtype" twice');
    await expectFailure(fileOf(`{"__metadata__":{"a":"1","a":"2"}}`), "bad-header", '__metadata__ has the key "a" twice');
  });

  it("__metadata__ that is not a map of strings", async () => {
    await expectFailure(fileOf('{"__metadata__":{"n":1}}'), "bad-header", '__metadata__ must map strings to strings, but "n" is 1');
    await expectFailure(fileOf('{"__metadata__":["a"]}'), "bad-header", '__metadata__ must be an object of strings, not ["a"]');
    await expectFailure(fileOf('{"__metadata__":null}'), "bad-header", "__metadata__ must be an object of strings, not null");
  });

  it("bad shapes and entries", async () => {
    await expectFailure(fileOf('{"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'), "bad-header", 'tensor "x": shape must be a list of non-negative integers, got [-1]');
    await expectFailure(fileOf('{"x":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}}'), "bad-header", /shape must be a list/);
    await expectFailure(fileOf('{"x":{"dtype":"U8","shape":"2","data_offsets":[0,0]}}'), "bad-header", /shape must be a list/);
    await expectFailure(
      fileOf('{"x":{"dtype":"U8","shape":[1073741824,1073741824,1073741824],"data_offsets":[0,0]}}'),
      "bad-header",
      'tensor "x": shape [1073741824,1073741824,1073741824] has more than 2^53 elements',
    );
    await expectFailure(fileOf('{"x":[1,2]}'), "bad-header", 'tensor "x": expected an object with dtype, shape and data_offsets, got [1,2]');
    await expectFailure(fileOf('{"x":{"shape":[1],"data_offsets":[0,1]}}', 1), "bad-header", 'tensor "x": dtype is missing');
  });

  it("accepts zero-size tensors, scalars, no tensors, and names like __proto__", async () => {
    const h =
      '{"__metadata__":{"__proto__":"p"},"__proto__":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"I8","shape":[0],"data_offsets":[8,8]}}';
    const file = await readSafetensors(memorySource(fileOf(h, 8)));
    expect(file.tensors.map((t) => [t.name, t.params, t.bytes])).toEqual([
      ["__proto__", 0, 0],
      ["s", 1, 8],
      ["e", 0, 0],
    ]);
    expect(Object.keys(file.metadata)).toEqual(["__proto__"]);
    expect(file.metadata["__proto__"]).toBe("p");
    expect((await readSafetensors(memorySource(fileOf("{}")))).tensors).toEqual([]);
  });

  it("orders tensors by offset, whatever the header order", async () => {
    const h = '{"late":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"early":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
    const file = await readSafetensors(memorySource(fileOf(h, 4)));
    expect(file.tensors.map((t) => [t.name, t.offset - file.dataStart])).toEqual([
      ["early", 0],
      ["late", 2],
    ]);
  });
});

// ---------------------------------------------------------------- property tests

const nameArb = fc.string({ unit: "binary", maxLength: 10 }).filter((s) => s !== "__metadata__");
const tensorSpecArb = fc.record({
  name: nameArb,
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
});
const validFileArb = fc
  .record({
    specs: fc.uniqueArray(tensorSpecArb, { selector: (t) => t.name, maxLength: 6 }),
    metadata: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 12 }), { maxKeys: 3 }), { nil: undefined }),
  })
  .chain(({ specs, metadata }) =>
    fc
      .tuple(...specs.map((s) => fc.uint8Array({ minLength: s.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[s.dtype], maxLength: s.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[s.dtype] })))
      .map((datas) => ({ tensors: specs.map((s, i): TensorToWrite => ({ ...s, data: datas[i]! })), metadata })),
  );

/** Checks a successfully parsed file against the rules; throws when anything is inconsistent. */
async function expectConsistent(file: SafetensorsFile): Promise<void> {
  let pos = file.dataStart;
  const names = new Set<string>();
  expect(file.dataStart).toBe(8 + file.headerLength);
  for (const t of file.tensors) {
    expect(names.has(t.name)).toBe(false);
    names.add(t.name);
    expect(t.params).toBe(t.shape.reduce((a, b) => a * b, 1));
    expect(t.bytes).toBe(t.params * DTYPE_BYTES[t.dtype]);
    expect(t.offset).toBe(pos);
    pos += t.bytes;
    expect((await readTensorBytes(t)).length).toBe(t.bytes);
  }
  expect(pos).toBe(file.size);
  for (const v of Object.values(file.metadata)) expect(typeof v).toBe("string");
}

type Mutation =
  | { kind: "flip"; at: number[]; xor: number }
  | { kind: "truncate"; keep: number }
  | { kind: "length"; value: bigint }
  | { kind: "json"; edit: "overlap" | "out-of-range" | "size" | "duplicate" | "metadata" | "dtype" | "any"; pick: number; value: unknown };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant("length" as const), value: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 400n })) }),
  fc.record({
    kind: fc.constant("json" as const),
    edit: fc.constantFrom("overlap", "out-of-range", "size", "duplicate", "metadata", "dtype", "any"),
    pick: fc.nat(),
    value: fc.jsonValue({ maxDepth: 2 }),
  }),
);

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const n = Number(view.getBigUint64(0, true));
  switch (m.kind) {
    case "flip":
      for (const at of m.at) out[at % out.length] = out[at % out.length]! ^ m.xor;
      return out;
    case "truncate":
      return out.subarray(0, m.keep % out.length);
    case "length":
      view.setBigUint64(0, m.value, true);
      return out;
    case "json": {
      const header = JSON.parse(new TextDecoder().decode(out.subarray(8, 8 + n))) as Record<string, Record<string, unknown>>;
      const data = out.subarray(8 + n);
      const names = Object.keys(header).filter((k) => k !== "__metadata__");
      const name = names[m.pick % Math.max(1, names.length)];
      const entry = name === undefined ? undefined : header[name];
      let text: string | undefined;
      if (entry) {
        const [b, e] = entry["data_offsets"] as [number, number];
        if (m.edit === "overlap") entry["data_offsets"] = [Math.max(0, b - 1), Math.max(0, e - 1)];
        if (m.edit === "out-of-range") entry["data_offsets"] = [b + data.length + 1, e + data.length + 1];
        if (m.edit === "size") entry["shape"] = [...(entry["shape"] as number[]), 2];
        if (m.edit === "dtype") entry["dtype"] = "F4";
        if (m.edit === "any") entry[["dtype", "shape", "data_offsets"][m.pick % 3]!] = m.value;
        if (m.edit === "duplicate") {
          const json = JSON.stringify(header);
          text = `${json.slice(0, -1)}${json.length > 2 ? "," : ""}${JSON.stringify(name)}:${JSON.stringify(entry)}}`;
        }
      }
      if (m.edit === "metadata") header["__metadata__"] = m.value as Record<string, unknown>;
      return fileOf(text ?? JSON.stringify(header), data);
    }
  }
}

describe("property tests", () => {
  it("random valid files round-trip through the writer and the reader", async () => {
    await fc.assert(
      fc.asyncProperty(validFileArb, async ({ tensors, metadata }) => {
        const bytes = writeSafetensors(tensors, metadata);
        const file = await readSafetensors(memorySource(bytes));
        expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(tensors.map((t) => [t.name, t.dtype, t.shape]));
        expect(file.metadata).toEqual(metadata ?? {});
        for (const [i, t] of file.tensors.entries()) expect([...(await readTensorBytes(t))]).toEqual([...tensors[i]!.data]);
        await expectConsistent(file);
      }),
      { numRuns: 300 },
    );
  });

  it("mutated files parse into something consistent or fail with a FormatError, reading no more than the file", async () => {
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(validFileArb, mutationArb, async ({ tensors, metadata }, m) => {
        const bytes = mutate(writeSafetensors(tensors, metadata), m);
        const counting = new CountingSource(memorySource(bytes, "mutant.safetensors"));
        try {
          await expectConsistent(await readSafetensors(counting));
          outcomes.set("ok", (outcomes.get("ok") ?? 0) + 1);
        } catch (e) {
          if (!isFormatError(e)) throw e;
          expect(e.file).toBe("mutant.safetensors");
          expect(e.message).not.toContain("\n");
          outcomes.set(e.code, (outcomes.get(e.code) ?? 0) + 1);
        }
        for (const r of counting.reads) {
          expect(r.length).toBeLessThanOrEqual(bytes.length);
          expect(r.offset + r.length).toBeLessThanOrEqual(bytes.length);
        }
      }),
      { numRuns: 1500 },
    );
    // The mutations reach every kind of rejection (a generator that never breaks anything proves nothing).
    for (const code of ["truncated", "header-too-large", "bad-json", "bad-header", "unknown-dtype", "bad-offsets", "size-mismatch", "duplicate-name"]) {
      expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(0);
    }
  });
});
