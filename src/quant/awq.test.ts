/**
 * AWQ against every AWQ entry of ../shared/golden/gptq_awq: our err_calib at most 1.02x the reference's
 * (printed side by side), the same chosen ratio, the scale-grid errors and scales of the reference, and the
 * stored pieces reconstructing Q; AWQ+GPTQ below RTN; settings it must refuse.
 */
import { afterAll, describe, expect, it } from "vitest";
import { awqGptqQuantize, awqQuantize } from "./awq.ts";
import { calibrationStats } from "./hessian.ts";
import { relOutputErrorGram } from "./output-error.ts";
import { ERR_CALIB_RATIO_BAR, goldenF32 } from "../../test/gptq-awq-golden.ts";
import { goldenLayerWithStats, goldenManifestNode, readGoldenFile } from "../../test/gptq-awq-golden-node.ts";
import { expectThrowsQuant } from "../../test/quant-errors.ts";
import { gaussian } from "../../test/random.ts";

const fr = Math.fround;
const manifest = await goldenManifestNode;
const layerOf = goldenLayerWithStats;

const table: string[] = [];
afterAll(() =>
  console.log(["AWQ err_calib: ours vs reference (and AWQ+GPTQ in the same setting)", "case / id                                      ours         reference    ratio   AWQ+GPTQ", ...table].join("\n")),
);

describe("AWQ on the golden cases", () => {
  for (const r of manifest.results.filter((e) => e.method === "awq")) {
    it(`${r.case} ${r.id}`, async () => {
      const { layer, stats } = await layerOf(r.case);
      const shape = { rows: layer.c.out_features, cols: layer.c.in_features };
      const options = { bits: r.bits, group: r.group, clip: r.clip ?? false };
      const res = awqQuantize(layer.w, shape, stats, options);
      const err = relOutputErrorGram(stats.gram, layer.w, res.q, shape);
      // AWQ+GPTQ on the small real layers (on the synthetic ones it doubles a long test).
      const bothErr = layer.c.kind === "real" ? relOutputErrorGram(stats.gram, layer.w, awqGptqQuantize(layer.w, shape, stats, options, {}).q, shape) : undefined;
      table.push(`${`${r.case} ${r.id}`.padEnd(46)} ${err.toExponential(5)}  ${r.err_calib.toExponential(5)}  ${(err / r.err_calib).toFixed(4)}  ${bothErr?.toExponential(4) ?? "-"}`);
      expect(err).toBeLessThanOrEqual(ERR_CALIB_RATIO_BAR * r.err_calib);
      expect(err).toBeLessThan(r.rtn_err_calib);
      if (bothErr !== undefined) expect(bothErr).toBeLessThan(r.rtn_err_calib);

      // The scale search sees what the reference saw: the same errors along the grid, the same ratio, the same s.
      expect(res.alpha).toBe(r.alpha);
      res.alphaErrors.forEach((e, i) => expect(e / r.alpha_grid_err_calib![i]!).toBeCloseTo(1, 3));
      const s = await goldenF32(readGoldenFile, r.files.awq_scales!);
      s.forEach((v, c) => expect(Math.abs(res.scales[c]! - v)).toBeLessThanOrEqual(4e-7 * v));
      if (r.clip) {
        // Clip choices are near-ties now and then: nearly all agree.
        const clip = await goldenF32(readGoldenFile, r.files.clip_max!);
        const close = clip.reduce((n, v, i) => n + (Math.abs(res.clipMax![i]! - v) <= 1e-6 * v ? 1 : 0), 0);
        expect(close / clip.length).toBeGreaterThan(0.95);
      } else {
        expect(res.clipMax).toBeUndefined();
      }

      // Q from the stored pieces: qScaled = qscales * (codes - qzeros), q = qScaled / s.
      const size = r.group === -1 ? shape.cols : r.group;
      for (let i = 0; i < res.q.length; i++) {
        const g = Math.floor(i / size);
        expect(res.codes[i]).toBeLessThan(2 ** r.bits);
        if (res.qScaled[i] !== fr(res.qscales[g]! * (res.codes[i]! - res.qzeros[g]!))) throw new Error(`weight ${i}: pieces do not give qScaled`);
        if (res.q[i] !== fr(res.qScaled[i]! / res.scales[i % shape.cols]!)) throw new Error(`weight ${i}: q is not qScaled / s`);
      }
    });
  }
});

describe("AWQ settings", () => {
  const rows = 8;
  const cols = 64;
  const w = gaussian(rows * cols, 0.05, 21);
  const x = gaussian(100 * cols, 1, 22);
  const stats = calibrationStats(x, cols);
  const shape = { rows, cols };

  it("refuses bits it cannot run and groups that do not divide the row", () => {
    expect(expectThrowsQuant(() => awqQuantize(w, shape, stats, { bits: 1 })).message).toMatch(/AWQ cannot quantize to 1 bits/);
    expect(expectThrowsQuant(() => awqQuantize(w, shape, stats, { bits: 4, group: 48 })).message).toMatch(/group size 48 does not divide the 64/);
    expect(expectThrowsQuant(() => awqQuantize(w, shape, stats, { bits: 4 })).problem).toBe("settings"); // 128 > 64 columns
  });

  it("quantizes symmetrically without a zero point (codes centred on 2^(bits-1))", () => {
    const res = awqQuantize(w, shape, stats, { bits: 4, group: 32, zeroPoint: false });
    expect([...res.qzeros].every((z) => z === 8)).toBe(true);
    expect(relOutputErrorGram(stats.gram, w, res.q, shape)).toBeLessThan(0.05);
  });
});
