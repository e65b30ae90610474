import { describe, expect, it } from "vitest";
import { evalIds, loadStories, ort } from "../../test/model-fixtures.ts";
import { buildDecoderGraph, type Float16Mode } from "./decoder-graph.ts";
import { encodeOnnxModel, ONNX_TYPE, type OnnxModel } from "./onnx-proto.ts";
import { prepareWeights } from "./precision.ts";
import { qualityOf } from "./quality.ts";
import { DecoderSession, float16ModeFor } from "./session.ts";

const floatTypes = (model: OnnxModel) =>
  new Set(model.graph.initializers.filter((t) => t.dataType === ONNX_TYPE.float || t.dataType === ONNX_TYPE.float16).map((t) => t.dataType));

async function logitsOf(mode: Float16Mode, ids: number[]): Promise<{ logits: Float32Array; graph: OnnxModel }> {
  const model = await loadStories();
  const graph = buildDecoderGraph(model.arch, prepareWeights(model.weights, "f16"), { float16: mode });
  const session = await DecoderSession.create(ort, encodeOnnxModel(graph), model.arch, "wasm");
  try {
    return { logits: (await session.forward(ids)).logits, graph };
  } finally {
    await session.release();
  }
}

describe("the f16 precision on providers with and without fp16", () => {
  it("picks fp16 compute only for WebGPU with shader-f16", () => {
    expect(float16ModeFor("webgpu", true)).toBe("compute");
    expect(float16ModeFor("webgpu", false)).toBe("float32");
    expect(float16ModeFor("wasm", false)).toBe("cast");
  });

  it("builds the cast, float32 and fp16-compute graphs, and all three run on wasm with the f16 weights' numbers", async () => {
    const ids = evalIds();
    const cast = await logitsOf("cast", ids);
    const asFloat32 = await logitsOf("float32", ids);
    const compute = await logitsOf("compute", ids);
    // fp16 initializers Cast at run time, the same values stored as float32, the whole graph in float16.
    expect(floatTypes(cast.graph)).toEqual(new Set([ONNX_TYPE.float, ONNX_TYPE.float16]));
    expect(floatTypes(asFloat32.graph)).toEqual(new Set([ONNX_TYPE.float]));
    expect(floatTypes(compute.graph)).toEqual(new Set([ONNX_TYPE.float16]));
    for (const io of [...compute.graph.graph.inputs, ...compute.graph.graph.outputs].filter((v) => v.name !== "input_ids")) {
      expect(io.elemType, io.name).toBe(ONNX_TYPE.float);
    }
    // Casting an fp16 weight to float32 at run time or before is the same number.
    expect(asFloat32.logits).toEqual(cast.logits);
    // fp16 activations round every intermediate to 11 significant bits: close to, not equal to, fp32 compute.
    const V = 512;
    const fp32Compute = qualityOf(cast.logits, V, ids);
    const fp16Compute = qualityOf(compute.logits, V, ids);
    let maxDiff = 0;
    for (let i = 0; i < cast.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(compute.logits[i]! - cast.logits[i]!));
    expect(maxDiff).toBeGreaterThan(0);
    // (0.08 % on perplexity here, measured; the top-1 token agrees as often.)
    expect(Math.abs(fp16Compute.ppl / fp32Compute.ppl - 1)).toBeLessThan(2e-3);
    expect(Math.abs(fp16Compute.top1Accuracy - fp32Compute.top1Accuracy)).toBeLessThan(0.01);
  });
});
