import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evalIds, loadStories, maxRowRelativeError, ort } from "../../test/model-fixtures.ts";
import { REPO_ROOT } from "../../test/shared-data.ts";
import { buildDecoderGraph } from "./decoder-graph.ts";
import { collectCalibration } from "./evaluate.ts";
import { encodeOnnxModel } from "./onnx-proto.ts";
import { prepareWeights, type PreparedWeights } from "./precision.ts";
import { qualityOf } from "./quality.ts";
import { DecoderSession } from "./session.ts";

async function logits(prepared: PreparedWeights, ids: number[]): Promise<Float32Array> {
  const model = await loadStories();
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
