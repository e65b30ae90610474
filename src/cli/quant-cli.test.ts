/**
 * `quantlab formats`, `encode` and `decode` as a user runs them (spawned `node bin/quantlab.js`):
 * llama.cpp's golden vectors through the CLI byte for byte, round trips of the other formats against
 * their CPU reference, and one-line errors with exit code 2 for bad input.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGML_GOLDEN_DIR, goldenManifest, type GoldenEntry } from "../../test/ggml-golden.ts";
import { quantlab, quantlabInProcess } from "../../test/quantlab-cli.ts";
import { gaussian } from "../../test/random.ts";
import { FORMATS, getFormat } from "../quant/registry.ts";
import { bitsPerWeight } from "../quant/format.ts";
import type { FormatJson } from "./formats.ts";

const golden = (rel: string) => path.join(GGML_GOLDEN_DIR, rel);
const bytesOf = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-formats-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A unique output path per test (tests run concurrently). */
let outputs = 0;
const out = (ext: string) => path.join(dir, `out-${outputs++}.${ext}`);

async function writeF32(values: Float32Array): Promise<string> {
  const file = out("f32");
  await writeFile(file, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  return file;
}

describe.concurrent("quantlab formats", () => {
  it("--json lists every registry format with its exact bits per weight, block and GGML type", async () => {
    const run = await quantlab("formats", "--json");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const list = JSON.parse(run.stdout) as FormatJson[];
    expect(list.map((f) => f.id)).toEqual(FORMATS.map((f) => f.id));
    for (const j of list) {
      const f = getFormat(j.id);
      expect(j.bits_per_weight_4096x4096).toBe(bitsPerWeight(f, { rows: 4096, cols: 4096 }));
      if (j.bits_per_weight !== null) expect(j.bits_per_weight).toBe(bitsPerWeight(f, { rows: 3, cols: 4096 }));
    }
    const byId = new Map(list.map((f) => [f.id, f]));
    expect(byId.get("q4_K")).toMatchObject({ block_weights: 256, bytes_per_block: 144, bits_per_weight: 4.5, ggml_type: 12, granularity: "block" });
    expect(byId.get("q6_K")).toMatchObject({ bits_per_weight: 6.5625, ggml_type: 14 });
    expect(byId.get("int4-g128")).toMatchObject({ block_weights: 128, bytes_per_block: 66, bits_per_weight: 4.125, ggml_type: null });
    // Per-channel: one fp16 scale per 4096-weight row on top of 8 bits.
    expect(byId.get("int8-channel")).toMatchObject({ granularity: "channel", bits_per_weight: null, bits_per_weight_4096x4096: 8 + 16 / 4096, aliases: ["int8"] });
    expect(byId.get("int4-tensor")).toMatchObject({ granularity: "tensor", bits_per_weight_4096x4096: 4 + 16 / 4096 / 4096 });
    expect(byId.get("nf4-dq")).toMatchObject({ granularity: "blocks+tensor", bits_per_weight: null });
  });

  it("prints a table with one line per format", async () => {
    const run = await quantlab("formats");
    expect(run.code).toBe(0);
    const lines = run.stdout.split("\n");
    for (const f of FORMATS) expect(lines.some((l) => l.startsWith(`${f.id} `))).toBe(true);
    expect(lines.find((l) => l.startsWith("q4_K "))).toMatch(/^q4_K\s+gguf\s+256\s+144\s+4\.5\s+4\.5\s+12\s+4-bit K-quant/);
    expect(lines.find((l) => l.startsWith("int8-channel "))).toMatch(/per channel: \+ scales\s+8\.00390625/);
  });
});

/**
 * A few golden entries per format, rotating through the cases so that together they cover all of them
 * (zeros with -0.0, constants, fp16-subnormal scales, outliers, 4096-wide rows).
 */
function pickedEntries(): { encode: GoldenEntry[]; decode: GoldenEntry[] } {
  const entries = goldenManifest().entries;
  const cases = [...new Set(entries.map((e) => e.case))].sort();
  const formats = [...new Set(entries.map((e) => e.format))];
  const pick = (format: string, variant: string, k: number) =>
    entries.find((e) => e.format === format && e.variant === variant && e.case === cases[k % cases.length]);
  const encode: GoldenEntry[] = [];
  const decode: GoldenEntry[] = [];
  formats.forEach((format, i) => {
    for (const e of [pick(format, "ref", i), pick(format, "imatrix", i + 4)]) if (e) encode.push(e);
    decode.push(pick(format, "ref", i + 6)!);
  });
  return { encode, decode };
}

describe.concurrent("quantlab encode/decode on llama.cpp's golden vectors", () => {
  const { encode, decode } = pickedEntries();

  it.each(encode.map((e) => [`${e.format} ${e.variant} ${e.case}`, e] as const))("encode %s: the golden bytes", async (_, e) => {
    const file = out("bin");
    const args = ["encode", "--format", e.format, "--rows", String(e.rows), "--cols", String(e.cols), "--in", golden(e.input), "--out", file];
    if (e.imatrix) args.push("--imatrix", golden(e.imatrix));
    const run = await quantlab(...args);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const [got, want] = await Promise.all([readFile(file), readFile(golden(e.quant.file))]);
    expect(got.length).toBe(e.quant.bytes);
    expect(Buffer.compare(got, want)).toBe(0);
  });

  it.each(decode.map((e) => [`${e.format} ${e.case}`, e] as const))("decode %s: the golden values, bit for bit", async (_, e) => {
    const file = out("f32");
    const run = await quantlab("decode", "--format", e.format, "--rows", String(e.rows), "--cols", String(e.cols), "--in", golden(e.quant.file), "--out", file);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const [got, want] = await Promise.all([readFile(file), readFile(golden(e.dequant.file))]);
    // Byte comparison is a bit-pattern comparison: -0.0 and NaN payloads count.
    expect(Buffer.compare(got, want)).toBe(0);
  });
});

// The command run in this process (the spawned tests above cover the process itself): one path, many formats.
describe.concurrent("quantlab encode/decode on the other formats", () => {
  const shape = { rows: 6, cols: 512 };
  // "int8" is the alias of int8-channel.
  const ids = ["int4-g128", "int4-asym-g32", "int3-g64", "int2-g64", "int8", "int8-tensor", "nf4", "nf4-dq", "fp4", "llm-int8", "f16", "bf16", "fp8-e4m3", "fp8-e5m2"];

  it.each(ids)("%s: encode and decode give the CPU reference's bytes and values", async (id) => {
    const format = getFormat(id);
    const x = gaussian(shape.rows * shape.cols, 0.02, id.length * 7919 + id.charCodeAt(0));
    x[5] = 0.3; // an outlier, so scales and saturating casts matter
    const input = await writeF32(x);
    const packed = out("bin");
    const decoded = out("f32");
    const dims = ["--rows", String(shape.rows), "--cols", String(shape.cols)];
    const enc = await quantlabInProcess("encode", "--format", id, ...dims, "--in", input, "--out", packed);
    expect(enc.stderr).toBe("");
    expect(enc.code).toBe(0);
    const dec = await quantlabInProcess("decode", "--format", id, ...dims, "--in", packed, "--out", decoded);
    expect(dec.stderr).toBe("");
    expect(dec.code).toBe(0);
    const want = format.encode(x, shape);
    expect(bytesOf(await readFile(packed))).toEqual(want);
    const back = bytesOf(await readFile(decoded));
    const wantBack = format.decode(want, shape);
    expect(back).toEqual(new Uint8Array(wantBack.buffer, wantBack.byteOffset, wantBack.byteLength));
  });
});

describe.concurrent("quantlab encode/decode: bad input is exit 2 with one line", () => {
  const input = golden("inputs/gauss_256.f32"); // 8 x 256

  async function fails(args: string[], pattern: RegExp): Promise<void> {
    const run = await quantlab(...args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(pattern);
  }

  it("an unknown format, naming the close ones", async () => {
    await fails(["encode", "--format", "q4k", "--rows", "8", "--cols", "256", "--in", input, "--out", out("bin")], /unknown format "q4k"; did you mean q4_K\b.*quantlab formats/);
    await fails(["decode", "--format", "int4-g129", "--rows", "8", "--cols", "256", "--in", input, "--out", out("f32")], /unknown format "int4-g129"; did you mean .*int4-g128/);
  });

  it("an input whose size is not rows x cols float32, with both sizes", async () => {
    await fails(["encode", "--format", "q8_0", "--rows", "7", "--cols", "256", "--in", input, "--out", out("bin")], /has 8192 bytes, expected 7168$/m);
    await fails(["encode", "--format", "q8_0", "--rows", "8", "--cols", "256", "--in", input, "--imatrix", golden("imatrix/c4096.f32"), "--out", out("bin")], /c4096\.f32: the importance matrix \(256 float32\) has 16384 bytes, expected 1024/);
  });

  it("packed bytes that are not the format's size for rows x cols", async () => {
    // q4_K of 8x256 is 8 blocks of 144 bytes; the file holds q8_0's 8 x 8 x 34.
    await fails(["decode", "--format", "q4_K", "--rows", "8", "--cols", "256", "--in", golden("q8_0/ref/gauss_256.q"), "--out", out("f32")], /the input \(q4_K for 8x256\) has 2176 bytes, expected 1152$/m);
  });

  it("NaN and Inf, naming the row and column", async () => {
    const x = gaussian(8 * 256, 1, 3);
    x[3 * 256 + 17] = NaN;
    x[5 * 256] = -Infinity;
    await fails(["encode", "--format", "q4_0", "--rows", "8", "--cols", "256", "--in", await writeF32(x), "--out", out("bin")], /2 NaN or infinite values, the first at row 3, column 17/);
  });

  it("a row length the format cannot take, naming llama.cpp's fallback", async () => {
    const x = gaussian(4 * 288, 1, 4); // 288 = 9 x 32: not a multiple of 256
    const file = await writeF32(x);
    await fails(["encode", "--format", "q4_K", "--rows", "4", "--cols", "288", "--in", file, "--out", out("bin")], /q4_K: rows of 288 weights are not a multiple of 256.*llama\.cpp quantizes such a tensor as q5_0/);
    await fails(["encode", "--format", "q6_K", "--rows", "4", "--cols", "288", "--in", file, "--out", out("bin")], /as q8_0/);
    await fails(["encode", "--format", "q4_0", "--rows", "8", "--cols", "144", "--in", file, "--out", out("bin")], /not a multiple of 32/);
  });

  it("missing or malformed options and an unknown backend", async () => {
    await fails(["encode", "--format", "q8_0", "--rows", "8", "--cols", "256", "--in", input], /--out is required/);
    await fails(["encode", "--format", "q8_0", "--rows", "8x", "--cols", "256", "--in", input, "--out", out("bin")], /--rows must be a positive integer, got "8x"/);
    await fails(["encode", "--format", "q8_0", "--rows", "8", "--cols", "256", "--in", input, "--out", out("bin"), "--backend", "cuda"], /--backend must be cpu or webgpu/);
    await fails(["encode", "--format", "q8_0", "--rows", "8", "--cols", "256", "--in", path.join(dir, "missing.f32"), "--out", out("bin")], /missing\.f32: no such file/);
   }, 240_000); // four spawned CLI processes (tsx start-up each): slow on a loaded 2-core machine
});
