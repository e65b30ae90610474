import { describe, expect, it } from "vitest";
import { gaussian } from "../../test/random.ts";
import { referenceForward } from "../../test/decoder-reference.ts";
import { ort } from "../../test/model-fixtures.ts";
import { BlobSource } from "../formats/source.ts";
import { openModel } from "../formats/model.ts";
import { writeSafetensors } from "../formats/safetensors.ts";
import { expectedTensors, parseDecoderConfig } from "./architecture.ts";
import { openPrecision } from "./evaluate.ts";
import { loadDecoder } from "./load.ts";

/** A tiny random Qwen2: q/k/v biases, an untied head, 3 query heads per kv head, head_dim 16 != hidden/heads. */
const CONFIG = {
  model_type: "qwen2",
  hidden_size: 48,
  intermediate_size: 80,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 96,
  rope_theta: 1_000_000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  max_position_embeddings: 64,
};

describe("a Qwen2-style decoder", () => {
  it("matches a float64 forward written from the maths, biases and untied head included", async () => {
    const text = JSON.stringify(CONFIG);
    const arch = parseDecoderConfig(text, "config.json");
    expect(arch.qkvBias).toBe(true);
    const tensors = [...expectedTensors(arch)].map(([name, shape], i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const isNorm = name.endsWith("norm.weight");
      const values = isNorm ? Float32Array.from(gaussian(n, 0.1, i), (v) => 1 + v) : gaussian(n, name.endsWith(".bias") ? 0.5 : 0.15, 1000 + i);
      return { name, dtype: "F32" as const, shape, data: new Uint8Array(values.buffer) };
    });
    const file = writeSafetensors(tensors);
    const model = await loadDecoder({ config: text }, await openModel([new BlobSource(new Blob([file]), "model.safetensors")]));
    const ids = Array.from({ length: 20 }, (_, i) => (i * 37 + 5) % 96);
    const expected = referenceForward(arch, new Map([...model.weights].map(([n, t]) => [n, t.values])), ids);
    const { session } = await openPrecision(model, "f32", { ort, executionProvider: "wasm" });
    try {
      const first = await session.forward(ids.slice(0, 12));
      const rest = await session.forward(ids.slice(12), first.cache);
      const logits = new Float32Array([...first.logits, ...rest.logits]);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < expected.length; i++) {
        scale = Math.max(scale, Math.abs(expected[i]!));
        diff = Math.max(diff, Math.abs(logits[i]! - expected[i]!));
      }
      expect(diff / scale).toBeLessThan(1e-4);
      // The biases are large enough that a graph ignoring them could not pass.
      const unbiased = referenceForward({ ...arch, qkvBias: false }, new Map([...model.weights].map(([n, t]) => [n, t.values])), ids);
      let biasEffect = 0;
      for (let i = 0; i < expected.length; i++) biasEffect = Math.max(biasEffect, Math.abs(unbiased[i]! - expected[i]!));
      expect(biasEffect / scale).toBeGreaterThan(1e-2);
    } finally {
      await session.release();
    }
  });
});
