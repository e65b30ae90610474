import { inject, describe, expect, it } from "vitest";
import * as ort from "onnxruntime-web/webgpu";
import { BlobSource } from "../formats/source.ts";
import { openModel } from "../formats/model.ts";
import { evaluatePrecisions } from "./evaluate.ts";
import { loadDecoder } from "./load.ts";

const storiesUrl = (file: string) => `/@fs${inject("sharedDir")}/models/stories260K/${file}`;
const text = async (file: string) => (await fetch(storiesUrl(file))).text();

describe("stories260K in onnxruntime-web in Chromium", () => {
  // WebGPU runs on SwiftShader here: a session takes about a minute to compile its shaders, so f32 only.
  it("gives the same f32 perplexity on the WebGPU and wasm providers, and the reference's", async () => {
    ort.env.wasm.numThreads = 1;
    const blob = await (await fetch(storiesUrl("model.safetensors"))).blob();
    const opened = await openModel([new BlobSource(blob, "model.safetensors")]);
    const model = await loadDecoder({ config: await text("config.json"), tokenizer: await text("tokenizer.json"), tokenizerConfig: await text("tokenizer_config.json") }, opened);
    const ids = model.tokenizer!.encode(await text("reference/eval.txt"));
    const reference = JSON.parse(await text("reference/nll_eval.json")) as { perplexity: number };
    const [wasm] = (await evaluatePrecisions(model, ids, [], { ort, executionProvider: "wasm" })).precisions;
    const [webgpu] = (await evaluatePrecisions(model, ids, [], { ort, executionProvider: "webgpu" })).precisions;
    expect(Math.abs(wasm!.ppl / reference.perplexity - 1)).toBeLessThan(1e-5);
    expect(Math.abs(webgpu!.ppl / wasm!.ppl - 1)).toBeLessThan(1e-3);
  }, 300_000);
});
