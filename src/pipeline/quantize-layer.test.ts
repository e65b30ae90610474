/**
 * GPTQ / AWQ beside registry formats on a real layer: stories260K run on the bundled calibration text gives
 * layer 0's q_proj its real inputs; every format gets the output error on them and on the held-out tokens,
 * equal to the error computed independently from its decoded weights, and GPTQ / AWQ beat round-to-nearest
 * at the same grouping. Without a model, synthetic activations stand in and say so.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openModel, readTensorRows, tensorRowLayout } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { relOutputErrorGram } from "../quant/output-error.ts";
import { getFormat } from "../quant/registry.ts";
import { loadStories, ort } from "../../test/model-fixtures.ts";
import { REPO_ROOT, STORIES_DIR } from "../../test/shared-data.ts";
import { modelCalibration, runCalibration } from "./model-calibration.ts";
import { labFormat, quantizeLayer } from "./quantize-layer.ts";
import type { FormatResult } from "./quantize-tensor.ts";

const calibrationText = readFileSync(path.join(REPO_ROOT, "public/models/stories260K/calibration.txt"), "utf8");
const sources = await openPath(STORIES_DIR);
const opened = await openModel(sources);
afterAll(() => closeSources(sources));
const Q_PROJ = "model.layers.0.self_attn.q_proj.weight";
const tensor = opened.tensors.find((t) => t.name === Q_PROJ)!;

async function weights(): Promise<Float32Array> {
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const w = new Float32Array(rows * cols);
  for await (const c of readTensorRows(tensor)) w.set(c.values, c.firstRow * cols);
  return w;
}

const ok = (r: FormatResult | undefined) => {
  if (!r?.ok) throw new Error(`not measured: ${JSON.stringify(r)}`);
  return r;
};

describe("quantizeLayer with the model's own activations", () => {
  it("measures every format's output error on the calibration and held-out tokens; GPTQ and AWQ beat round-to-nearest", async () => {
    const model = await modelCalibration(await loadStories(), { name: "calibration.txt", text: calibrationText }, { ort, executionProvider: "wasm" });
    const ids = ["int4-g32", "gptq4-g32", "awq4-g32", "awqgptq4-g32", "q4_K", "int4-channel", "gptq4-g128"];
    const run = await quantizeLayer(tensor, ids.map(labFormat), { calibration: async (t, shape) => model.layer(t.name, shape.cols) });
    expect(run.results.map((r) => r.format)).toEqual(ids);
    expect(run.calibration?.source).toBe("model");
    expect(run.calibration?.label).toMatch(/^model run on calibration\.txt, \d+ tokens \(\+\d+ held out\)$/);
    // The whole-model cache keeps these cells apart from synthetic ones (the text and its token count are in the key).
    const key = runCalibration({ model }, true).key;
    expect(key).toContain(`:${model.tokens}:`);
    expect(key).not.toBe(runCalibration({ why: "a lone shard" }, true).key);

    const cal = (await model.layer(Q_PROJ, 64))!;
    expect(cal.stats.tokens + cal.heldOut!.tokens).toBe(model.tokens);
    const w = await weights();
    const shape = { rows: 64, cols: 64 };
    const [int4, gptq, awq, awqGptq, q4k, int4ch, gptq128] = run.results;

    // The registry format's output error, streamed chunk by chunk, is the one of its decoded weights.
    const format = getFormat("int4-g32");
    const y = format.decode(format.encode(w, shape), shape);
    expect(ok(int4).outputError!.calibration).toBeCloseTo(relOutputErrorGram(cal.stats.gram, w, y, shape), 12);
    expect(ok(int4).outputError!.heldOut).toBeCloseTo(relOutputErrorGram(cal.heldOut!.gram, w, y, shape), 12);

    for (const r of [gptq, awq, awqGptq]) {
      const e = ok(r).outputError!;
      expect(e.source).toBe("model");
      expect(e.calibration, r!.format).toBeLessThan(ok(int4).outputError!.calibration);
      expect(e.heldOut).toBeGreaterThan(0);
    }
    // Per channel for both when g128 does not fit the 64-wide rows, and the method says so.
    expect(ok(gptq128).warnings?.join()).toMatch(/not a multiple of the group size 128: quantized per channel/);
    expect(ok(gptq128).outputError!.calibration).toBeLessThan(ok(int4ch).outputError!.calibration);
    expect(ok(gptq).size.bitsPerWeight).toBe(4 + (64 * 2 * (2 + 0.5) * 8) / (64 * 64));
    expect(q4k!.ok).toBe(false);
  }, 120_000);
});

describe("quantizeLayer without a model", () => {
  it("uses synthetic activations, says so with the reason, and still ranks GPTQ below round-to-nearest on them", async () => {
    const run = await quantizeLayer(tensor, ["gptq4-g32", "int4-g32"].map(labFormat), { syntheticWhy: "a lone shard" });
    expect(run.calibration).toMatchObject({ source: "synthetic", label: "synthetic activations, 256 tokens (a lone shard)" });
    expect(runCalibration({ why: "a lone shard" }, true)).toEqual({ source: "synthetic", label: "synthetic activations (a lone shard)", key: "synthetic" });
    const [gptq, int4] = run.results.map(ok);
    expect(gptq!.outputError).toMatchObject({ source: "synthetic" });
    expect(gptq!.outputError!.heldOut).toBeUndefined();
    expect(gptq!.outputError!.calibration).toBeLessThan(int4!.outputError!.calibration);
  });

  it("measures no output error when only registry formats are asked for", async () => {
    const run = await quantizeLayer(tensor, [labFormat("int4-g32")]);
    expect(run.calibration).toBeUndefined();
    expect(ok(run.results[0]).outputError).toBeUndefined();
    // So the cache does not serve this int4-g32 cell (no output error) to a run with a GPTQ setting (synthetic ones).
    expect(runCalibration({ why: "a lone shard" }, false).key).toBe("none");
  });
});
