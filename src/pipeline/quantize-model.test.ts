/**
 * The whole-model run on stories260K (CPU reference in Node): every tensor's cells equal what
 * quantizeTensor gives for it, rows arrive tensor by tensor, stored sizes follow llama.cpp's fallbacks,
 * cached cells are reused and not computed again, a failing cache does not stop the run, progress and
 * ETA, and cancelling.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupOf } from "../formats/catalog.ts";
import { type OpenedModel, openModel, readTensorValues, tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { getFormat } from "../quant/registry.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantizeTensor } from "./quantize-tensor.ts";
import { labFormat } from "./quantize-layer.ts";
import { cellValue, modelTotals } from "./model-results.ts";
import { calibratedBytes, calibratedMethod } from "../quant/calibrated.ts";
import {
  estimateRemainingMs,
  modelCell,
  quantizableTensors,
  quantizeModel,
  storedSize,
  type CachedCells,
  type ModelCell,
  type ModelProgress,
  type TensorResults,
} from "./quantize-model.ts";

let model: OpenedModel;
beforeAll(async () => {
  model = await openModel(await openPath(path.join(STORIES_DIR, "model.safetensors")));
});
afterAll(async () => {
  await closeSources([...new Set(model.tensors.map((t) => t.source))]);
});

const INT_FORMATS = ["int8-channel", "int4-g32", "q4_K", "q8_0"];

function tensorNamed(name: string): TensorInfo {
  return model.tensors.find((t) => t.name === name)!;
}

describe("quantizeModel on stories260K", () => {
  it("every tensor in every format: the cells quantizeTensor gives, row by row as each tensor finishes", async () => {
    const tensors = quantizableTensors(model.tensors);
    expect(tensors).toHaveLength(47);
    const formats = INT_FORMATS.map(getFormat);
    const seen: TensorResults[] = [];
    const run = await quantizeModel(tensors, formats, { onTensor: (row) => seen.push(row) });
    expect(run.formats).toEqual(INT_FORMATS);
    expect(run.rows.map((r) => r.tensor)).toEqual(tensors.map((t) => t.name));
    expect(seen).toEqual(run.rows);
    expect(run.computedCells).toBe(47 * 4);
    expect(run.cachedCells).toBe(0);
    // Spot-check three tensors against quantizeTensor run on its own.
    for (const name of ["model.embed_tokens.weight", "model.layers.4.mlp.down_proj.weight", "model.norm.weight"]) {
      const tensor = tensorNamed(name);
      const row = run.rows.find((r) => r.tensor === name)!;
      const direct = await quantizeTensor(tensor, formats);
      expect(row.cells).toEqual(direct.results.map((r) => modelCell(tensor, direct.shape, r)));
      expect(row.group).toBe(groupOf(name));
      expect(row.shape).toEqual(direct.shape);
      expect(row.bytes).toBe(tensor.bytes);
    }
    // No error maps travel with the table.
    for (const row of run.rows) for (const cell of row.cells) if (cell.ok) expect("blocks" in cell.metrics).toBe(false);
  });

  it("signal energy: the sum of the squared weights, as the measured cells imply it", async () => {
    const tensor = tensorNamed("model.layers.2.self_attn.v_proj.weight");
    const run = await quantizeModel([tensor], ["int4-g32", "int8-channel"].map(getFormat));
    const x = await readTensorValues(tensor);
    let sumSquares = 0;
    for (const v of x) sumSquares += v * v;
    expect(run.rows[0]!.signalEnergy! / sumSquares).toBeCloseTo(1, 9);
  });

  it("stored sizes: the format's bytes, llama.cpp's fallback for a row length it cannot take, or as stored", async () => {
    const down = tensorNamed("model.layers.0.mlp.down_proj.weight"); // 64 x 172
    const up = tensorNamed("model.layers.0.mlp.up_proj.weight"); // 172 x 64
    const run = await quantizeModel([up, down], ["q4_K", "int4-g32", "f16"].map(getFormat));
    const [upRow, downRow] = run.rows;
    const shapeOf = (t: TensorInfo) => ({ rows: tensorRowLayout(t).rows, cols: tensorRowLayout(t).rowLength });
    // q4_K on rows of 64: llama.cpp's q5_0.
    expect(upRow!.cells[0]).toMatchObject({ ok: false, stored: { as: "q5_0", kind: "fallback", bytes: getFormat("q5_0").encodedBytes(shapeOf(up)) } });
    // Rows of 172 are not a multiple of 32 either: f16.
    expect(downRow!.cells[0]).toMatchObject({ ok: false, stored: { as: "f16", kind: "fallback", bytes: 64 * 172 * 2 } });
    // int4-g32 cannot group rows of 172: per-channel int4.
    expect(downRow!.cells[1]).toMatchObject({ ok: false, stored: { as: "int4-channel", kind: "fallback", bytes: getFormat("int4-channel").encodedBytes(shapeOf(down)) } });
    expect(upRow!.cells[1]).toMatchObject({ ok: true, stored: { as: "int4-g32", kind: "format", bytes: getFormat("int4-g32").encodedBytes(shapeOf(up)) } });
    expect(downRow!.cells[2]).toMatchObject({ ok: true, stored: { bytes: 64 * 172 * 2, kind: "format" } });
  });

  it("storedSize of other failures: unmeasured keeps the format's size, non-finite weights stay as stored", () => {
    const tensor = { bytes: 4 * 64 * 4, dtype: "F32" as const };
    const shape = { rows: 4, cols: 64 };
    expect(storedSize(tensor, shape, { format: "nf4", ok: false, error: { problem: "too-large", message: "big" } })).toEqual({
      bytes: getFormat("nf4").encodedBytes(shape),
      as: "nf4",
      kind: "unmeasured",
    });
    expect(storedSize(tensor, shape, { format: "q8_0", ok: false, error: { problem: "non-finite", message: "NaN", row: 1, col: 2 } })).toEqual({
      bytes: 1024,
      as: "F32",
      kind: "source",
    });
  });

  it("cached cells are handed over, not computed again; only the missing formats run, and only they are saved", async () => {
    const tensors = ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"].map(tensorNamed);
    const first = await quantizeModel(tensors, ["int8-channel", "int4-g32"].map(getFormat));
    // The cache holds both formats for the first tensor and int8 only for the second.
    const cached = new Map<string, Map<string, ModelCell>>([
      [tensors[0]!.name, new Map(first.rows[0]!.cells.map((c) => [c.format, c]))],
      [tensors[1]!.name, new Map([["int8-channel", first.rows[1]!.cells[0]!]])],
    ]);
    const saved: { tensor: string; formats: string[] }[] = [];
    const progress: ModelProgress[] = [];
    const run = await quantizeModel(tensors, ["int4-g32", "int8-channel"].map(getFormat), {
      cached,
      save: async (tensor, cells) => void saved.push({ tensor, formats: cells.map((c) => c.format) }),
      onProgress: (p) => progress.push(p),
    });
    expect(run.computedCells).toBe(1);
    expect(run.cachedCells).toBe(3);
    expect(saved).toEqual([{ tensor: tensors[1]!.name, formats: ["int4-g32"] }]);
    expect(run.rows.map((r) => r.cachedCells)).toEqual([2, 1]);
    // The run's order, whatever order the cache or the first run had; the recomputed cell equals the first run's.
    expect(run.rows[0]!.cells).toEqual([first.rows[0]!.cells[1], first.rows[0]!.cells[0]]);
    expect(run.rows[1]!.cells).toEqual([first.rows[1]!.cells[1], first.rows[1]!.cells[0]]);
    // Only the computed cell's bytes count in the progress.
    expect(progress.every((p) => p.totalBytes === tensors[1]!.bytes)).toBe(true);
  });

  it("GPTQ takes part like a format: its cells, output errors for every format, and cached cells without one computed again", async () => {
    const tensors = ["model.layers.1.self_attn.q_proj.weight", "model.norm.weight"].map(tensorNamed);
    const plain = await quantizeModel(tensors, [getFormat("int4-g32")]);
    expect(plain.rows[0]!.cells[0]).not.toHaveProperty("outputError");
    const cached: CachedCells = new Map(plain.rows.map((r) => [r.tensor, new Map(r.cells.map((c) => [c.format, c]))]));
    const run = await quantizeModel(tensors, [getFormat("int4-g32"), labFormat("gptq4-g32")], { cached, syntheticWhy: "no model" });
    expect(run.formats).toEqual(["int4-g32", "gptq4-g32"]);
    // The q_proj's int4 cell lacked an output error: computed again; the norm (one row) has none to measure.
    expect(run.computedCells).toBe(3);
    expect(run.cachedCells).toBe(1);
    const [int4, gptq] = run.rows[0]!.cells;
    if (!int4?.ok || !gptq?.ok) throw new Error("q_proj not measured");
    expect(int4.outputError?.source).toBe("synthetic");
    expect(gptq.outputError!.calibration).toBeLessThan(int4.outputError!.calibration);
    expect(gptq.stored).toEqual({ bytes: calibratedBytes(calibratedMethod("gptq4-g32")!, { rows: 64, cols: 64 }, 32), as: "gptq4-g32", kind: "format" });
    // The norm is no matrix: GPTQ cannot take it, and the totals count it as stored.
    expect(run.rows[1]!.cells[1]).toMatchObject({ ok: false, stored: { kind: "source" } });
    // The table's "output error" cells and the model totals' mean (one measured tensor here).
    expect(cellValue(gptq, "outErr")).toBe(gptq.outputError!.calibration);
    const totals = modelTotals(run.rows, run.formats);
    expect(totals[1]).toMatchObject({ meanOutputError: gptq.outputError!.calibration, outputErrorSource: "synthetic" });
  });

  it("a cache that fails to save does not stop the run; the failures are reported", async () => {
    const errors: unknown[] = [];
    const tensors = ["model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.v_proj.weight"].map(tensorNamed);
    const run = await quantizeModel(tensors, [getFormat("q8_0")], {
      save: () => Promise.reject(new DOMException("quota exceeded", "QuotaExceededError")),
      onCacheError: (e) => errors.push(e),
    });
    expect(run.rows).toHaveLength(2);
    expect(run.rows.every((r) => r.cells[0]!.ok)).toBe(true);
    expect(errors.map((e) => (e as DOMException).name)).toEqual(["QuotaExceededError", "QuotaExceededError"]);
  });

  it("progress: bytes from 0 to the total across tensors, tensors counted as they finish, ETA from the rate so far", async () => {
    const tensors = quantizableTensors(model.tensors).slice(0, 12);
    const formats = ["q4_0", "int4-g32"].map(getFormat);
    let clock = 0;
    const progress: ModelProgress[] = [];
    await quantizeModel(tensors, formats, {
      chunkBytes: 16 * 64 * 4,
      now: () => (clock += 10),
      onProgress: (p) => progress.push(p),
    });
    const total = tensors.reduce((s, t) => s + t.bytes * 2, 0);
    expect(progress.every((p) => p.totalBytes === total && p.tensorsTotal === 12)).toBe(true);
    for (let i = 1; i < progress.length; i++) {
      expect(progress[i]!.doneBytes).toBeGreaterThanOrEqual(progress[i - 1]!.doneBytes);
      expect(progress[i]!.tensorsDone).toBeGreaterThanOrEqual(progress[i - 1]!.tensorsDone);
    }
    const last = progress.at(-1)!;
    expect(last).toMatchObject({ doneBytes: total, tensorsDone: 12, etaMs: 0, tensor: tensors[11]!.name });
    const middle = progress.find((p) => p.doneBytes > 0 && p.doneBytes < total)!;
    expect(middle.etaMs).toBeCloseTo((middle.elapsedMs * (total - middle.doneBytes)) / middle.doneBytes, 6);
    expect(estimateRemainingMs(1000, 0, 10)).toBeUndefined();
    expect(estimateRemainingMs(1000, 25, 100)).toBe(3000);
  });

  it("cancelling stops the run between pieces of a tensor with an AbortError; rows so far were handed over", async () => {
    const controller = new AbortController();
    const rows: string[] = [];
    const job = quantizeModel(quantizableTensors(model.tensors), ["q4_0", "q6_K", "int4-g32"].map(getFormat), {
      chunkBytes: 8 * 64 * 4,
      signal: controller.signal,
      onTensor: (row) => {
        rows.push(row.tensor);
        if (rows.length === 3) controller.abort();
      },
    });
    await expect(job).rejects.toMatchObject({ name: "AbortError" });
    expect(rows).toHaveLength(3);
  });

  it("a cached model needs no computing at all", async () => {
    const tensors = quantizableTensors(model.tensors).slice(0, 5);
    const first = await quantizeModel(tensors, [getFormat("int8-channel")]);
    const cached: CachedCells = new Map(first.rows.map((r) => [r.tensor, new Map(r.cells.map((c) => [c.format, c]))]));
    const run = await quantizeModel(tensors, [getFormat("int8")], {
      cached,
      save: () => Promise.reject(new Error("nothing to save")),
    });
    expect(run).toEqual({ ...first, computedCells: 0, cachedCells: 5, rows: first.rows.map((r) => ({ ...r, cachedCells: 1 })) });
  });
});
