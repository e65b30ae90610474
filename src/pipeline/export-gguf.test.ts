/**
 * The GGUF export of stories260K against what llama.cpp itself writes (../shared/golden/gguf): every tensor's
 * type and bytes, the vocabulary; parsed back by our reader and by @huggingface/gguf; bad input stopped
 * before a byte is written. (llama.cpp running the exports: export-gguf-llama.test.ts.)
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import { beforeAll, describe, expect, it } from "vitest";
import { readGgufHeader, type GgufHeader } from "../formats/gguf.ts";
import { openModel, type OpenedModel } from "../formats/model.ts";
import { BlobSource } from "../formats/source.ts";
import { NodeFileSource } from "../node/file-source.ts";
import { SHARED_DIR, STORIES_DIR } from "../../test/shared-data.ts";
import { exportGguf, planGgufExport, permuteRotaryRows, isExportError, type ExportInput } from "./export-gguf.ts";
import { importanceFromActivations, parseImatrix, writeImatrix } from "../formats/imatrix.ts";
import { getFormat } from "../quant/registry.ts";

const GOLDEN = path.join(SHARED_DIR, "golden/gguf");

/** A GGUF file in memory: the header as our reader sees it and each tensor's bytes. */
interface ParsedGguf {
  header: GgufHeader;
  bytes: Uint8Array;
  tensor(name: string): Uint8Array | undefined;
}

function parsed(bytes: Uint8Array, header: GgufHeader): ParsedGguf {
  return {
    header,
    bytes,
    tensor(name) {
      const t = header.tensors.find((x) => x.name === name);
      return t ? bytes.subarray(header.dataOffset + t.offset, header.dataOffset + t.offset + t.nbytes) : undefined;
    },
  };
}

async function goldenFile(name: string): Promise<ParsedGguf> {
  const bytes = new Uint8Array(await readFile(path.join(GOLDEN, name)));
  return parsed(bytes, await readGgufHeader(new BlobSource(new Blob([bytes]), name)));
}

let input: ExportInput;
let model: OpenedModel;

beforeAll(async () => {
  model = await openModel([await NodeFileSource.open(path.join(STORIES_DIR, "model.safetensors"))]);
  const json = async (f: string) => JSON.parse(await readFile(path.join(STORIES_DIR, f), "utf8"));
  input = { model, config: await json("config.json"), tokenizer: await json("tokenizer.json"), tokenizerConfig: await json("tokenizer_config.json"), name: "stories260K" };
});

