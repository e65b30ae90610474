import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evalIds, loadStories, maxRowRelativeError, ort } from "../../test/model-fixtures.ts";
import { REPO_ROOT } from "../../test/shared-data.ts";
import { getFormat } from "../quant/registry.ts";
import { chunkedLogits, collectCalibration, EVAL_CHUNK_TOKENS, evaluatePrecisions, generateAcrossPrecisions, openPrecision } from "./evaluate.ts";
import { prepareWeights } from "./precision.ts";
import { argmax } from "./quality.ts";
import { DecoderSession } from "./session.ts";

describe("precisions of stories260K against f32", () => {
  it("orders KL divergence as the formats' weight error, counts memory and names the fallbacks", async () => {
    const model = await loadStories();
    const report = await evaluatePrecisions(model, evalIds(), ["q8_0", "q4_K", "q2_K", "int4-g32"], { ort, executionProvider: "wasm" });
    console.table(report.precisions.map(({ fallbacks, ...p }) => ({ ...p, fallbacks: fallbacks.length })));
    const [f32, q8, q4k, q2k, int4] = report.precisions;
    expect(report.precisions.map((p) => p.name)).toEqual(["f32", "q8_0", "q4_K", "q2_K", "int4-g32"]);
    expect(f32!.kldMax).toBe(0);
    expect(f32!.top1Agree).toBe(1);
    expect(q8!.kldMean).toBeGreaterThan(0);
    expect(q8!.kldMean).toBeLessThan(q4k!.kldMean);
    expect(q4k!.kldMean).toBeLessThan(q2k!.kldMean);
    expect(q8!.top1Agree).toBeGreaterThan(q2k!.top1Agree);
    // f32 weights are 4 bytes a parameter; q8_0 stores 34 bytes per 32 weights except the f16 fallbacks.
    expect(f32!.weightsBytes).toBe(260_032 * 4);
    const downProj = 64 * 172;
    const matrices = 260_032 - 11 * 64 - 5 * downProj;
    expect(q8!.weightsBytes).toBe((matrices / 32) * 34 + 5 * downProj * 2 + 11 * 64 * 4);
    // K-quants need rows of 256: rows of 64 take llama.cpp's fallback, down_proj's rows of 172 go to f16.
    expect(new Set(q4k!.fallbacks.map((f) => f.to))).toEqual(new Set(["q5_0", "f16"]));
    expect(q4k!.fallbacks.find((f) => f.tensor === "model.layers.0.mlp.down_proj.weight")!.to).toBe("f16");
    expect(int4!.fallbacks.map((f) => f.to)).toEqual(Array(5).fill("int4-channel"));
    for (const p of report.precisions.slice(1)) expect(p.deltaPpl).toBeCloseTo(p.ppl - f32!.ppl, 12);
  });

  it("continues a prompt at each precision and marks where each departs from f32", async () => {
    const model = await loadStories();
    const prompt = model.tokenizer!.encode("Once upon a time");
    const greedy = await generateAcrossPrecisions(model, prompt, 40, { kind: "greedy" }, ["f16", "int2-g32"], { ort, executionProvider: "wasm" });
    expect(greedy.map((g) => g.name)).toEqual(["f32", "f16", "int2-g32"]);
    expect(greedy[1]!.departsAt).toBe(-1); // f16 weights change no greedy choice here
    expect(greedy[2]!.departsAt).toBeGreaterThanOrEqual(0);
    expect(greedy[2]!.ids[greedy[2]!.departsAt]).not.toBe(greedy[0]!.ids[greedy[2]!.departsAt]);
    // The same seed gives the same sample; f32 and f16 agree on it too.
    const sampled = await generateAcrossPrecisions(model, prompt, 30, { kind: "sample", temperature: 1, seed: 7 }, ["f16"], { ort, executionProvider: "wasm" });
    const again = await generateAcrossPrecisions(model, prompt, 30, { kind: "sample", temperature: 1, seed: 7 }, [], { ort, executionProvider: "wasm" });
    expect(sampled[0]!.ids).toEqual(again[0]!.ids);
    expect(sampled[0]!.ids).not.toEqual(greedy[0]!.ids.slice(0, 30));
  });

  it("refuses a format that has no fallback for the rows, naming the tensor", async () => {
    const model = await loadStories();
    expect(getFormat("q8_K").checkRowLength(64).ok).toBe(false);
    expect(() => prepareWeights(model.weights, "q8_K")).toThrow(/tensor "model\.embed_tokens\.weight": .*no fallback/);
    expect(() => prepareWeights(model.weights, "q9_Z")).toThrow(/unknown precision "q9_Z"/);
  });
});

