/**
 * A GGUF file opened as a model: llama.cpp's own files (../shared/golden/gguf) listed, decoded and
 * compared with the F32 file they were quantized from; files the lab writes in every decodable ggml
 * type read back; hostile headers refused with a FormatError.
 */
import path from "node:path";
import { GGMLFileQuantizationType, GGMLQuantizationType } from "@huggingface/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGUF_GOLDEN_DIR, ggufGoldenBytes, ggufGoldenManifest } from "../../test/gguf-golden.ts";
import { gaussian } from "../../test/random.ts";
import { CountingSource } from "../../test/formats-fixtures.ts";
import { startRangeServer } from "../../test/range-server.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { errorMetrics } from "../quant/metrics.ts";
import { findFormat, getFormat } from "../quant/registry.ts";
import { isFormatError, type FormatError } from "./errors.ts";
import { GGML_TYPES, ggmlTypeByName, LLAMA_FTYPE } from "./gguf.ts";
import { writeGguf, type GgufKeyValue, type GgufTensorEntry } from "./gguf-writer.ts";
import { openModel, openUrlSources, readTensorBytes, readTensorRows, readTensorValues, tensorRowLayout, type OpenedModel } from "./model.ts";
import type { TensorInfo } from "./safetensors.ts";
import { BlobSource, type ByteSource } from "./source.ts";
import { isDecodable } from "./tensor-data.ts";

const source = (bytes: Uint8Array, name: string): ByteSource => new BlobSource(new Blob([bytes.slice()]), name);

async function failure(run: () => Promise<unknown>): Promise<FormatError> {
  try {
    await run();
  } catch (e) {
    if (isFormatError(e)) return e;
    throw e;
  }
  throw new Error("no error");
}

async function streamed(t: TensorInfo, opts: Parameters<typeof readTensorRows>[1] = {}): Promise<Float32Array> {
  const out = new Float32Array(t.params);
  let at = 0;
  for await (const c of readTensorRows(t, opts)) {
    out.set(c.values, at);
    at += c.values.length;
  }
  expect(at).toBe(t.params);
  return out;
}

const byName = (m: OpenedModel) => new Map(m.tensors.map((t) => [t.name, t]));