async function exported(type: string): Promise<ParsedGguf> {
  const plan = await planGgufExport(input, type);
  const parts: Uint8Array[] = [];
  await exportGguf(plan, { write: async (b) => void parts.push(b.slice()) });
  const bytes = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) (bytes.set(p, at), (at += p.length));
  return parsed(bytes, await readGgufHeader(new BlobSource(new Blob([bytes]), `${type}.gguf`)));
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("GGUF export of stories260K", () => {
  it("F32: every tensor byte-equal to llama.cpp's converter output, q/k rows in its rotary order; the same vocabulary", async () => {
    const ours = await exported("F32");
    const golden = await goldenFile("stories260K-F32.gguf");
    // A tied model has no output.weight: llama.cpp uses token_embd for the output then.
    expect(ours.header.tensors.map((t) => t.name).sort()).toEqual(golden.header.tensors.map((t) => t.name).filter((n) => n !== "output.weight").sort());
    for (const t of ours.header.tensors) {
      const g = golden.header.tensors.find((x) => x.name === t.name)!;
      expect({ name: t.name, dims: t.dims, type: t.type.name }).toEqual({ name: g.name, dims: g.dims, type: g.type.name });
      expect(sha256(ours.tensor(t.name)!), t.name).toBe(sha256(golden.tensor(t.name)!));
    }
    for (const key of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "llama.attention.head_count_kv", "llama.rope.dimension_count", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length"]) {
      expect(ours.header.kv.get(key), key).toEqual(golden.header.kv.get(key));
    }
    expect(ours.header.kv.get("tokenizer.ggml.model")).toBe("llama");
  });

  it("Q4_K_M: llama-quantize's type and bytes for every tensor (token_embd as a tied output: Q8_0)", async () => {
    const ours = await exported("Q4_K_M");
    const golden = await goldenFile("stories260K-Q4_K_M.gguf");
    for (const t of ours.header.tensors) {
      // Tied: token_embd gets the output rule, Q8_0, byte-identical to the untied file's output.weight.
      const name = t.name === "token_embd.weight" ? "output.weight" : t.name;
      const g = golden.header.tensors.find((x) => x.name === name)!;
      expect(`${t.name} ${t.type.name}`).toBe(`${t.name} ${g.type.name}`);
      expect(sha256(ours.tensor(t.name)!), t.name).toBe(sha256(golden.tensor(name)!));
    }
    expect(ours.header.kv.get("general.file_type")).toBe(15);
  });

  it("Q8_0: the bytes llama.cpp's own Hugging Face converter rule gives (F16 where rows of 172 do not take 32-blocks)", async () => {
    const ours = await exported("Q8_0");
    const manifest = JSON.parse(await readFile(path.join(GOLDEN, "manifest.json"), "utf8"));
    const expected: { name: string; type: string; sha256: string }[] = manifest.derived_expectations.Q8_0_hf_converter_rule.tensors;
    let compared = 0;
    for (const t of ours.header.tensors) {
      const e = expected.find((x) => x.name === t.name)!;
      expect(`${t.name} ${t.type.name}`).toBe(`${t.name} ${e.type}`);
      expect(sha256(ours.tensor(t.name)!), t.name).toBe(e.sha256);
      compared++;
    }
    expect(compared).toBe(47);
  });

  it("is read back by @huggingface/gguf with every key and tensor", async () => {
    const ours = await exported("Q4_K_M");
    const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-gguf-"));
    const file = path.join(dir, "stories.gguf");
    await writeFile(file, ours.bytes);
    const { metadata: read, tensorInfos } = await hfGguf(file, { allowLocalFile: true });
    await rm(dir, { recursive: true, force: true });
    const metadata = read as unknown as Record<string, unknown>;
    expect(tensorInfos.map((t) => t.name).sort()).toEqual(ours.header.tensors.map((t) => t.name).sort());
    expect(metadata["general.architecture"]).toBe("llama");
    expect(metadata["llama.block_count"]).toBe(5);
    expect((metadata["tokenizer.ggml.tokens"] as string[]).length).toBe(512);
    for (const t of tensorInfos) {
      const mine = ours.header.tensors.find((x) => x.name === t.name)!;
      expect(t.dtype).toBe(mine.type.id);
      expect(t.shape.map(Number)).toEqual(mine.dims);
    }
  });

  it("stops before writing on what GGUF cannot express", async () => {
    const cases: [Partial<ExportInput>, RegExp][] = [
      [{ tokenizer: undefined }, /no tokenizer\.json/],
      [{ config: { ...(input.config as object), model_type: "gemma" } }, /writes llama, mistral, qwen2 models; this config is "gemma"/],
      [{ config: { ...(input.config as object), model_type: "gpt_neox" } }, /architecture/],
      [{ tokenizer: { model: { type: "WordPiece", vocab: {} } } }, /not a BPE vocabulary \(model.type "WordPiece"\)/],
      [{ config: { ...(input.config as object), hidden_size: 128 } }, /config\.json says/],
    ];
    for (const [change, message] of cases) {
      let thrown: unknown;
      try {
        await planGgufExport({ ...input, ...change }, "Q4_K_M");
      } catch (e) {
        thrown = e;
      }
      expect(isExportError(thrown), String(thrown)).toBe(true);
      expect((thrown as Error).message).toMatch(message);
    }
    await expect(planGgufExport(input, "Q9_X")).rejects.toThrow(/unknown GGUF file type "Q9_X"/);
  });

  it("permutes rotary rows as convert_hf_to_gguf does (adjacent pairs from the two halves of each head)", () => {
    // 2 heads of 4 rows, 1 column: head rows [a0 a1 b0 b1] -> [a0 b0 a1 b1].
    const x = new Float32Array([0, 1, 2, 3, 10, 11, 12, 13]);
    expect([...permuteRotaryRows(x, 8, 1, 2)]).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
  });
});