describe("calibration activations", () => {
  it("gives every linear layer its input on the bundled calibration text, which is not the evaluation text", async () => {
    const model = await loadStories();
    const text = readFileSync(`${REPO_ROOT}/public/models/stories260K/calibration.txt`, "utf8");
    const evalText = readFileSync(`${REPO_ROOT}/public/models/stories260K/eval.txt`, "utf8");
    expect(text).not.toBe(evalText);
    const ids = model.tokenizer!.encode(text);
    const calibration = await collectCalibration(model, ids, { ort, executionProvider: "wasm" });
    const linears = [...model.weights.values()].filter((t) => t.shape.length === 2 && t.name.includes(".layers."));
    expect([...calibration.keys()].sort()).toEqual(linears.map((t) => t.name).sort());
    for (const t of linears) expect(calibration.get(t.name)!.length, t.name).toBe(ids.length * t.shape[1]!);
    // q, k and v read one input; down_proj reads SwiGLU's 172-wide product.
    expect(calibration.get("model.layers.2.self_attn.q_proj.weight")).toBe(calibration.get("model.layers.2.self_attn.v_proj.weight"));
    expect(calibration.get("model.layers.2.mlp.down_proj.weight")!.some((v) => v !== 0)).toBe(true);
  });
});

describe("GPTQ and AWQ precisions", () => {
  it("calibrate on the second bundled text and come closer to f32 than round-to-nearest at the same grouping", async () => {
    const model = await loadStories();
    const calibrationIds = model.tokenizer!.encode(readFileSync(`${REPO_ROOT}/public/models/stories260K/calibration.txt`, "utf8"));
    await expect(evaluatePrecisions(model, evalIds(), ["gptq4-g32"], { ort, executionProvider: "wasm" })).rejects.toThrow(/gptq4-g32 need a calibration text/);
    const report = await evaluatePrecisions(model, evalIds(), ["int4-asym-g32", "gptq4-g32", "awq4-g32"], { ort, executionProvider: "wasm", calibrationIds });
    const [, rtn, gptq, awq] = report.precisions;
    console.table(report.precisions.map((p) => ({ name: p.name, ppl: p.ppl, kldMean: p.kldMean, top1Agree: p.top1Agree, bytes: p.weightsBytes })));
    expect(gptq!.kldMean).toBeLessThan(rtn!.kldMean);
    expect(awq!.kldMean).toBeLessThan(rtn!.kldMean);
    // down_proj's rows of 172 are quantized per channel; the tied embedding stays f16.
    expect(gptq!.fallbacks.map((f) => f.to).sort()).toEqual(["f16", ...Array(5).fill("gptq4-channel")]);
    expect(awq!.fallbacks.find((f) => f.tensor === "model.embed_tokens.weight")!.to).toBe("f16");
  });
});

describe("cancelling a run", () => {
  it("stops an evaluation at the next chunk, rejects with AbortError and releases every session", async () => {
    const model = await loadStories();
    const ids = evalIds();
    const chunks = Math.ceil(ids.length / EVAL_CHUNK_TOKENS);
    expect(chunks).toBeGreaterThan(2);
    const controller = new AbortController();
    const steps: string[] = [];
    let precision = "";
    let stepsAfterAbort = 0;
    const run = evaluatePrecisions(model, ids, ["q8_0", "q4_K"], {
      ort,
      executionProvider: "wasm",
      signal: controller.signal,
      onProgress: (_done, _total, name) => (precision = name),
      onStep: (done) => {
        if (controller.signal.aborted) stepsAfterAbort++;
        steps.push(`${precision}:${done}`);
        // Mid-session: after the first chunk of q8_0, with the session open and more chunks to run.
        if (precision === "q8_0") controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(steps).toEqual([...Array.from({ length: chunks }, (_, i) => `f32:${Math.min((i + 1) * EVAL_CHUNK_TOKENS, ids.length)}`), `q8_0:${EVAL_CHUNK_TOKENS}`]);
    expect(stepsAfterAbort).toBe(0);
    expect(DecoderSession.live).toBe(0);
  });

  it("stops a generation at the next token and releases its session", async () => {
    const model = await loadStories();
    const controller = new AbortController();
    let picked = 0;
    const pick = (logits: Float32Array) => {
      if (++picked === 3) controller.abort();
      return argmax(logits);
    };
    const { session } = await openPrecision(model, "q8_0", { ort, executionProvider: "wasm" });
    try {
      await expect(session.generate(evalIds().slice(0, 8), 40, pick, [], controller.signal)).rejects.toMatchObject({ name: "AbortError" });
      expect(picked).toBe(3);
    } finally {
      await session.release();
    }
    const aborted = AbortSignal.abort();
    await expect(generateAcrossPrecisions(model, [1], 4, { kind: "greedy" }, ["q8_0"], { ort, executionProvider: "wasm", signal: aborted })).rejects.toMatchObject({ name: "AbortError" });
    expect(DecoderSession.live).toBe(0);
  });

  it("gives the one pass's logits in chunks", async () => {
    const model = await loadStories();
    const ids = evalIds();
    const { session } = await openPrecision(model, "f32", { ort, executionProvider: "wasm" });
    try {
      const whole = (await session.forward(ids)).logits;
      const chunked = await chunkedLogits(session, ids, { chunkTokens: 100 });
      expect(maxRowRelativeError(chunked, whole, model.arch.vocabSize)).toBeLessThan(1e-5);
    } finally {
      await session.release();
    }
  });
});
