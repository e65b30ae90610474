import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { STORIES_DIR, STORIES_SHARDED_DIR } from "../../test/shared-data.ts";
import { openModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { parseConfig } from "./config.ts";
import { PRESETS, presetConfig } from "./presets.ts";
import { activeParams, modelTensors, totalParams } from "./tensors.ts";

/** Hugging Face names -> the GGUF names convert_hf_to_gguf.py writes (gguf-py's tensor map). */
const HF_TO_GGUF: [RegExp, string][] = [
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.weight$/, "blk.$1.attn_q.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.weight$/, "blk.$1.attn_k.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.weight$/, "blk.$1.attn_v.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, "blk.$1.ffn_gate.weight"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
];
const ggufName = (hf: string) => {
  for (const [re, to] of HF_TO_GGUF) if (re.test(hf)) return hf.replace(re, to);
  return `unmapped ${hf}`;
};

describe("parameter counts from config.json", () => {
  for (const dir of [STORIES_DIR, STORIES_SHARDED_DIR]) {
    it(`match the real shard headers tensor by tensor (${path.basename(dir)})`, async () => {
      const config = parseConfig(JSON.parse(readFileSync(path.join(STORIES_DIR, "config.json"), "utf8")), "stories260K");
      const sources = await openPath(dir);
      try {
        const model = await openModel(sources);
        const fromHeader = new Map(model.tensors.map((t) => [ggufName(t.name), { params: t.params, shape: t.shape }]));
        const computed = modelTensors(config);
        expect(new Set(computed.map((t) => t.name))).toEqual(new Set(fromHeader.keys()));
        for (const t of computed) {
          const real = fromHeader.get(t.name)!;
          expect(real.params, t.name).toBe(t.params);
          expect(real.shape, t.name).toEqual(t.rows === 1 ? [t.cols] : [t.rows, t.cols]);
        }
        expect(totalParams(computed)).toBe(model.totalParams);
        expect(model.totalParams).toBe(260_032);
      } finally {
        await closeSources(sources);
      }
    });
  }

  it("match the totals model cards publish, within their rounding", () => {
    // Cards round to 2-3 significant figures; Qwen2.5-32B's card says 32.5B where its safetensors hold 32.76B
    // (the hub's own count, "32.8B params"), hence 1 %.
    for (const p of PRESETS) {
      const billions = totalParams(modelTensors(presetConfig(p.id))) / 1e9;
      expect(Math.abs(billions - p.publishedBillions!) / p.publishedBillions!, `${p.id}: ${billions}`).toBeLessThan(0.01);
    }
    expect(totalParams(modelTensors(presetConfig("qwen2.5-7b")))).toBe(7_615_616_512);
    expect(totalParams(modelTensors(presetConfig("llama-3.1-8b")))).toBe(8_030_261_248);
  });

  it("counts Mixtral's active parameters as 2 of 8 experts", () => {
    const c = presetConfig("mixtral-8x7b");
    expect(activeParams(c, modelTensors(c)) / 1e9).toBeCloseTo(12.88, 1); // Mistral: "12.9B active parameters"
  });
});
