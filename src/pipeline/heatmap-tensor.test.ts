/**
 * heatmapTensor on the CPU path, on stories260K: the pooled panels agree with the formats' own encode/decode
 * and with quantizeTensor's metrics; zoomed views show single weights; formats that cannot take a tensor
 * say why; NaN weights are marked in the weights panel and fail the formats with their position.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openModel, type OpenedModel } from "../formats/model.ts";
import { writeSafetensors } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import { encodeFromF32 } from "../formats/dtypes.ts";
import { NodeFileSource } from "../node/file-source.ts";
import { heatmapValues } from "../quant/heatmap.ts";
import { weightBlock } from "../quant/block-params.ts";
import { getFormat } from "../quant/registry.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { gaussian } from "../../test/random.ts";
import { heatmapTensor } from "./heatmap-tensor.ts";
import { activationCalibration, calibratedTensor, syntheticActivations } from "./calibrated-tensor.ts";
import { inspectWeight } from "./inspect-weight.ts";
import { quantizeTensor } from "./quantize-tensor.ts";

let source: NodeFileSource;
let model: OpenedModel;

beforeAll(async () => {
  source = await NodeFileSource.open(path.join(STORIES_DIR, "model.safetensors"));
  model = await openModel([source]);
});
afterAll(() => source.close());

const tensorOf = (name: string) => model.tensors.find((t) => t.name === name)!;

describe("heatmapTensor", () => {
  it("pools the whole tensor: the largest cell error is the format's max |error|, the weights' mean the tensor's", async () => {
    const t = tensorOf("model.layers.1.mlp.gate_proj.weight"); // 172 x 64
    const formats = ["q4_0", "int4-g32", "nf4", "int8-channel"].map(getFormat);
    const view = { row0: 0, col0: 0, rows: 172, cols: 64 };
    const map = await heatmapTensor(t, formats, view, { cols: 32, rows: 40 }, { pieceBytes: 7 * 64 * 4 });
    expect(map.grid).toMatchObject({ gridRows: 40, gridCols: 32 });
    expect(map.panels.map((p) => p.format)).toEqual(["weights", "q4_0", "int4-g32", "nf4", "int8-channel"]);
    const quantized = await quantizeTensor(t, formats);
    for (const [i, panel] of map.panels.entries()) {
      if (!panel.ok) throw new Error(`${panel.format}: ${panel.error.message}`);
      expect(panel.ranOn).toBe("cpu");
      expect(panel.cells.count.reduce((a, b) => a + b, 0)).toBe(172 * 64);
      if (i === 0) {
        expect(Math.max(...heatmapValues(panel.cells, "abs", "max"))).toBe(0);
        continue;
      }
      const r = quantized.results[i - 1]!;
      if (!r.ok) throw new Error(r.error.message);
      expect(Math.max(...heatmapValues(panel.cells, "abs", "max"))).toBe(r.metrics.maxAbsErr);
      const sumAbs = panel.cells.sumAbsE.reduce((a, b) => a + b, 0);
      expect(sumAbs).toBeGreaterThan(0);
    }
    // int4 loses more than int8, cell by cell on average.
    const meanAbs = (k: number) => {
      const p = map.panels[k]!;
      if (!p.ok) throw new Error("failed");
      const v = heatmapValues(p.cells, "abs", "mean");
      return v.reduce((a, b) => a + b, 0) / v.length;
    };
    expect(meanAbs(2)).toBeGreaterThan(4 * meanAbs(4));
  });

  it("zoomed in, shows each weight's own error, equal to the CPU reference's", async () => {
    const t = tensorOf("model.layers.0.self_attn.q_proj.weight"); // 64 x 64
    const q4 = getFormat("q4_1");
    const view = { row0: 10, col0: 20, rows: 5, cols: 7 };
    const map = await heatmapTensor(t, [q4], view, { cols: 400, rows: 300 });
    expect(map.grid).toMatchObject({ gridRows: 5, gridCols: 7 });
    const x = new Float32Array(64 * 64);
    const bytes = await source.read(t.offset, t.bytes);
    x.set(new Float32Array(bytes.buffer, bytes.byteOffset, 64 * 64));
    const y = q4.decode(q4.encode(x, { rows: 64, cols: 64 }), { rows: 64, cols: 64 });
    const panel = map.panels[1]!;
    if (!panel.ok) throw new Error(panel.error.message);
    const signed = heatmapValues(panel.cells, "signed", "mean");
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 7; j++) {
        const at = (10 + i) * 64 + 20 + j;
        expect(signed[i * 7 + j]).toBe(Math.fround(y[at]! - x[at]!));
      }
    }
  });

  it("says why a format cannot take the tensor, and what llama.cpp would use", async () => {
    const t = tensorOf("model.layers.0.mlp.down_proj.weight"); // 64 x 172
    const map = await heatmapTensor(t, [getFormat("q4_K"), getFormat("q8_0")], { row0: 0, col0: 0, rows: 64, cols: 172 }, { cols: 50, rows: 50 });
    for (const panel of map.panels.slice(1)) {
      expect(panel.ok).toBe(false);
      if (panel.ok) continue;
      expect(panel.error.problem).toBe("row-length");
      expect(panel.error.message).toMatch(/model\.layers\.0\.mlp\.down_proj\.weight.*172/);
    }
    // 172 is not a multiple of 32 either: llama.cpp keeps such tensors in f16.
    expect(map.panels.slice(1).map((p) => (p.ok ? "ok" : p.error.fallback))).toEqual(["f16", "f16"]);
    expect(map.panels[0]!.ok).toBe(true);
  });

  it("marks NaN weights in the weights panel and fails the formats at the right row", async () => {
    const x = gaussian(40 * 64, 0.02, 9);
    x[33 * 64 + 5] = NaN;
    const bytes = writeSafetensors([{ name: "w", dtype: "F32", shape: [40, 64], data: encodeFromF32("F32", Array.from(x)) }]);
    const m = await openModel([new BlobSource(new Blob([bytes]), "nan.safetensors")]);
    const map = await heatmapTensor(m.tensors[0]!, [getFormat("q8_0")], { row0: 0, col0: 0, rows: 40, cols: 64 }, { cols: 64, rows: 40 }, { pieceBytes: 8 * 64 * 4 });
    const weights = map.panels[0]!;
    if (!weights.ok) throw new Error("weights panel failed");
    const v = heatmapValues(weights.cells, "weights", "mean");
    expect([...v.keys()].filter((i) => Number.isNaN(v[i]))).toEqual([33 * 64 + 5]);
    const q8 = map.panels[1]!;
    expect(q8.ok).toBe(false);
    if (!q8.ok) expect(q8.error).toMatchObject({ problem: "non-finite", row: 33, col: 5 });
  });
});

describe("heatmapTensor histograms and block scales", () => {
  it("counts every weight of the view once, and maps each weight's block scale", async () => {
    const t = tensorOf("model.layers.1.mlp.gate_proj.weight"); // 172 x 64
    const q40 = getFormat("q4_0");
    const view = { row0: 30, col0: 8, rows: 50, cols: 40 };
    const map = await heatmapTensor(t, [q40, getFormat("f16")], view, { cols: 64, rows: 64 }, { pieceBytes: 9 * 64 * 4 });
    const [weights, q4, f16] = map.panels;
    if (!weights!.ok || !q4!.ok || !f16!.ok) throw new Error("a panel failed");
    const total = (h: Float64Array) => h.reduce((a, b) => a + b, 0);
    expect(total(weights!.histogram)).toBe(50 * 40);
    expect(total(q4!.histogram)).toBe(50 * 40);
    // One cell per weight: the scale mode shows the weight's q4_0 block scale; casts have no blocks.
    const bytes = await source.read(t.offset, t.bytes);
    const x = new Float32Array(bytes.slice().buffer);
    const q = q40.encode(x, { rows: 172, cols: 64 });
    const scales = heatmapValues(q4!.cells, "scale", "max");
    for (const [i, j] of [[0, 0], [10, 23], [49, 39]] as const) {
      expect(scales[i * 40 + j]).toBe(Math.abs(weightBlock(q40, q, { rows: 172, cols: 64 }, 30 + i, 8 + j)!.scale));
    }
    expect(heatmapValues(f16!.cells, "scale", "max").every((v) => Number.isNaN(v))).toBe(true);
  });
});

describe("heatmapTensor with GPTQ / AWQ (synthetic calibration)", () => {
  it("pools GPTQ's dequantized weights, says the calibration is synthetic, and the hover reads the same values", async () => {
    const t = tensorOf("model.layers.1.mlp.gate_proj.weight"); // 172 x 64
    const view = { row0: 0, col0: 0, rows: 172, cols: 64 };
    const map = await heatmapTensor(t, ["gptq4-g32", getFormat("int4-asym-g32")], view, { cols: 64, rows: 172 });
    const [, gptq, rtn] = map.panels;
    if (!gptq!.ok || !rtn!.ok) throw new Error("a panel failed");
    expect(gptq!.format).toBe("gptq4-g32");
    expect(gptq!.why).toMatch(/synthetic calibration/);
    const result = await calibratedTensor(t, "gptq4-g32");
    const bytes = await source.read(t.offset, t.bytes);
    const x = new Float32Array(bytes.slice().buffer);
    const signed = heatmapValues(gptq!.cells, "signed", "mean");
    expect(signed[5 * 64 + 7]).toBe(Math.fround(result.q[5 * 64 + 7]! - x[5 * 64 + 7]!));
    // GPTQ's per-group grid: every weight is scale * (code - zero) of its group.
    const scales = heatmapValues(gptq!.cells, "scale", "max");
    expect(scales[5 * 64 + 7]).toBe(Math.abs(result.scales[5 * 2 + 0]!));
    const hover = await inspectWeight(t, ["gptq4-g32"], 5, 7);
    const h = hover.formats[0]!;
    if (!h.ok) throw new Error(h.error.message);
    expect(h.value).toBe(result.q[5 * 64 + 7]);
    expect(h.block).toMatchObject({ index: 10, size: 32 });
    expect(gptq!.calibration?.kind).toBe("synthetic");
    // With the layer's own activations the panel says so, and pools the setting computed on them.
    const real = activationCalibration(syntheticActivations(64, 400, 7), 64, "model", "model run on a test text");
    const withModel = await heatmapTensor(t, ["gptq4-g32"], view, { cols: 64, rows: 172 }, { calibration: async () => real });
    const panel = withModel.panels[1]!;
    if (!panel.ok) throw new Error(panel.error.message);
    expect(panel.calibration).toEqual({ kind: "model", tokens: 300, label: "model run on a test text, 300 tokens (+100 held out)" });
    expect(panel.why).toMatch(/calibrated on the model run on a test text/);
    const onReal = await calibratedTensor(t, "gptq4-g32", undefined, real);
    expect(heatmapValues(panel.cells, "signed", "mean")[5 * 64 + 7]).toBe(Math.fround(onReal.q[5 * 64 + 7]! - x[5 * 64 + 7]!));
    expect(onReal.q).not.toEqual(result.q);
    // A one-row tensor is no layer to calibrate.
    const norm = await heatmapTensor(tensorOf("model.norm.weight"), ["gptq4-g32"], { row0: 0, col0: 0, rows: 1, cols: 64 }, { cols: 64, rows: 8 });
    expect(norm.panels[1]!.ok).toBe(false);
  });
});
