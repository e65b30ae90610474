import path from "node:path";
import { describe, expect, it } from "vitest";
import { evalIds, loadStories, maxRowRelativeError, ort, readF32, readJson, REFERENCE_DIR, referenceLogits } from "../../test/model-fixtures.ts";
import { buildDecoderGraph, CALIBRATION_POINTS, calibrationOutputName } from "./decoder-graph.ts";
import { openPrecision } from "./evaluate.ts";
import { encodeOnnxModel } from "./onnx-proto.ts";
import { prepareWeights } from "./precision.ts";
import { argmax, qualityOf } from "./quality.ts";
import { DecoderSession } from "./session.ts";

describe("stories260K f32 in onnxruntime-web (wasm)", () => {
  it("reproduces the reference logits, perplexity and the linear layers' inputs", async () => {
    const model = await loadStories();
    const { session } = await openPrecision(model, "f32", { ort, executionProvider: "wasm" }, { calibrationOutputs: true });
    try {
      const ids = evalIds();
      const { logits, calibration } = await session.forward(ids);
      expect(maxRowRelativeError(logits, referenceLogits(), 512)).toBeLessThan(1e-4);
      const nll = readJson<{ perplexity: number; top1_accuracy: number }>(path.join(REFERENCE_DIR, "nll_eval.json"));
      const q = qualityOf(logits, 512, ids);
      expect(q.ppl).toBeCloseTo(nll.perplexity, 4);
      expect(q.top1Accuracy).toBeCloseTo(nll.top1_accuracy, 6);
      for (let l = 0; l < 5; l++) {
        for (const point of CALIBRATION_POINTS) {
          const name = calibrationOutputName(l, point);
          const reference = readF32(path.join(REFERENCE_DIR, "calib", `${name}.f32`));
          const cols = reference.length / ids.length;
          expect(maxRowRelativeError(calibration.get(name)!, reference, cols), name).toBeLessThan(1e-4);
        }
      }
    } finally {
      await session.release();
    }
  });

  it("continues the reference prompt greedily token for token, with the key/value cache", async () => {
    const model = await loadStories();
    const greedy = readJson<{ prompt: string; prompt_ids: number[]; generated_ids: number[]; text: string }>(path.join(REFERENCE_DIR, "greedy.json"));
    expect(model.tokenizer!.encode(greedy.prompt)).toEqual(greedy.prompt_ids);
    const { session } = await openPrecision(model, "f32", { ort, executionProvider: "wasm" });
    try {
      const generated = await session.generate(greedy.prompt_ids, greedy.generated_ids.length, argmax);
      expect(generated).toEqual(greedy.generated_ids);
      expect(model.tokenizer!.decode([...greedy.prompt_ids, ...generated])).toBe(greedy.text);
      // Cached steps give the logits of one full pass.
      const ids = evalIds().slice(0, 40);
      const full = (await session.forward(ids)).logits;
      const head = await session.forward(ids.slice(0, 30));
      const tail = (await session.forward(ids.slice(30), head.cache)).logits;
      expect(maxRowRelativeError(tail, full.subarray(30 * 512), 512)).toBeLessThan(1e-5);
    } finally {
      await session.release();
    }
  });
});

describe("MatMulNBits weights", () => {
  // int4-g32 (172-wide rows fall back to int4-channel: one padded block of 256), asymmetric int8, per-channel int4.
  it.each(["int4-g32", "int8-asym-g32", "int4-asym-channel", "int8-g128"])("%s computes what its decoded weights compute", async (precision) => {
    const model = await loadStories();
    const ids = evalIds().slice(0, 64);
    const run = async (matMulNBits: boolean) => {
      const prepared = prepareWeights(model.weights, precision, { matMulNBits });
      const kinds = new Set([...prepared.tensors.values()].map((t) => t.weight.kind));
      expect(kinds.has("nbits")).toBe(matMulNBits);
      const session = await DecoderSession.create(ort, encodeOnnxModel(buildDecoderGraph(model.arch, prepared)), model.arch, "wasm");
      try {
        return (await session.forward(ids)).logits;
      } finally {
        await session.release();
      }
    };
    const packed = await run(true);
    const decoded = await run(false);
    expect(maxRowRelativeError(packed, decoded, 512)).toBeLessThan(1e-4);
  });
});
