import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ggufGoldenBytes } from "../../test/gguf-golden.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { parseGgufHeader } from "../formats/gguf.ts";
import { parseConfig } from "./config.ts";
import { ggufFileEstimate, ggufTensorTypes, useMoreBits } from "./gguf-size.ts";
import { presetConfig } from "./presets.ts";
import { modelTensors } from "./tensors.ts";

const storiesJson = JSON.parse(readFileSync(path.join(STORIES_DIR, "config.json"), "utf8")) as Record<string, unknown>;
// llama.cpp's llama2.c converter wrote output.weight separately (golden/gguf/README.md): the files are untied.
const untied = parseConfig({ ...storiesJson, tie_word_embeddings: false }, "stories260K");

/**
 * The golden files come from llama.cpp c392e509, whose fallback for q2_K/q3_K was IQ4_NL; the rules quoted here
 * (and the registry's fallback) are the later ones, Q4_0. Both are 18-byte blocks of 32, so bytes are equal.
 */
const sameFallback = (name: string) => (name === "IQ4_NL" ? "Q4_0" : name);

describe("GGUF types and sizes against llama-quantize's own files", () => {
  for (const [file, ftype] of [["F32", "f32"], ["Q4_K_M", "q4_K_M"], ["Q2_K", "q2_K"]] as const) {
    it(`picks every tensor's type and bytes as llama-quantize did for ${file}`, () => {
      const bytes = ggufGoldenBytes(file);
      const header = parseGgufHeader(bytes, file);
      const estimate = ggufFileEstimate(untied, modelTensors(untied), ftype);
      const chosen = new Map(estimate.tensors.map((c) => [c.tensor.name, c]));
      expect(estimate.tensors.length).toBe(header.tensors.length);
      for (const t of header.tensors) {
        const c = chosen.get(t.name)!;
        expect(c.type.name, t.name).toBe(sameFallback(t.type.name));
        expect(c.bytes, t.name).toBe(t.nbytes);
      }
      expect(estimate.tensorBytes).toBe(header.tensors.reduce((s, t) => s + t.nbytes, 0));
      // Only the metadata is estimated (512 SentencePiece tokens): within 10 % of the real header, which
      // makes the whole file within 0.5 %.
      expect(Math.abs(estimate.metadataBytes - header.dataOffset) / header.dataOffset).toBeLessThan(0.1);
      expect(Math.abs(estimate.fileBytes - bytes.length) / bytes.length).toBeLessThan(0.005);
      if (file !== "F32") expect(estimate.fallbacks).toBe(36); // "36 of 37 tensor(s) required fallback quantization"
    });
  }

  it("gives a tied token_embd the output rule (Q8_0 here), as the golden README's experiment found", () => {
    const tied = parseConfig(storiesJson, "stories260K");
    for (const ftype of ["q4_K_M", "q2_K"] as const) {
      const embd = ggufTensorTypes(tied, modelTensors(tied), ftype).find((c) => c.tensor.name === "token_embd.weight")!;
      expect(embd.type.name).toBe("Q8_0");
    }
  });

  it("use_more_bits marks the first and last eighth and every third layer between", () => {
    expect([...Array(28).keys()].filter((i) => useMoreBits(i, 28))).toEqual([0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    expect([...Array(5).keys()].filter((i) => useMoreBits(i, 5))).toEqual([2, 4]);
  });

  it("bumps attn_v of an 80-layer GQA model (LLM_TYPE_70B) and falls back where 256 does not divide the rows", () => {
    const c = presetConfig("qwen2.5-72b");
    const types = ggufTensorTypes(c, modelTensors(c), "q4_K_M");
    const v = types.filter((t) => t.tensor.role === "attn_v").map((t) => t.type.name);
    expect(new Set(v)).toEqual(new Set(["Q5_K", "Q6_K"])); // Q4_K -> Q5_K, and Q6_K where use_more_bits
    // ffn_down rows are 29568 = 115.5 x 256: q4_K falls back to q5_0, q6_K to q8_0.
    const down = types.filter((t) => t.tensor.role === "ffn_down");
    expect(new Set(down.map((t) => `${t.mixture}->${t.type.name}`))).toEqual(new Set(["q4_K->Q5_0", "q6_K->Q8_0"]));
  });

  it("agrees with the sizes of published Qwen2.5 GGUF files within 0.5 %", () => {
    // File sizes as the Hugging Face hub lists them (GB, 2 decimals) for bartowski/Qwen2.5-{7B,14B,32B,72B}-Instruct-GGUF,
    // made by llama-quantize with an importance matrix (which changes values, not types or sizes). Written from
    // the hub's listing as remembered: the network is closed here, so they could not be fetched again.
    const published: Record<string, Record<string, number>> = {
      "qwen2.5-7b": { q8_0: 8.1, q6_K: 6.25, q5_K_M: 5.44, q4_K_M: 4.68, q3_K_M: 3.81, q2_K: 3.02 },
      "qwen2.5-14b": { q8_0: 15.7, q6_K: 12.12, q5_K_M: 10.51, q4_K_M: 8.99, q3_K_M: 7.34, q2_K: 5.77 },
      "qwen2.5-32b": { q8_0: 34.82, q6_K: 26.89, q5_K_M: 23.26, q4_K_M: 19.85, q3_K_M: 15.94, q2_K: 12.31 },
      "qwen2.5-72b": { q8_0: 77.26, q6_K: 64.35, q5_K_M: 54.45, q4_K_M: 47.42, q3_K_M: 37.7, q2_K: 29.81 },
    };
    for (const [model, sizes] of Object.entries(published)) {
      const c = presetConfig(model);
      const tensors = modelTensors(c);
      for (const [ftype, gb] of Object.entries(sizes)) {
        const estimate = ggufFileEstimate(c, tensors, ftype as "q8_0").fileBytes / 1e9;
        expect(Math.abs(estimate - gb) / gb, `${model} ${ftype}: ${estimate.toFixed(3)} GB`).toBeLessThan(0.005);
      }
    }
  });
});
