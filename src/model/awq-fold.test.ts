import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evalIds, loadStories, maxRowRelativeError, ort } from "../../test/model-fixtures.ts";
import { REPO_ROOT } from "../../test/shared-data.ts";
import { gaussian, rng } from "../../test/random.ts";
import { expectedTensors, parseDecoderConfig, type DecoderArchitecture } from "./architecture.ts";
import { buildDecoderGraph } from "./decoder-graph.ts";
import { collectCalibration } from "./evaluate.ts";
import { encodeOnnxModel } from "./onnx-proto.ts";
import { prepareWeights, type PreparedWeights } from "./precision.ts";
import { qualityOf } from "./quality.ts";
import { DecoderSession } from "./session.ts";

async function logits(prepared: PreparedWeights, ids: number[], arch?: DecoderArchitecture): Promise<Float32Array> {
  const model = arch ? { arch } : await loadStories();
  const session = await DecoderSession.create(ort, encodeOnnxModel(buildDecoderGraph(model.arch, prepared)), model.arch, "wasm");
  try {
    return (await session.forward(ids)).logits;
  } finally {
    await session.release();
  }
}

describe("AWQ with its scales folded into the preceding operation", () => {
  it("computes what the dequantized weights compute, on stories260K", async () => {
    const model = await loadStories();
    const calibrationIds = model.tokenizer!.encode(readFileSync(`${REPO_ROOT}/public/models/stories260K/calibration.txt`, "utf8"));
    const calibration = await collectCalibration(model, calibrationIds, { ort, executionProvider: "wasm" });
    const folded = prepareWeights(model.weights, "awq4-g32", { calibration });
    const unfolded = prepareWeights(model.weights, "awq4-g32", { calibration, foldAwqScales: false });
    const decoded = (p: PreparedWeights, name: string) => p.tensors.get(name)!.decoded;
    const original = (name: string) => model.weights.get(name)!.values;

    for (let l = 0; l < model.arch.numLayers; l++) {
      const p = `model.layers.${l}.`;
      // The scales live in the norms of the folded graph only; the unfolded one keeps the model's norms.
      for (const norm of ["input_layernorm", "post_attention_layernorm"]) {
        expect(decoded(unfolded, `${p}${norm}.weight`)).toEqual(original(`${p}${norm}.weight`));
        expect(decoded(folded, `${p}${norm}.weight`)).not.toEqual(original(`${p}${norm}.weight`));
      }
      // q, k, v share one s (the norm's): the folded weights are the unfolded ones times s, column by column.
      const s = original(`${p}input_layernorm.weight`).map((w, c) => w / decoded(folded, `${p}input_layernorm.weight`)[c]!);
      for (const proj of ["q_proj", "k_proj"]) {
        const f = decoded(folded, `${p}self_attn.${proj}.weight`);
        const u = decoded(unfolded, `${p}self_attn.${proj}.weight`);
        for (let i = 0; i < f.length; i++) expect(Math.abs(u[i]! * s[i % s.length]! - f[i]!)).toBeLessThanOrEqual(1e-5 * Math.abs(f[i]!) + 1e-7);
      }
      // up's rows carry down's 1/s; grouped-query attention (4 kv heads, 8 query heads) leaves o_proj unfolded.
      expect(decoded(folded, `${p}mlp.up_proj.weight`)).not.toEqual(decoded(unfolded, `${p}mlp.up_proj.weight`));
      expect(decoded(folded, `${p}self_attn.o_proj.weight`)).toEqual(decoded(unfolded, `${p}self_attn.o_proj.weight`));
    }
    expect(folded.weightBytes).toBe(unfolded.weightBytes);

    const ids = evalIds();
    const [a, b] = [await logits(folded, ids), await logits(unfolded, ids)];
    expect(maxRowRelativeError(a, b, model.arch.vocabSize)).toBeLessThan(1e-5);
    const [pa, pb] = [qualityOf(a, model.arch.vocabSize, ids).ppl, qualityOf(b, model.arch.vocabSize, ids).ppl];
    expect(Math.abs(pa / pb - 1)).toBeLessThan(1e-6);
  }, 120_000);
});

describe("AWQ folding without grouped-query attention", () => {
  it("folds o_proj's scales into v_proj's rows and bias, computing what the dequantized weights compute", async () => {
    // A tiny random Qwen2 with as many kv heads as query heads (v's rows are o's columns) and q/k/v biases.
    const arch = parseDecoderConfig(
      JSON.stringify({ model_type: "qwen2", hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 128, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false, max_position_embeddings: 256 }),
      "config.json",
    );
    const weights = new Map(
      [...expectedTensors(arch)].map(([name, shape], i) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const values = name.endsWith("norm.weight") ? Float32Array.from(gaussian(n, 0.1, i), (v) => 1 + v) : gaussian(n, name.endsWith(".bias") ? 0.5 : 0.15, 1000 + i);
        return [name, { name, shape, values }];
      }),
    );
    const random = rng(7);
    const text = (n: number) => Array.from({ length: n }, () => Math.floor(random() * arch.vocabSize));
    const calibration = await collectCalibration({ arch, weights }, text(200), { ort, executionProvider: "wasm" });
    const folded = prepareWeights(weights, "awq4-g32", { calibration });
    const unfolded = prepareWeights(weights, "awq4-g32", { calibration, foldAwqScales: false });
    const decoded = (p: PreparedWeights, name: string) => p.tensors.get(name)!.decoded;
    for (const name of ["model.layers.0.self_attn.o_proj.weight", "model.layers.1.self_attn.v_proj.bias", "model.layers.1.mlp.up_proj.weight"]) {
      expect(decoded(folded, name), name).not.toEqual(decoded(unfolded, name));
    }
    expect(decoded(unfolded, "model.layers.1.self_attn.v_proj.bias")).toEqual(weights.get("model.layers.1.self_attn.v_proj.bias")!.values);

    const ids = text(120);
    const [a, b] = [await logits(folded, ids, arch), await logits(unfolded, ids, arch)];
    expect(maxRowRelativeError(a, b, arch.vocabSize)).toBeLessThan(1e-5);
    const [pa, pb] = [qualityOf(a, arch.vocabSize, ids).ppl, qualityOf(b, arch.vocabSize, ids).ppl];
    expect(Math.abs(pa / pb - 1)).toBeLessThan(1e-6);
  }, 120_000);
});
