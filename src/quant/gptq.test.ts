/**
 * GPTQ against every GPTQ entry of ../shared/golden/gptq_awq: our err_calib at most 1.02x the reference's
 * (printed side by side), below round-to-nearest, and the stored pieces (codes, scales, zeros, g_idx)
 * reconstructing our Q exactly; then settings and inputs it must refuse or handle.
 */
import { afterAll, describe, expect, it } from "vitest";
import { dequantizeGrouped, gptqQuantize, gptqRtn } from "./gptq.ts";
import { calibrationStats } from "./hessian.ts";
import { relOutputError, relOutputErrorGram } from "./output-error.ts";
import { ERR_CALIB_RATIO_BAR, goldenArray } from "../../test/gptq-awq-golden.ts";
import { goldenLayerWithStats, goldenManifestNode, readGoldenFile } from "../../test/gptq-awq-golden-node.ts";
import { expectThrowsQuant } from "../../test/quant-errors.ts";
import { gaussian } from "../../test/random.ts";

const manifest = await goldenManifestNode;
const layerOf = goldenLayerWithStats;

const table: string[] = [];
afterAll(() => console.log(["GPTQ err_calib: ours vs reference", "case / id                                      ours         reference    ratio", ...table].join("\n")));

describe("GPTQ on the golden cases", () => {
  for (const r of manifest.results.filter((e) => e.method === "gptq")) {
    it(`${r.case} ${r.id}`, async () => {
      const { layer, stats } = await layerOf(r.case);
      const shape = { rows: layer.c.out_features, cols: layer.c.in_features };
      const res = gptqQuantize(layer.w, shape, stats, { bits: r.bits, group: r.group, sym: r.sym, actOrder: r.act_order, staticGroups: r.static_groups });
      const err = relOutputErrorGram(stats.gram, layer.w, res.q, shape);
      table.push(`${`${r.case} ${r.id}`.padEnd(46)} ${err.toExponential(5)}  ${r.err_calib.toExponential(5)}  ${(err / r.err_calib).toFixed(4)}`);
      expect(err).toBeLessThanOrEqual(ERR_CALIB_RATIO_BAR * r.err_calib);

      // GPTQ beats round-to-nearest with the same quantizer (whose error is the reference's RTN error).
      const rtn = relOutputErrorGram(stats.gram, layer.w, gptqRtn(layer.w, shape, r), shape);
      expect(rtn / r.rtn_err_calib).toBeCloseTo(1, 9);
      expect(err).toBeLessThan(rtn);

      // The stored pieces give back Q exactly, codes are on the grid, g_idx is the reference's.
      const maxq = 2 ** r.bits - 1;
      expect(res.codes.every((c) => c <= maxq)).toBe(true);
      expect(dequantizeGrouped(res.codes, res.scales, res.zeros, res.gIdx, shape)).toEqual(res.q);
      expect(res.nGroups).toBe(r.group === -1 ? 1 : Math.ceil(shape.cols / r.group));
      if (r.files.g_idx) expect(res.gIdx).toEqual(await goldenArray(readGoldenFile, r.files.g_idx));
      if (r.files.perm) expect(res.perm).toEqual(await goldenArray(readGoldenFile, r.files.perm));
      // On the real layers our codes are the reference's, but for rare float32 roundings of the sweep (a scale
      // one ulp off moves a whole group's Q by an ulp, not its codes).
      if (r.files.Q && r.files.scales && r.files.zeros && r.files.g_idx && layer.c.kind === "real") {
        const [q, scales, zeros, gIdx] = await Promise.all(["Q", "scales", "zeros", "g_idx"].map((k) => goldenArray(readGoldenFile, r.files[k]!)));
        let same = 0;
        for (let o = 0; o < shape.rows; o++) {
          for (let j = 0; j < shape.cols; j++) {
            const g = o * res.nGroups + gIdx![j]!;
            if (Math.round(q![o * shape.cols + j]! / scales![g]! + zeros![g]!) === res.codes[o * shape.cols + j]) same++;
          }
        }
        expect(same / res.codes.length).toBeGreaterThan(0.99);
      }
      expect(res.deadColumns).toBe(0);
      expect(res.warnings).toEqual([]);
    });
  }
});

describe("GPTQ inputs", () => {
  const rows = 8;
  const cols = 16;
  const w = gaussian(rows * cols, 0.05, 11);
  const x = gaussian(64 * cols, 1, 12);
  const stats = calibrationStats(x, cols);
  const shape = { rows, cols };

  it("refuses bits, group sizes and shapes it cannot run with", () => {
    for (const bits of [1, 9, 3.5]) expect(expectThrowsQuant(() => gptqQuantize(w, shape, stats, { bits, group: 8 })).problem).toBe("settings");
    expect(expectThrowsQuant(() => gptqQuantize(w, shape, stats, { bits: 4, group: 0 })).message).toMatch(/group size 0/);
    expect(expectThrowsQuant(() => gptqQuantize(w, shape, stats, { bits: 4, group: 32 })).problem).toBe("settings");
    expect(expectThrowsQuant(() => gptqQuantize(w.subarray(1), shape, stats, { bits: 4, group: 8 })).problem).toBe("shape");
    const narrow = calibrationStats(x.subarray(0, 60 * 12), 12);
    const e = expectThrowsQuant(() => gptqQuantize(w, shape, narrow, { bits: 4, group: 8 }));
    expect(e.problem).toBe("calibration");
    expect(e.message).toMatch(/12 channels, the weights 16 input columns/);
  });

  it("zeroes dead columns (inputs that are always 0)", () => {
    const xd = x.slice();
    for (let t = 0; t < 64; t++) xd[t * cols + 5] = 0;
    const res = gptqQuantize(w, shape, calibrationStats(xd, cols), { bits: 4, group: -1 });
    expect(res.deadColumns).toBe(1);
    for (let o = 0; o < rows; o++) expect(res.q[o * cols + 5]).toBe(0);
  });

  it("warns when tokens are fewer than columns, and retries with more damping when H is singular", () => {
    const few = calibrationStats(x.subarray(0, 4 * cols), cols);
    const res = gptqQuantize(w, shape, few, { bits: 4, group: 8, percDamp: 0 });
    expect(res.warnings[0]).toMatch(/only 4 calibration tokens for 16 input columns/);
    expect(res.warnings[1]).toMatch(/not positive definite with dampening 0: retried with 0.01/);
    expect(res.percDamp).toBe(0.01);
    expect(relOutputError(x.subarray(0, 4 * cols), w, res.q, shape)).toBeLessThan(relOutputError(x.subarray(0, 4 * cols), w, gptqRtn(w, shape, { bits: 4, group: 8 }), shape));
  });
});
