import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BlobSource } from "../formats/source.ts";
import { openModel } from "../formats/model.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { readJson, REFERENCE_DIR } from "../../test/model-fixtures.ts";
import { parseDecoderConfig } from "./architecture.ts";
import { CHATML_TEMPLATE, renderChat } from "./chat-template.ts";
import { loadDecoder } from "./load.ts";
import { loadTokenizer } from "./tokenizer.ts";

const read = (name: string) => readFileSync(path.join(STORIES_DIR, name), "utf8");
const config = () => JSON.parse(read("config.json")) as Record<string, unknown>;

describe("bad input is named", () => {
  it("refuses configs the builder does not support", () => {
    expect(() => parseDecoderConfig(JSON.stringify({ ...config(), model_type: "gpt2" }), "config.json")).toThrow(/unknown architecture "gpt2"/);
    expect(() => parseDecoderConfig(JSON.stringify({ ...config(), model_type: "gemma" }), "config.json")).toThrow(/does not support the "gemma" architecture/);
    const { hidden_size: _, ...missing } = config();
    expect(() => parseDecoderConfig(JSON.stringify(missing), "config.json")).toThrow(/missing key "hidden_size"/);
    expect(() => parseDecoderConfig(JSON.stringify({ ...config(), rope_theta: -1 }), "config.json")).toThrow(/"rope_theta" must be a positive number/);
    expect(() => parseDecoderConfig("{", "config.json")).toThrow(/not valid JSON/);
  });

  it("refuses weights whose shapes disagree with the config, and missing tensors", async () => {
    const bytes = new Uint8Array(readFileSync(path.join(STORIES_DIR, "model.safetensors")));
    const opened = await openModel([new BlobSource(new Blob([bytes]), "model.safetensors")]);
    const wider = JSON.stringify({ ...config(), intermediate_size: 256 });
    await expect(loadDecoder({ config: wider }, opened)).rejects.toThrow(/"model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[172, 64\] but .* implies \[256, 64\]/);
    const untied = JSON.stringify({ ...config(), tie_word_embeddings: false });
    await expect(loadDecoder({ config: untied }, opened)).rejects.toThrow(/tensor "lm_head\.weight" is missing/);
    const model = await loadDecoder({ config: read("config.json"), tokenizer: read("tokenizer.json") }, opened);
    expect(model.weights.size).toBe(47);
  });

  it("refuses a tokenizer with more ids than the model's vocabulary", () => {
    expect(() => loadTokenizer(read("tokenizer.json"), read("tokenizer_config.json"), 300)).toThrow(/ids up to 511, but the model's vocabulary has 300/);
    expect(() => loadTokenizer("[]", undefined, 512)).toThrow(/tokenizer\.json: not a JSON object/);
  });
});

describe("tokenizer and chat template", () => {
  it("gives the reference ids of eval.txt exactly", () => {
    const tokenizer = loadTokenizer(read("tokenizer.json"), read("tokenizer_config.json"), 512);
    const ids = tokenizer.encode(readFileSync(path.join(REFERENCE_DIR, "eval.txt"), "utf8"));
    expect(ids).toEqual(readJson<number[]>(path.join(REFERENCE_DIR, "eval_ids.json")));
    expect(tokenizer.piece(403)).toBe("▁Once");
  });

  it("renders ChatML as Qwen does, tool calls and tool responses included", () => {
    const text = renderChat([
      { role: "system", content: "You are helpful." },
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: "", tool_calls: [{ function: { name: "weather", arguments: { city: "Paris" } } }] },
      { role: "tool", content: '{"temp": 21}' },
      { role: "tool", content: '{"rain": false}' },
    ]);
    expect(text).toBe(
      "<|im_start|>system\nYou are helpful.<|im_end|>\n" +
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
        '<|im_start|>assistant\n<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n{"rain": false}\n</tool_response><|im_end|>\n' +
        "<|im_start|>assistant\n",
    );
    expect(renderChat([{ role: "user", content: "hi" }], { template: CHATML_TEMPLATE, addGenerationPrompt: false })).toBe("<|im_start|>user\nhi<|im_end|>\n");
    expect(() => renderChat([], { template: "{% for %}" })).toThrow(/chat template does not parse/);
  });
});