describe("llama.cpp's GGUFs opened as a model", () => {
  let f32: OpenedModel;
  let q4km: OpenedModel;
  let q2k: OpenedModel;
  const sources: ByteSource[] = [];
  beforeAll(async () => {
    const open = async (type: string) => {
      const s = await openPath(path.join(GGUF_GOLDEN_DIR, `stories260K-${type}.gguf`));
      sources.push(...s);
      return openModel(s);
    };
    [f32, q4km, q2k] = await Promise.all([open("F32"), open("Q4_K_M"), open("Q2_K")]);
  });
  afterAll(() => closeSources(sources));

  it("lists every tensor with llama.cpp's name, its ggml type, [rows, cols] shape, bytes and offset", () => {
    for (const [model, type] of [[f32, "F32"], [q4km, "Q4_K_M"], [q2k, "Q2_K"]] as const) {
      const manifest = ggufGoldenManifest(type);
      expect(model.format).toBe("gguf");
      expect(model.name).toBe(`stories260K-${type}.gguf`);
      expect(model.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes, offset: t.offset }))).toEqual(
        manifest.tensors.map((t) => ({
          name: t.name,
          dtype: t.type,
          shape: [...t.dims].reverse(),
          bytes: t.nbytes,
          offset: manifest.data_section_offset + t.offset,
        })),
      );
      expect(model.totalParams).toBe(manifest.tensors.reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1), 0));
      expect(model.totalBytes).toBe(manifest.tensors.reduce((s, t) => s + t.nbytes, 0));
    }
    expect(byName(q4km).get("blk.0.ffn_down.weight")).toMatchObject({ dtype: "F16", shape: [64, 172], params: 64 * 172 });
    expect(byName(q4km).get("blk.2.attn_v.weight")).toMatchObject({ dtype: "Q8_0", shape: [32, 64] });
    expect(byName(q4km).get("output_norm.weight")).toMatchObject({ dtype: "F32", shape: [64] });
  });

  it("shows the key-values as text: architecture, file type by name, the vocabulary's size", () => {
    expect(q4km.metadata).toMatchObject({
      "gguf.version": "3",
      "general.architecture": "llama",
      "general.name": "llama",
      "general.file_type": "15 (Q4_K_M)",
      "llama.context_length": "128",
      "llama.block_count": "5",
      "tokenizer.ggml.model": "llama",
      "tokenizer.ggml.bos_token_id": "1",
    });
    expect(q4km.metadata["tokenizer.ggml.tokens"]).toMatch(/^512 strings: \["<unk>", "<s>", "<\/s>", /);
    expect(q2k.metadata["general.file_type"]).toBe("10 (Q2_K)");
    expect(f32.metadata["general.file_type"]).toBeUndefined();
  });

  /**
   * The lab reads llama-quantize's blocks as llama.cpp wrote them: every tensor of the Q4_K_M and Q2_K
   * files that the lab decodes is byte-equal to our own quantizer of its type run on the F32 file's tensor,
   * so the decoded values, and the error against the F32 weights, are exactly what our quantizer gives.
   */
  it("decodes each quantized tensor to the values our own quantizer of that type gives on the F32 tensor", async () => {
    const original = byName(f32);
    const figures: string[] = [];
    for (const model of [q4km, q2k]) {
      for (const t of model.tensors.filter(isDecodable)) {
        const source = original.get(t.name)!;
        const x = await readTensorValues(source);
        expect(x.length).toBe(t.params);
        const decoded = await streamed(t, { chunkBytes: 1000 });
        if (t.dtype === "F32") {
          expect(decoded).toEqual(x);
          continue;
        }
        const { rows, rowLength: cols } = tensorRowLayout(t);
        const format = getFormat(ggmlTypeByName(t.dtype)!.formatId!);
        const ours = format.encode(x, { rows, cols });
        expect(Buffer.from(ours).equals(Buffer.from(await readTensorBytes(t))), `${model.name} ${t.name} ${t.dtype}`).toBe(true);
        const oursDecoded = format.decode(ours, { rows, cols });
        expect(decoded).toEqual(oursDecoded);
        const snr = errorMetrics(x, decoded, { rows, cols }).snrDb;
        expect(snr).toBe(errorMetrics(x, oursDecoded, { rows, cols }).snrDb);
        if (t.name.startsWith("blk.0.") || t.name === "output.weight") figures.push(`${model.name} ${t.name} ${t.dtype} SNR ${snr.toFixed(2)} dB`);
      }
    }
    console.log(figures.join("\n"));
    // Every type in these files: Q5_0, Q8_0, F16 and F32 are decoded; only Q2_K's IQ4_NL is not.
    expect(new Set(q4km.tensors.filter(isDecodable).map((t) => t.dtype))).toEqual(new Set(["Q5_0", "Q8_0", "F16", "F32"]));
  });

  it("lists tensors of a type it cannot decode (IQ4_NL) and says so when they are used", async () => {
    const iq = q2k.tensors.filter((t) => t.dtype === "IQ4_NL");
    expect(iq.length).toBe(1 + 5 * 6); // token_embd and six matrices a layer
    const t = iq[0]!;
    expect(t.bytes).toBe((t.params / 32) * 18);
    const e = await failure(() => streamed(t));
    expect(e.code).toBe("undecodable");
    expect(e.message).toBe(`${t.file}: tensor "${t.name}": IQ4_NL is a ggml type the lab can list but not decode (it decodes F32, F16, BF16, Q4_0..Q8_0 and Q2_K..Q8_K)`);
    expect((await failure(() => readTensorValues(t))).code).toBe("undecodable");
  });

  it("opens the same file from a Blob, by its magic when the name has no extension, and over HTTP Range requests", async () => {
    const bytes = ggufGoldenBytes("Q4_K_M");
    for (const name of ["q.gguf", "https://example.org/download?id=7"]) {
      const m = await openModel([source(bytes, name)]);
      expect(m.format).toBe("gguf");
      expect(m.tensors.map((t) => [t.name, t.dtype, t.offset])).toEqual(q4km.tensors.map((t) => [t.name, t.dtype, t.offset]));
      const emb = m.tensors.find((t) => t.name === "token_embd.weight")!;
      expect(await readTensorValues(emb)).toEqual(await readTensorValues(byName(q4km).get("token_embd.weight")!));
    }
    // Over HTTP: the header and then one tensor's bytes are all that is fetched.
    const server = await startRangeServer(GGUF_GOLDEN_DIR);
    try {
      const remote = await openModel(await openUrlSources(`${server.url}stories260K-Q4_K_M.gguf`));
      expect(remote.tensors.map((t) => [t.name, t.dtype])).toEqual(q4km.tensors.map((t) => [t.name, t.dtype]));
      const headerBytes = server.bytesSent();
      const q = remote.tensors.find((t) => t.name === "blk.3.attn_q.weight")!;
      expect(await readTensorValues(q)).toEqual(await readTensorValues(byName(q4km).get("blk.3.attn_q.weight")!));
      expect(server.bytesSent() - headerBytes).toBe(q.bytes);
      expect(headerBytes).toBeLessThan(bytes.length);
    } finally {
      await server.close();
    }
    // Other files dropped along (a README, config.json) are ignored, as beside safetensors.
    const withReadme = await openModel([source(bytes, "m.gguf"), source(new TextEncoder().encode("# hi"), "README.md")]);
    expect(withReadme.files).toEqual(["m.gguf"]);
    const mixed = await failure(() => openModel([source(bytes, "m.gguf"), source(new Uint8Array(8), "model.safetensors")]));
    expect(mixed.message).toBe("m.gguf: both GGUF and safetensors files were given; open one model at a time");
  });
});

