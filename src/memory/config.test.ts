import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { isMemoryInputError, parseConfig, parseConfigText } from "./config.ts";

const storiesJson = JSON.parse(readFileSync(path.join(STORIES_DIR, "config.json"), "utf8")) as Record<string, unknown>;

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isMemoryInputError(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error("expected a MemoryInputError");
}

describe("config.json parsing", () => {
  it("reads stories260K's config", () => {
    const c = parseConfig(storiesJson, "stories260K");
    expect(c).toMatchObject({ architecture: "llama", hiddenSize: 64, numLayers: 5, numHeads: 8, numKvHeads: 4, headDim: 8, intermediateSize: 172, vocabSize: 512, tieWordEmbeddings: true, qkvBias: false, numExperts: 1 });
  });

  it("applies each architecture's defaults: Qwen2's q/k/v biases, Gemma's tied embeddings, head_dim from the widths", () => {
    const base = { hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, vocab_size: 100 };
    expect(parseConfig({ ...base, model_type: "qwen2" }, "q")).toMatchObject({ qkvBias: true, outputBias: false, tieWordEmbeddings: false, numKvHeads: 4, headDim: 16 });
    expect(parseConfig({ ...base, model_type: "gemma" }, "g")).toMatchObject({ tieWordEmbeddings: true, qkvBias: false });
    expect(parseConfig({ ...base, model_type: "llama", attention_bias: true }, "l")).toMatchObject({ qkvBias: true, outputBias: true });
    expect(parseConfig({ ...base, model_type: "mixtral", num_local_experts: 8, num_experts_per_tok: 2 }, "m")).toMatchObject({ numExperts: 8, expertsPerToken: 2 });
  });

  it("says which key is missing, which architecture is unknown, which size is wrong", () => {
    const { hidden_size: _dropped, ...noHidden } = storiesJson;
    expect(messageOf(() => parseConfig(noHidden, "cfg.json"))).toBe('cfg.json: missing key "hidden_size" (needed for llama)');
    expect(messageOf(() => parseConfig({ ...storiesJson, model_type: "gpt2" }, "cfg.json"))).toMatch(/^cfg\.json: unknown architecture "gpt2" \(known: llama, mistral, qwen2/);
    expect(messageOf(() => parseConfig({ ...storiesJson, num_hidden_layers: -3 }, "cfg.json"))).toBe('cfg.json: "num_hidden_layers" must be a positive integer, got -3');
    expect(messageOf(() => parseConfig({ ...storiesJson, num_key_value_heads: 3 }, "cfg.json"))).toMatch(/not a multiple of num_key_value_heads 3/);
    expect(messageOf(() => parseConfig({ ...storiesJson, model_type: "mixtral" }, "cfg.json"))).toBe('cfg.json: missing key "num_local_experts" (needed for mixtral)');
    expect(messageOf(() => parseConfigText("{ not json", "cfg.json"))).toMatch(/^cfg\.json: not valid JSON/);
    expect(messageOf(() => parseConfig([1, 2], "cfg.json"))).toBe("cfg.json: a config.json must be a JSON object");
  });
});
