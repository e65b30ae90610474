/**
 * GGUF export of a byte-level BPE tokenizer (tokenizer.ggml.model "gpt2"), proven on a tiny Qwen2-style
 * checkpoint built here (test/qwen2-fixture.ts: no real BPE tokenizer is available offline): exported by
 * `quantlab export`, parsed by @huggingface/gguf with the keys convert_hf_to_gguf.py writes, and loaded by
 * llama.cpp (node-llama-cpp 3.21.1), whose tokenizer gives the same ids as @huggingface/tokenizers on
 * the same tokenizer.json.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import { Tokenizer } from "@huggingface/tokenizers";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quantlab } from "../../test/quantlab-cli.ts";
import { QWEN2_CHAT_TEMPLATE, QWEN2_PATTERN, writeQwen2Fixture, type Qwen2Fixture } from "../../test/qwen2-fixture.ts";
import { openModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { isExportError } from "./export-error.ts";
import { preTokenizerName, tokenizerKeyValues } from "./gguf-tokenizer.ts";

const SAMPLES = [
  "Once upon a time, there was a little girl named Lily.",
  "It's 2024 and we're testing: they'll split 12345 numbers, symbols!!! and   spaces\n\n  too.",
  "我想在苹果公司工作。Привет, как дела? Ça va très bien.",
  "def tokenize(text):\n    return [t for t in text.split(\" \") if t]\n",
  "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
  "a <custom> token, and an unseen word: Zyxwvut qé 🦙",
];

let dir: string;
let fixture: Qwen2Fixture;
let out: string;
let llama: Llama;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-qwen2-"));
  fixture = await writeQwen2Fixture(path.join(dir, "tiny-qwen2"));
  out = path.join(dir, "tiny-qwen2-Q8_0.gguf");
  const run = await quantlab("export", fixture.dir, "--to", "gguf", "--type", "Q8_0", "--out", out);
  expect(run.code, run.stderr).toBe(0);
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
}, 180_000);

afterAll(async () => {
  await llama?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe("GGUF export of a byte-level BPE (Qwen2) tokenizer", () => {
  it("@huggingface/gguf reads the keys convert_hf_to_gguf writes: gpt2 model, qwen2 pre, tokens, types, merges, specials", async () => {
    const { metadata: read, tensorInfos } = await hfGguf(out, { allowLocalFile: true });
    const m = read as unknown as Record<string, unknown>;
    const vocabSize = fixture.config["vocab_size"] as number;
    expect(m["general.architecture"]).toBe("qwen2");
    expect(m["qwen2.block_count"]).toBe(2);
    expect(m["qwen2.attention.head_count_kv"]).toBe(2);
    expect(m["tokenizer.ggml.model"]).toBe("gpt2");
    expect(m["tokenizer.ggml.pre"]).toBe("qwen2");
    const tokens = m["tokenizer.ggml.tokens"] as string[];
    const types = m["tokenizer.ggml.token_type"] as number[];
    expect(tokens).toHaveLength(vocabSize);
    const model = fixture.tokenizer["model"] as { vocab: Record<string, number>; merges: [string, string][] };
    for (const [piece, id] of Object.entries(model.vocab)) expect(tokens[id]).toBe(piece);
    expect(types.slice(0, fixture.tokenCount - 4).every((t) => t === 1)).toBe(true);
    const { endOfText, imStart, imEnd, custom } = fixture.special;
    expect([endOfText, imStart, imEnd, custom].map((id) => [tokens[id], types[id]])).toEqual([
      ["<|endoftext|>", 3],
      ["<|im_start|>", 3],
      ["<|im_end|>", 3],
      ["<custom>", 4],
    ]);
    expect(tokens[fixture.tokenCount]).toBe(`[PAD${fixture.tokenCount}]`);
    expect(types.slice(fixture.tokenCount).every((t) => t === 5)).toBe(true);
    expect(m["tokenizer.ggml.merges"]).toEqual(model.merges.map(([a, b]) => `${a} ${b}`));
    expect(m["tokenizer.ggml.bos_token_id"]).toBe(endOfText); // config.json's bos_token_id: tokenizer_config's is null
    expect(m["tokenizer.ggml.eos_token_id"]).toBe(imEnd);
    expect(m["tokenizer.ggml.padding_token_id"]).toBe(endOfText);
    expect(m["tokenizer.ggml.unknown_token_id"]).toBeUndefined();
    expect(m["tokenizer.chat_template"]).toBe(QWEN2_CHAT_TEMPLATE);
    expect(tensorInfos.map((t) => t.name)).toEqual(expect.arrayContaining(["blk.0.attn_q.bias", "blk.1.attn_v.bias", "token_embd.weight"]));
    expect(tensorInfos.map((t) => t.name)).not.toContain("output.weight"); // tied, as the config says

    // Our own reader opens it too, with the biases in F32.
    const sources = await openPath(out);
    try {
      const opened = await openModel(sources);
      expect(opened.metadata["tokenizer.ggml.pre"]).toBe("qwen2");
      expect(opened.tensors.find((t) => t.name === "blk.0.attn_k.bias")).toMatchObject({ dtype: "F32", shape: [32] });
    } finally {
      await closeSources(sources);
    }
  });

  it("llama.cpp loads it, runs it, and tokenizes text to the same ids as @huggingface/tokenizers", async () => {
    const reference = new Tokenizer(fixture.tokenizer, fixture.tokenizerConfig);
    const model = await llama.loadModel({ modelPath: out });
    try {
      let compared = 0;
      for (const text of SAMPLES) {
        const ours = model.tokenize(text, true).map(Number);
        expect(ours, JSON.stringify(text)).toEqual(reference.encode(text).ids);
        expect(model.detokenize(model.tokenize(text, true), true)).toBe(text);
        compared += ours.length;
      }
      expect(compared).toBeGreaterThan(100);
      const context = await model.createContext({ contextSize: 64, threads: 1 });
      const generated: number[] = [];
      for await (const token of context.getSequence().evaluate(model.tokenize(SAMPLES[0]!), { temperature: 0 })) {
        generated.push(Number(token));
        if (generated.length >= 4) break;
      }
      await context.dispose();
      expect(generated).toHaveLength(4);
      expect(generated.every((id) => id >= 0 && id < (fixture.config["vocab_size"] as number))).toBe(true);
    } finally {
      await model.dispose();
    }
  }, 180_000);
});

describe("the pre-tokenizer's name and what cannot be written", () => {
  const llama3Pattern = QWEN2_PATTERN.replace("\\p{N}|", "\\p{N}{1,3}|");
  const split = (pattern: string) => ({ type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: pattern } }, { type: "ByteLevel", use_regex: false }] });

  it("recognizes qwen2, llama-bpe and gpt-2 from tokenizer.json's pre-tokenizer", async () => {
    expect(await preTokenizerName({ pre_tokenizer: split(QWEN2_PATTERN) })).toBe("qwen2");
    expect(await preTokenizerName({ pre_tokenizer: split(llama3Pattern) })).toBe("llama-bpe");
    expect(await preTokenizerName({ pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true } })).toBe("gpt-2");
    await expect(preTokenizerName({ pre_tokenizer: split("\\w+|\\s+") })).rejects.toThrow(/pre-tokenizer was not recognized/);
  });

  it("refuses token ids outside vocab_size and tokenizers that are not BPE, before anything is written", async () => {
    const t = fixture.tokenizer;
    const vocabSize = fixture.tokenCount - 1;
    const tooSmall = await tokenizerKeyValues({ tokenizer: t, config: fixture.config, vocabSize }).catch((e: unknown) => e);
    expect(isExportError(tooSmall)).toBe(true);
    expect((tooSmall as Error).message).toBe(`tokenizer.json adds the token id ${vocabSize}, outside config.json's vocab_size ${vocabSize}`);
    const unigram = await tokenizerKeyValues({ tokenizer: { model: { type: "Unigram", vocab: [] } }, config: {}, vocabSize: 10 }).catch((e: unknown) => e);
    expect((unigram as Error).message).toMatch(/^tokenizer\.json is not a BPE vocabulary \(model\.type "Unigram"\)/);
  });
});
