/**
 * `quantlab gptq` and `quantlab awq` on golden layers: the JSON's errors are the reference's (GPTQ and AWQ in
 * the same setting), RTN is measured alongside, --eval adds held-out errors, --out writes pieces that rebuild
 * Q; bad input exits 2 with one line.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { quantlab, quantlabInProcess } from "../../test/quantlab-cli.ts";
import { GPTQ_AWQ_GOLDEN_DIR, readGoldenFile } from "../../test/gptq-awq-golden-node.ts";
import { goldenGptqAwqManifest } from "../../test/gptq-awq-golden.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { dequantizeGrouped } from "../quant/gptq.ts";
import type { CalibratedJson } from "./calibrated.ts";

const manifest = await goldenGptqAwqManifest(readGoldenFile);
const caseFile = (c: string, f: string) => path.join(GPTQ_AWQ_GOLDEN_DIR, "cases", c, f);
const result = (c: string, id: string) => manifest.results.find((r) => r.case === c && r.id === id)!;
const tmp = await mkdtemp(path.join(os.tmpdir(), "quantlab-gptq-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

const floats = async (file: string) => {
  const b = await readFile(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

describe("quantlab gptq", () => {
  it("prints the calibration and held-out errors of GPTQ and RTN as JSON, and writes the pieces", async () => {
    const c = "syn_1024x256";
    const out = path.join(tmp, "gptq");
    const run = await quantlabInProcess("gptq", "--weights", caseFile(c, "W.f32"), "--shape", "1024,256", "--calib", caseFile(c, "X.f32"), "--eval", caseFile(c, "X_eval.f32"), "--act-order", "--json", "--out", out);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const j = JSON.parse(run.stdout) as CalibratedJson;
    const ref = result(c, "gptq_w4_g128_asym_act");
    expect(j.rel_output_error / ref.err_calib).toBeCloseTo(1, 3);
    expect(j.rel_output_error_eval! / ref.err_eval!).toBeCloseTo(1, 2);
    expect(j.rtn_rel_output_error / ref.rtn_err_calib).toBeCloseTo(1, 9);
    expect(j.weight_mse / ref.weight_mse).toBeCloseTo(1, 2);
    expect(j.seconds).toBeGreaterThan(0);
    const [q, scales, zeros] = await Promise.all(["q", "scales", "zeros"].map((n) => floats(path.join(out, `${n}.f32`))));
    const codes = new Uint8Array(await readFile(path.join(out, "codes.u8")));
    const gIdxBytes = await readFile(path.join(out, "g_idx.i32"));
    const gIdx = new Int32Array(gIdxBytes.buffer.slice(gIdxBytes.byteOffset, gIdxBytes.byteOffset + gIdxBytes.byteLength));
    expect(dequantizeGrouped(codes, scales!, zeros!, gIdx, { rows: 1024, cols: 256 })).toEqual(q);
  });

  it("warns when the tokens are fewer than the columns", async () => {
    const few = path.join(tmp, "few.f32");
    await writeFile(few, (await readFile(caseFile("syn_512", "X.f32"))).subarray(0, 100 * 512 * 4));
    const run = await quantlabInProcess("gptq", "--weights", caseFile("syn_512", "W.f32"), "--shape", "512,512", "--calib", few, "--bits", "8", "--group=-1", "--sym");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/GPTQ 8-bit per-channel sym of a 512 x 512 layer, 100 calibration tokens/);
    expect(run.stdout).toMatch(/warning: only 100 calibration tokens for 512 input columns: the Hessian is rank-deficient/);
  });

  it("exits 2 with one line on bad input", async () => {
    const w = caseFile("real_l2_q_proj", "W.f32");
    const x = caseFile("real_l2_q_proj", "X.f32");
    const cases: [string[], RegExp][] = [
      [["--weights", w, "--calib", x], /--shape OUT,IN is required/],
      [["--weights", w, "--shape", "64,65", "--calib", x], /has 16384 bytes, expected 16640/],
      [["--weights", w, "--shape", "64,64", "--calib", caseFile("real_l4_down_proj", "X.f32")], /not a whole number of tokens of 64 float32 values/],
      [["--weights", w, "--shape", "64,64", "--calib", x, "--bits", "9"], /GPTQ cannot quantize to 9 bits/],
      [["--weights", w, "--shape", "64,64", "--calib", x, "--group", "abc"], /--group must be a whole number/],
      [["--weights", w, "--shape", "64,64", "--calib", path.join(tmp, "missing.f32")], /no such file/],
      [["--weights", w, "--shape", "64,64", "--calib", x, "--static-groups"], /only matters with --act-order/],
    ];
    for (const [args, message] of cases) {
      const run = await quantlabInProcess("gptq", ...args);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});

describe("quantlab awq", () => {
  it("quantizes a safetensors tensor with its real activations to the reference's error (the real CLI)", async () => {
    const run = await quantlab(
      "awq",
      "--weights",
      STORIES_DIR,
      "--tensor",
      "model.layers.2.mlp.gate_proj.weight",
      "--calib",
      path.join(STORIES_DIR, "reference/calib/layers.2.mlp_in.f32"),
      "--group",
      "32",
      "--json",
    );
    expect(run.stderr).toBe("");
    const j = JSON.parse(run.stdout) as CalibratedJson;
    const ref = result("real_l2_gate_proj", "awq_w4_g32_scale_clip");
    expect(j.alpha).toBe(ref.alpha);
    expect(j.rel_output_error / ref.err_calib).toBeCloseTo(1, 3);
    expect(j.rtn_rel_output_error / ref.rtn_err_calib).toBeCloseTo(1, 6);
  });

  it("runs AWQ followed by GPTQ, below AWQ alone here", async () => {
    const args = ["--weights", caseFile("real_l2_q_proj", "W.f32"), "--shape", "64,64", "--calib", caseFile("real_l2_q_proj", "X.f32"), "--group", "32", "--json"];
    const awq = JSON.parse((await quantlabInProcess("awq", ...args)).stdout) as CalibratedJson;
    const both = JSON.parse((await quantlabInProcess("awq", ...args, "--gptq")).stdout) as CalibratedJson;
    expect(both.method).toBe("awq+gptq");
    expect(both.rel_output_error).toBeLessThan(awq.rel_output_error);
  });
});