/** A GGUF the lab's writer makes from these tensors (F32 values encoded in each one's type), in memory. */
async function ggufFile(tensors: { name: string; type: string; rows: number; cols: number; x: Float32Array }[], kv: GgufKeyValue[] = []): Promise<{ bytes: Uint8Array; encoded: Uint8Array[] }> {
  const entries: GgufTensorEntry[] = tensors.map((t) => ({ name: t.name, dims: [t.cols, t.rows], type: ggmlTypeByName(t.type)! }));
  const encoded = tensors.map((t) =>
    t.type === "F32" ? new Uint8Array(t.x.buffer.slice(0)) : getFormat(ggmlTypeByName(t.type)!.formatId!).encode(t.x, { rows: t.rows, cols: t.cols }),
  );
  const parts: Uint8Array[] = [];
  await writeGguf({ write: async (b) => void parts.push(b.slice()) }, kv, entries, async (i) => encoded[i]!);
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) bytes.set(p, (at += p.length) - p.length);
  return { bytes, encoded };
}

describe("every ggml type the lab decodes, read back from a GGUF", () => {
  const decodable = GGML_TYPES.filter((t) => t.formatId !== undefined || t.dtype === "F32");

  it("streams rows, flat blocks and row ranges equal to the format's own decode, in chunks cut anywhere", async () => {
    expect(decodable.map((t) => t.name)).toEqual(["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "BF16"]);
    const rows = 6;
    const cols = 512;
    const tensors = decodable.map((t, i) => ({ name: `blk.${i}.ffn_up.weight`, type: t.name, rows, cols, x: gaussian(rows * cols, 0.02, 100 + i) }));
    const { bytes, encoded } = await ggufFile(tensors);
    const model = await openModel([source(bytes, "all-types.gguf")]);
    for (const [i, spec] of tensors.entries()) {
      const t = model.tensors[i]!;
      expect(t).toMatchObject({ name: spec.name, dtype: spec.type, shape: [rows, cols], params: rows * cols, bytes: encoded[i]!.length });
      const expected = spec.type === "F32" ? spec.x : findFormat(ggmlTypeByName(spec.type)!.formatId!)!.decode(encoded[i]!, { rows, cols });
      expect(await readTensorValues(t), spec.type).toEqual(expected);
      const rowBytes = encoded[i]!.length / rows;
      for (const opts of [{ chunkBytes: rowBytes * 2 + 1 }, { chunkBytes: 1, reuseBuffers: true }, { flat: true, chunkBytes: 100 }, { flat: true, reuseBuffers: true, chunkBytes: 5000 }]) {
        expect(await streamed(t, opts), `${spec.type} ${JSON.stringify(opts)}`).toEqual(expected);
      }
      const part: number[] = [];
      for await (const c of readTensorRows(t, { firstRow: 2, rowCount: 3 })) part.push(...c.values);
      expect(Float32Array.from(part)).toEqual(expected.subarray(2 * cols, 5 * cols));
    }
  });
});

describe("a header larger than the first read", () => {
  it("is read in appended slices, each byte once, with a 100k-token vocabulary", async () => {
    const tokens = Array.from({ length: 100_000 }, (_, i) => `token-${i}`);
    const x = gaussian(2 * 32, 1, 5);
    const { bytes } = await ggufFile([{ name: "w", type: "Q8_0", rows: 2, cols: 32, x }], [{ key: "tokenizer.ggml.tokens", value: { type: "array", elementType: "string", value: tokens } }]);
    const counted = new CountingSource(source(bytes, "big-vocab.gguf"));
    const model = await openModel([counted]);
    expect(model.metadata["tokenizer.ggml.tokens"]).toMatch(/^100000 strings: \["token-0", "token-1", /);
    expect(counted.reads.map((r) => [r.offset, r.length])).toEqual([
      [0, 256 * 1024],
      [256 * 1024, 3 * 256 * 1024],
      [1024 * 1024, bytes.length - 1024 * 1024],
    ]);
    expect(await readTensorValues(model.tensors[0]!)).toEqual(getFormat("q8_0").decode(getFormat("q8_0").encode(x, { rows: 2, cols: 32 }), { rows: 2, cols: 32 }));
  });
});

describe("the ggml type and file type tables", () => {
  it("agree with @huggingface/gguf on every type's id and name, and every file type's", () => {
    for (const t of GGML_TYPES) expect(GGMLQuantizationType[t.id], `id ${t.id}`).toBe(t.name);
    const theirs = Object.values(GGMLQuantizationType).filter((v) => typeof v === "number");
    expect(GGML_TYPES.map((t) => t.id).sort((a, b) => a - b)).toEqual(theirs.sort((a, b) => a - b));
    for (const [name, id] of Object.entries(LLAMA_FTYPE)) expect(GGMLFileQuantizationType[id], name).toBe(name.toUpperCase());
  });
});

/** A little GGUF built by hand, to break one field at a time. */
function handMade(opts: { magic?: string; version?: number; nTensors?: bigint; nKv?: bigint; kv?: Uint8Array; tensors?: Uint8Array; data?: number }): Uint8Array {
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(...new Uint8Array(new Uint32Array([v]).buffer));
  const u64 = (v: bigint) => parts.push(...new Uint8Array(new BigUint64Array([v]).buffer));
  parts.push(...new TextEncoder().encode(opts.magic ?? "GGUF"));
  u32(opts.version ?? 3);
  u64(opts.nTensors ?? 1n);
  u64(opts.nKv ?? 1n);
  parts.push(...(opts.kv ?? kvString("general.architecture", "llama")));
  parts.push(...(opts.tensors ?? tensorInfo("w", [32n, 2n], 0, 0n)));
  while (parts.length % 32 !== 0) parts.push(0);
  for (let i = 0; i < (opts.data ?? 2 * 32 * 4); i++) parts.push(0);
  return Uint8Array.from(parts);
}

function str(s: string): number[] {
  const b = new TextEncoder().encode(s);
  return [...new Uint8Array(new BigUint64Array([BigInt(b.length)]).buffer), ...b];
}
const le32 = (v: number) => [...new Uint8Array(new Uint32Array([v]).buffer)];
const le64 = (v: bigint) => [...new Uint8Array(new BigUint64Array([v]).buffer)];
const kvString = (key: string, value: string) => Uint8Array.from([...str(key), ...le32(8), ...str(value)]);
const tensorInfo = (name: string, dims: bigint[], type: number, offset: bigint) =>
  Uint8Array.from([...str(name), ...le32(dims.length), ...dims.flatMap(le64), ...le32(type), ...le64(offset)]);

describe("hostile or broken GGUF files", () => {
  const open = (bytes: Uint8Array, name = "bad.gguf") => failure(() => openModel([source(bytes, name)]));

  it("opens the hand-made file the cases below break", async () => {
    const m = await openModel([source(handMade({}), "ok.gguf")]);
    expect(m.tensors).toMatchObject([{ name: "w", dtype: "F32", shape: [2, 32], bytes: 256 }]);
  });

  it("refuses a bad magic, an unsupported version, and a file cut short", async () => {
    expect((await open(handMade({ magic: "GGUG" }))).message).toBe("bad.gguf: not a GGUF file (no GGUF magic)");
    expect((await open(handMade({ version: 1 }))).message).toBe("bad.gguf: GGUF version 1 is not supported (2 and 3 are)");
    expect((await open(handMade({ version: 4 }))).detail).toBe("GGUF version 4 is not supported (2 and 3 are)");
    const golden = ggufGoldenBytes("Q4_K_M");
    const cutHeader = await open(golden.subarray(0, 3000));
    expect([cutHeader.code, cutHeader.detail]).toEqual(["truncated", "the header claims 512 array elements, more than the 2931 bytes left in the file can hold"]);
    const cutEarly = await open(golden.subarray(0, 20));
    expect([cutEarly.code, cutEarly.detail]).toEqual(["truncated", "the GGUF header runs past the end of the file"]);
    const cutData = await open(golden.subarray(0, golden.length - 100));
    expect(cutData.code).toBe("truncated");
    expect(cutData.detail).toBe(`tensor "blk.4.ffn_up.weight" needs bytes 296512..304080 but the file ends at byte 303996`);
    expect((await open(handMade({ data: 100 }))).detail).toBe(`tensor "w" needs bytes 128..384 but the file ends at byte 228`);
  });

  it("refuses absurd counts and sizes before allocating or looping over them", async () => {
    const huge = 1n << 52n;
    expect((await open(handMade({ nTensors: huge }))).detail).toMatch(/^the header claims 4503599627370496 tensors, more than the \d+ bytes left in the file can hold$/);
    expect((await open(handMade({ nKv: huge }))).detail).toMatch(/^the header claims 4503599627370496 key-values/);
    expect((await open(handMade({ nKv: 1n << 63n }))).detail).toBe("a count or size of 9223372036854775808 is beyond what the reader handles");
    const longString = Uint8Array.from([...le64(1n << 40n), 65, 66]);
    expect((await open(handMade({ kv: longString }))).detail).toBe("a string claims 1099511627776 bytes, more than the file has left");
    const hugeArray = Uint8Array.from([...str("tokenizer.ggml.tokens"), ...le32(9), ...le32(8), ...le64(huge)]);
    expect((await open(handMade({ kv: hugeArray }))).detail).toMatch(/^the header claims 4503599627370496 array elements/);
    const nested = Uint8Array.from([...str("k"), ...le32(9), ...le32(9), ...le64(1n), ...le32(9), ...le64(1n)]);
    expect((await open(handMade({ kv: nested }))).detail).toBe("an array of arrays (GGUF readers do not take nested arrays)");
    const bigDims = await open(handMade({ tensors: tensorInfo("w", [32n, 1n << 40n, 1n << 10n], 0, 0n) }));
    expect([bigDims.code, bigDims.detail]).toEqual(["size-mismatch", 'tensor "w" claims dims [32,1099511627776,1024], more than the 384-byte file can hold']);
    const fiveDims = await open(handMade({ tensors: tensorInfo("w", [32n, 1n, 1n, 1n, 2n], 0, 0n) }));
    expect(fiveDims.detail).toBe('tensor "w" has 5 dimensions (ggml allows at most 4)');
  });

  it("refuses data placed wrong, a type it does not know, and a name or key given twice", async () => {
    expect((await open(handMade({ tensors: tensorInfo("w", [32n, 2n], 0, 8n) }))).detail).toBe('tensor "w" starts at offset 8, not a multiple of the alignment 32');
    const twoTensors = Uint8Array.from([...tensorInfo("a", [32n, 2n], 0, 0n), ...tensorInfo("b", [32n], 0, 224n)]);
    expect((await open(handMade({ nTensors: 2n, tensors: twoTensors, data: 512 }))).detail).toBe('tensor "b" overlaps tensor "a"');
    const sameName = Uint8Array.from([...tensorInfo("a", [32n], 0, 0n), ...tensorInfo("a", [32n], 0, 128n)]);
    expect(await open(handMade({ nTensors: 2n, tensors: sameName }))).toMatchObject({ code: "duplicate-name", detail: 'tensor "a" appears twice' });
    const twoKeys = Uint8Array.from([...kvString("k", "a"), ...kvString("k", "b")]);
    expect((await open(handMade({ nKv: 2n, kv: twoKeys }))).detail).toBe('the key "k" appears twice');
    expect(await open(handMade({ tensors: tensorInfo("w", [32n, 2n], 77, 0n) }))).toMatchObject({
      code: "unknown-dtype",
      detail: 'tensor "w" has ggml type 77, which is not a ggml type this reader knows',
    });
    expect((await open(handMade({ tensors: tensorInfo("w", [100n, 2n], 12, 0n) }))).detail).toBe('tensor "w": ne0 100 is not a multiple of the Q4_K block of 256');
  });
});
