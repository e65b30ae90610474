/**
 * The results table as data, on a real whole-model run of stories260K (CPU reference): totals are the sums
 * of the rows (fallbacks included), layer sensitivity from the summed energies with ranks, colour buckets,
 * and sorting.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OUTSIDE_LAYERS_GROUP } from "../formats/catalog.ts";
import { type OpenedModel, openModel, readTensorValues } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { getFormat } from "../quant/registry.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantizableTensors, quantizeModel, type ModelRun } from "./quantize-model.ts";
import {
  COLOUR_BUCKETS,
  cellValue,
  colourBucket,
  colourScale,
  layerSensitivity,
  layersByLoss,
  modelTotals,
  sortResults,
  substitutionGroups,
} from "./model-results.ts";

const FORMATS = ["int8-channel", "int4-g32", "q4_K", "q8_0"];
let model: OpenedModel;
let run: ModelRun;
beforeAll(async () => {
  model = await openModel(await openPath(path.join(STORIES_DIR, "model.safetensors")));
  run = await quantizeModel(quantizableTensors(model.tensors), FORMATS.map(getFormat));
});
afterAll(async () => {
  await closeSources([...new Set(model.tensors.map((t) => t.source))]);
});

describe("modelTotals", () => {
  it("bytes before and after are the sums of the rows' sizes, fallbacks included, and each substitution is listed", () => {
    const totals = modelTotals(run.rows, run.formats);
    expect(totals.map((t) => t.format)).toEqual(FORMATS);
    for (const [column, t] of totals.entries()) {
      expect(t.tensors).toBe(47);
      expect(t.params).toBe(260_032);
      expect(t.bytesBefore).toBe(model.totalBytes);
      let after = 0;
      for (const row of run.rows) after += row.cells[column]!.stored.bytes;
      expect(t.bytesAfter).toBe(after);
      expect(t.shareSaved).toBe(1 - after / model.totalBytes);
      expect(t.bitsPerWeight).toBe((after * 8) / 260_032);
      expect(t.substitutions).toEqual(run.rows.filter((r) => !r.cells[column]!.ok).map((r) => ({ tensor: r.tensor, stored: r.cells[column]!.stored })));
    }
    // No stories260K row is a multiple of 256: every q4_K tensor is in a fallback (q5_0 or f16).
    const q4K = totals[2]!;
    expect(q4K.substitutions).toHaveLength(47);
    expect(new Set(q4K.substitutions.map((s) => s.stored.as))).toEqual(new Set(["q5_0", "f16"]));
    // Grouped for the notes: the 172-wide mlp tensors (gate/up 172 x 64 take q5_0; down 64 x 172 needs f16).
    const groups = substitutionGroups(q4K);
    expect(groups.map((g) => g.stored)).toEqual([
      { as: "q5_0", kind: "fallback" },
      { as: "f16", kind: "fallback" },
    ]);
    expect(groups.map((g) => g.tensors)).toEqual([42, 5]);
    expect(Number.isNaN(q4K.rmse)).toBe(true);
    // int8 keeps more than int4 and saves less.
    expect(totals[0]!.snrDb).toBeGreaterThan(totals[1]!.snrDb + 15);
    expect(totals[0]!.shareSaved).toBeLessThan(totals[1]!.shareSaved);
  });

  it("model RMSE and SNR are over the measured tensors' summed errors and weights", async () => {
    const [int8] = modelTotals(run.rows, run.formats);
    let sumSquares = 0;
    let count = 0;
    for (const t of quantizableTensors(model.tensors)) {
      for (const v of await readTensorValues(t)) sumSquares += v * v;
      count += t.params;
    }
    const errorEnergy = run.rows.reduce((s, r) => s + (r.cells[0]!.ok ? r.cells[0]!.metrics.mse * r.cells[0]!.metrics.count : 0), 0);
    expect(int8!.rmse).toBeCloseTo(Math.sqrt(errorEnergy / count), 12);
    expect(int8!.snrDb).toBeCloseTo(10 * Math.log10(sumSquares / errorEnergy), 6);
  });
});

describe("layerSensitivity", () => {
  it("one entry per layer in natural order, the layer's SNR over its summed energies, ranked per format", () => {
    const layers = layerSensitivity(run.rows, run.formats);
    expect(layers.map((l) => l.group)).toEqual([0, 1, 2, 3, 4].map((i) => `model.layers.${i}`).concat(OUTSIDE_LAYERS_GROUP));
    expect(layers.map((l) => l.tensors)).toEqual([9, 9, 9, 9, 9, 2]);
    for (const [column] of FORMATS.entries()) {
      for (const layer of layers) {
        const rows = run.rows.filter((r) => r.group === layer.group && r.cells[column]!.ok);
        const loss = layer.losses[column]!;
        expect(loss.unmeasured).toBe(layer.tensors - rows.length);
        if (rows.length === 0) {
          expect(loss.rank).toBeUndefined();
          continue;
        }
        const signal = rows.reduce((s, r) => s + r.signalEnergy!, 0);
        const error = rows.reduce((s, r) => s + (r.cells[column]!.ok ? r.cells[column]!.metrics.mse * r.cells[column]!.metrics.count : 0), 0);
        expect(loss.relativeError).toBeCloseTo(error / signal, 15);
        expect(loss.snrDb).toBeCloseTo(10 * Math.log10(signal / error), 9);
      }
      const ranked = layersByLoss(layers, column);
      ranked.forEach((l, i) => {
        if (i > 0) expect(l.losses[column]!.relativeError).toBeLessThanOrEqual(ranked[i - 1]!.losses[column]!.relativeError);
        expect(l.losses[column]!.rank).toBe(1 + ranked.filter((o) => o.losses[column]!.relativeError > l.losses[column]!.relativeError).length);
      });
      if (ranked.length > 0) expect(ranked[0]!.losses[column]!.barShare).toBe(1);
    }
    // q4_K measures nothing on stories260K: no ranking at all.
    expect(layersByLoss(layers, 2)).toEqual([]);
  });
});

describe("colour buckets and sorting", () => {
  it("SNR and bits per weight on fixed edges, RMSE on the table's log range; failed cells have none", () => {
    const snr = colourScale(run.rows, "snr");
    expect([45, 40, 35, 25, 15, 5, -3].map((v) => colourBucket(v, snr))).toEqual([0, 0, 1, 2, 3, 4, 4]);
    expect(colourBucket(Infinity, snr)).toBe(0);
    const bpw = colourScale(run.rows, "bpw");
    expect([2, 3, 4.5, 5, 8.5, 16].map((v) => colourBucket(v, bpw))).toEqual([0, 0, 1, 2, 3, 4]);
    const rmse = colourScale(run.rows, "rmse");
    const values = run.rows.flatMap((r) => r.cells.map((c) => cellValue(c, "rmse"))).filter((v): v is number => v !== undefined && v > 0);
    expect(rmse.logMin).toBe(Math.log10(Math.min(...values)));
    expect(rmse.logMax).toBe(Math.log10(Math.max(...values)));
    expect(colourBucket(Math.min(...values), rmse)).toBe(0);
    expect(colourBucket(Math.max(...values), rmse)).toBe(COLOUR_BUCKETS - 1);
    expect(colourBucket(0, rmse)).toBe(0);
    const failed = run.rows[0]!.cells[2]!;
    expect(failed.ok).toBe(false);
    expect(colourBucket(cellValue(failed, "snr"), snr)).toBeUndefined();
  });

  it("sorts by a format's metric both ways with failed cells last, and by name in natural order", () => {
    const bySnr = sortResults(run.rows, run.formats, { by: "format", format: "int4-g32", metric: "snr" }, "desc");
    const snrs = bySnr.map((r) => cellValue(r.cells[1]!, "snr")).filter((v) => v !== undefined);
    expect(snrs).toEqual([...snrs].sort((a, b) => b - a));
    // int4-g32 cannot take the 172-wide rows: those rows come last in both directions.
    const failedNames = run.rows.filter((r) => !r.cells[1]!.ok).map((r) => r.tensor);
    expect(failedNames.length).toBeGreaterThan(0);
    for (const dir of ["asc", "desc"] as const) {
      const sorted = sortResults(run.rows, run.formats, { by: "format", format: "int4-g32", metric: "rmse" }, dir);
      expect(sorted.slice(-failedNames.length).map((r) => r.tensor).sort()).toEqual([...failedNames].sort());
    }
    const byName = sortResults(run.rows, run.formats, { by: "tensor" });
    const layerOrder = byName.filter((r) => r.tensor.endsWith("q_proj.weight")).map((r) => r.group);
    expect(layerOrder).toEqual([0, 1, 2, 3, 4].map((i) => `model.layers.${i}`));
    const byParams = sortResults(run.rows, run.formats, { by: "params" }, "desc");
    expect(byParams[0]!.tensor).toBe("model.embed_tokens.weight");
  });
});