describe("GGUF export with an importance matrix", () => {
  it("reads llama.cpp's imatrix format back, and the weighted encoders lower the output error on the calibration inputs", async () => {
    const calib = async (f: string) => {
      const b = await readFile(path.join(STORIES_DIR, "reference/calib", f));
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    };
    const matrix = new Map<string, Float32Array>();
    const inputs = new Map<string, Float32Array>();
    for (let layer = 0; layer < 5; layer++) {
      const attn = await calib(`layers.${layer}.attn_in.f32`);
      const o = await calib(`layers.${layer}.o_proj_in.f32`);
      const mlp = await calib(`layers.${layer}.mlp_in.f32`);
      for (const [name, x] of [["attn_q", attn], ["attn_k", attn], ["attn_v", attn], ["attn_output", o], ["ffn_gate", mlp], ["ffn_up", mlp]] as const) {
        matrix.set(`blk.${layer}.${name}.weight`, importanceFromActivations(x, 64));
        inputs.set(`blk.${layer}.${name}.weight`, x);
      }
    }
    const file = writeImatrix(matrix, "eval.txt");
    const back = parseImatrix(file, "stories.imatrix");
    expect([...back.keys()]).toEqual([...matrix.keys()]);
    for (const [k, v] of matrix) expect(back.get(k)).toEqual(v);
    expect(() => parseImatrix(file.subarray(0, 100), "cut.imatrix")).toThrow(/past the end of the file/);

    const plan = await planGgufExport(input, "Q4_K_M");
    const run = async (imatrix?: Map<string, Float32Array>) => {
      const parts: Uint8Array[] = [];
      await exportGguf(plan, { write: async (b) => void parts.push(b.slice()) }, { imatrix });
      const bytes = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of parts) (bytes.set(p, at), (at += p.length));
      return parsed(bytes, await readGgufHeader(new BlobSource(new Blob([bytes]), "x.gguf")));
    };
    const plain = await run();
    const weighted = await run(back);
    // ||X (W - Q)^T||^2 summed over the unpermuted matrices, with and without the importance matrix.
    let plainErr = 0;
    let weightedErr = 0;
    let differing = 0;
    for (const t of weighted.header.tensors) {
      const x = inputs.get(t.name);
      if (!x || /attn_[qk]\./.test(t.name)) continue;
      const source = plan.tensors.find((p) => p.entry.name === t.name)!.source;
      const [cols, rows] = t.dims as [number, number];
      const w = new Float32Array((await source.source.read(source.offset, source.bytes)).slice().buffer);
      const format = getFormat(t.type.formatId!);
      const err = (g: ParsedGguf) => {
        const q = format.decode(g.tensor(t.name)!, { rows, cols });
        let s = 0;
        for (let n = 0; n < x.length / cols; n++) {
          for (let r = 0; r < rows; r++) {
            let d = 0;
            for (let c = 0; c < cols; c++) d += x[n * cols + c]! * (w[r * cols + c]! - q[r * cols + c]!);
            s += d * d;
          }
        }
        return s;
      };
      if (sha256(plain.tensor(t.name)!) !== sha256(weighted.tensor(t.name)!)) differing++;
      plainErr += err(plain);
      weightedErr += err(weighted);
    }
    expect(differing).toBeGreaterThan(10);
    expect(weightedErr).toBeLessThan(plainErr * 0.97);
  });
});
