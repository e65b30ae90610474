/**
 * The proof that the exports work: llama.cpp itself (node-llama-cpp 3.21.1, its prebuilt CPU build) loads
 * stories260K exported by `quantlab export` at Q8_0 and Q4_K_M and continues "Once upon a time" greedily;
 * at Q8_0 exactly as the model's reference continuation (reference/greedy.json), and the prompt tokenizes
 * to the reference's ids with the exported vocabulary.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, LlamaLogLevel, type Llama, type Token } from "node-llama-cpp";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantlab } from "../../test/quantlab-cli.ts";

interface Reference {
  prompt: string;
  prompt_ids: number[];
  generated_ids: number[];
}

let dir: string;
let llama: Llama;
let reference: Reference;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-llama-"));
  reference = JSON.parse(await readFile(path.join(STORIES_DIR, "reference/greedy.json"), "utf8"));
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
}, 180_000);

afterAll(async () => {
  await llama?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** Exports with the CLI, then greedy tokens from llama.cpp (one thread: spinning threads crawl on a busy machine). */
async function greedy(type: string, n: number): Promise<{ prompt: number[]; generated: number[]; text: string }> {
  const out = path.join(dir, `stories-${type}.gguf`);
  const cli = await quantlab("export", STORIES_DIR, "--to", "gguf", "--type", type, "--out", out);
  expect(cli.code, cli.stderr).toBe(0);
  const model = await llama.loadModel({ modelPath: out });
  try {
    const context = await model.createContext({ contextSize: 128, threads: 1 });
    const prompt: Token[] = [model.tokens.bos!, ...model.tokenize(reference.prompt)];
    const generated: Token[] = [];
    for await (const token of context.getSequence().evaluate(prompt, { temperature: 0 })) {
      generated.push(token);
      if (generated.length >= n) break;
    }
    await context.dispose();
    return { prompt: prompt.map(Number), generated: generated.map(Number), text: model.detokenize(generated) };
  } finally {
    await model.dispose();
  }
}

describe("llama.cpp runs the lab's GGUF exports", () => {
  it("Q8_0: the reference's prompt ids and its greedy continuation, token for token", async () => {
    const { prompt, generated } = await greedy("Q8_0", 40);
    expect(prompt).toEqual(reference.prompt_ids);
    expect(generated).toEqual(reference.generated_ids.slice(0, 40));
  }, 180_000);

  it("Q4_K_M (rows of 64 and 172 take llama.cpp's fallbacks): loads and tells the same story", async () => {
    const { prompt, generated, text } = await greedy("Q4_K_M", 40);
    expect(prompt).toEqual(reference.prompt_ids);
    expect(generated.slice(0, 20)).toEqual(reference.generated_ids.slice(0, 20));
    expect(text).toMatch(/^, there was a little girl named Lily/);
  }, 180_000);
});
