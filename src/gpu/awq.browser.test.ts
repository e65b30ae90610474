/**
 * AWQ with its error measurements on WebGPU (src/gpu/awq.ts) on the golden cases of ../shared/golden/gptq_awq:
 * err_calib at most 1.02x the reference's, the reference's ratio, and the CPU reference's result.
 */
import { afterAll, describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { ERR_CALIB_RATIO_BAR, fetchGoldenFile, goldenGptqAwqManifest, goldenLayer } from "../../test/gptq-awq-golden.ts";
import { gpuAwqQuantize } from "./awq.ts";
import { awqQuantize } from "../quant/awq.ts";
import { calibrationStats } from "../quant/hessian.ts";
import { relOutputErrorGram } from "../quant/output-error.ts";

const gpu = useLabDevice();
const read = fetchGoldenFile(inject("sharedDir"));
const manifest = await goldenGptqAwqManifest(read);

const table: string[] = [];
afterAll(() => console.log(["AWQ on WebGPU, err_calib: GPU vs CPU reference vs golden reference", ...table].join("\n")));

describe("AWQ on the GPU, golden cases", () => {
  // Every real-layer entry and the synthetic w4 g128 ones (scale only, scale + clip).
  const picked = manifest.results.filter((r) => r.method === "awq" && (manifest.cases[r.case]!.kind === "real" || /w4_g128/.test(r.id)));
  for (const r of picked) {
    it(`${r.case} ${r.id}`, async () => {
      const layer = await goldenLayer(read, manifest, r.case);
      const shape = { rows: layer.c.out_features, cols: layer.c.in_features };
      const stats = calibrationStats(layer.x, shape.cols);
      const options = { bits: r.bits, group: r.group, clip: r.clip ?? false };
      const res = await gpuAwqQuantize(gpu(), layer.w, shape, stats, options);
      const cpu = awqQuantize(layer.w, shape, stats, options);
      const err = relOutputErrorGram(stats.gram, layer.w, res.q, shape);
      const cpuErr = relOutputErrorGram(stats.gram, layer.w, cpu.q, shape);
      table.push(`${`${r.case} ${r.id}`.padEnd(46)} gpu ${err.toExponential(5)}  cpu ${cpuErr.toExponential(5)}  ref ${r.err_calib.toExponential(5)}  gpu/ref ${(err / r.err_calib).toFixed(4)}`);
      expect(err).toBeLessThanOrEqual(ERR_CALIB_RATIO_BAR * r.err_calib);
      expect(res.alpha).toBe(r.alpha);
      res.alphaErrors.forEach((a, i) => expect(a / cpu.alphaErrors[i]!).toBeCloseTo(1, 3));
      expect(Math.abs(err / cpuErr - 1)).toBeLessThan(0.01);
    }, 300_000); // the synthetic layers' CPU reference alone takes tens of seconds on a busy 2-core machine
  }
});
