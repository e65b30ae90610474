/**
 * `quantlab quantize` as a user runs it, on stories260K: the JSON the issue specifies, numbers equal to
 * the formats' own encode/decode measured here independently, llama.cpp's fallbacks for tensors a format
 * cannot take, model-wide totals, and exit 2 on bad input.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantlab } from "../../test/quantlab-cli.ts";
import { openModel, readTensorValues, tensorRowLayout } from "../formats/model.ts";
import type { OpenedModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import type { ByteSource } from "../formats/source.ts";
import { errorMetrics } from "../quant/metrics.ts";
import { getFormat } from "../quant/registry.ts";
import type { QuantizeJson } from "./quantize.ts";

const STORIES_FILE = path.join(STORIES_DIR, "model.safetensors");

let sources: ByteSource[] = [];
let model: OpenedModel;
beforeAll(async () => {
  sources = await openPath(STORIES_FILE);
  model = await openModel(sources);
});
afterAll(() => closeSources(sources));

async function quantizeJson(...args: string[]): Promise<QuantizeJson> {
  const run = await quantlab("quantize", STORIES_FILE, "--json", ...args);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as QuantizeJson;
}

/** One tensor's float32 values and its 2-D shape (rows = leading dims, cols = last dim). */
async function tensorValues(name: string) {
  const t = model.tensors.find((x) => x.name === name)!;
  const { rows, rowLength } = tensorRowLayout(t);
  return { t, x: await readTensorValues(t), shape: { rows, cols: rowLength } };
}

describe.concurrent("quantlab quantize", () => {
  it("--json: metrics and sizes per tensor and format, equal to the formats' own encode/decode", async () => {
    const formats = ["q8_0", "q4_0", "int4-g32", "nf4", "fp8-e4m3", "int8"];
    const out = await quantizeJson("--formats", formats.join(","), "--tensors", "layers\\.3\\.(self_attn\\.[qk]|mlp\\.up)_proj");
    const names = ["model.layers.3.mlp.up_proj.weight", "model.layers.3.self_attn.k_proj.weight", "model.layers.3.self_attn.q_proj.weight"];
    expect([...new Set(out.results.map((r) => r.tensor))].sort()).toEqual(names);
    expect(out.results).toHaveLength(names.length * formats.length);
    for (const r of out.results) {
      if ("error" in r) throw new Error(`unexpected error: ${r.error}`);
      expect(Object.keys(r)).toEqual(expect.arrayContaining(["tensor", "format", "mse", "rmse", "max_abs_err", "snr_db", "cosine", "bits_per_weight", "bytes_before", "bytes_after"]));
      const format = getFormat(r.format);
      const { t, x, shape } = await tensorValues(r.tensor);
      const y = format.decode(format.encode(x, shape), shape);
      const m = errorMetrics(x, y, shape);
      // The CLI streams the tensor in chunks: f64 sums may be added in another order, nothing more.
      expect(r.mse / m.mse).toBeCloseTo(1, 10);
      expect(r.rmse / m.rmse).toBeCloseTo(1, 10);
      expect(r.max_abs_err).toBe(m.maxAbsErr);
      expect(r.snr_db! - m.snrDb).toBeCloseTo(0, 8);
      expect(r.cosine - m.cosine).toBeCloseTo(0, 12);
      expect(r.bytes_before).toBe(t.bytes);
      expect(r.bytes_after).toBe(format.encodedBytes(shape));
      expect(r.bits_per_weight).toBe((format.encodedBytes(shape) * 8) / (shape.rows * shape.cols));
      expect(r.ran_on).toBe("cpu");
    }
    // "int8" is the alias of int8-channel; results and totals use the id.
    expect(out.totals.map((t) => t.format)).toEqual(["q8_0", "q4_0", "int4-g32", "nf4", "fp8-e4m3", "int8-channel"]);
  });

  it("a tensor a format cannot take: error and llama.cpp's fallback, counted in the fallback in the totals", async () => {
    // stories260K's rows are 64 wide (down_proj: 172): no K-quant fits; llama.cpp uses q5_0 for q4_K on
    // rows of a multiple of 32, and f16 when the row is not a multiple of 32 either.
    const out = await quantizeJson("--formats", "q4_K,q8_0", "--tensors", "layers\\.0\\.mlp\\.(up|down)_proj");
    const find = (tensor: string, format: string) => out.results.find((r) => r.tensor === tensor && r.format === format)!;
    const up = find("model.layers.0.mlp.up_proj.weight", "q4_K");
    expect(up).toEqual({ tensor: "model.layers.0.mlp.up_proj.weight", format: "q4_K", error: expect.stringMatching(/rows of 64 weights are not a multiple of 256/), fallback: "q5_0" });
    expect(find("model.layers.0.mlp.down_proj.weight", "q4_K")).toMatchObject({ fallback: "f16" });
    expect("mse" in find("model.layers.0.mlp.up_proj.weight", "q8_0")).toBe(true);

    const [upT, downT] = ["model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"].map((n) => model.tensors.find((t) => t.name === n)!);
    const shapeOf = (t: typeof upT) => ({ rows: tensorRowLayout(t!).rows, cols: tensorRowLayout(t!).rowLength });
    const q4K = out.totals.find((t) => t.format === "q4_K")!;
    expect(q4K).toEqual({
      format: "q4_K",
      bytes_before: upT!.bytes + downT!.bytes,
      bytes_after: getFormat("q5_0").encodedBytes(shapeOf(upT)) + getFormat("f16").encodedBytes(shapeOf(downT)),
      tensors: 2,
      fallback_tensors: 2,
    });
  });

  it("prints a table of the metrics and the totals", async () => {
    const run = await quantlab("quantize", STORIES_FILE, "--formats", "q8_0,q4_K", "--tensors", "^model\\.norm");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^model\.norm\.weight\s+q8_0\s+8\.5\s/m);
    expect(run.stdout).toMatch(/^model\.norm\.weight\s+q4_K\s+cannot: rows of 64 weights .* as q5_0$/m);
    expect(run.stdout).toMatch(/^Totals/m);
    // Totals: the 64 F32 weights (256 bytes) in q4_K's fallback q5_0, two blocks of 22 bytes.
    expect(run.stdout).toMatch(/^q4_K\s+1\s+256\s+44\s/m);
  });

  it("bad input: exit 2 and one line", async () => {
    for (const [args, pattern] of [
      [["--formats", "q4k"], /unknown format "q4k"; did you mean q4_K/],
      [["--formats", "q4_K", "--tensors", "("], /--tensors: Invalid regular expression/],
      [["--formats", "q4_K", "--tensors", "no-such-tensor"], /no floating-point tensor .* matches \/no-such-tensor\//],
      [["--tensors", "norm"], /--formats is required/],
    ] as const) {
      const run = await quantlab("quantize", STORIES_FILE, ...args);
      expect(run.code).toBe(2);
      expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(run.stderr).toMatch(pattern);
    }
    const missing = await quantlab("quantize", path.join(STORIES_DIR, "nope.safetensors"), "--formats", "q8_0");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.safetensors: no such file/);
  });
});

describe("quantlab quantize with GPTQ / AWQ settings", () => {
  it("calibrates on the model run when the folder has config.json and a tokenizer, on synthetic activations for a lone file", async () => {
    const args = ["--formats", "gptq4-g32,int4-g32,awq4-g32-noclip", "--tensors", "layers\\.1\\.self_attn\\.q_proj", "--json"];
    const dir = await quantlab("quantize", STORIES_DIR, ...args);
    expect(dir.code).toBe(0);
    const real = JSON.parse(dir.stdout) as QuantizeJson;
    expect(real.calibration).toBe("model");
    expect(real.calibration_label).toMatch(/^model run on calibration\.txt, \d+ tokens$/);
    const [gptq, int4, awq] = real.results;
    for (const r of [gptq, int4, awq]) expect(r).toMatchObject({ calibration: "model", output_error: expect.any(Number), output_error_heldout: expect.any(Number) });
    const errorOf = (r: (typeof real.results)[number] | undefined) => (r && "output_error" in r ? r.output_error! : NaN);
    expect(errorOf(gptq)).toBeLessThan(errorOf(int4));
    expect(errorOf(awq)).toBeLessThan(errorOf(int4));

    const file = JSON.parse((await quantlab("quantize", STORIES_FILE, ...args)).stdout) as QuantizeJson;
    expect(file.calibration).toBe("synthetic");
    expect(file.calibration_label).toMatch(/^synthetic activations \(not a model folder\)$/);
    expect(file.results[0]).toMatchObject({ format: "gptq4-g32", calibration: "synthetic" });
    expect(file.results[0]).not.toHaveProperty("output_error_heldout");

    const table = await quantlab("quantize", STORIES_DIR, "--formats", "gptq4-g32,int4-g32", "--tensors", "layers\\.1\\.self_attn\\.q_proj");
    expect(table.stdout).toMatch(/^calibration: model run on calibration\.txt, \d+ tokens$/m);
    expect(table.stdout).toMatch(/out err calib \/ held-out/);
  }, 120_000);

  it("--calibration: activation files (a folder or a list) or a text the model folder is run on; bad sources exit 2", async () => {
    const calib = path.join(STORIES_DIR, "reference/calib");
    const args = ["--formats", "gptq4-g32,int4-g32", "--tensors", "layers\\.1\\.(self_attn\\.q_proj|mlp\\.down)", "--json"];
    // A lone shard has no model to run, but the reference dumps of its layers' inputs calibrate it.
    const folder = JSON.parse((await quantlab("quantize", STORIES_FILE, ...args, "--calibration", calib)).stdout) as QuantizeJson;
    expect(folder.calibration).toBe("file");
    expect(folder.calibration_label).toBe("activation files (20 files for 35 of 35 linear layers, 509 tokens)");
    // The file's order: down_proj (172 wide: int4-g32 cannot take it) before q_proj.
    expect(folder.results.map((r) => [r.tensor, r.format, "calibration" in r ? r.calibration : "error" in r ? "error" : undefined])).toEqual([
      ["model.layers.1.mlp.down_proj.weight", "gptq4-g32", "file"],
      ["model.layers.1.mlp.down_proj.weight", "int4-g32", "error"],
      ["model.layers.1.self_attn.q_proj.weight", "gptq4-g32", "file"],
      ["model.layers.1.self_attn.q_proj.weight", "int4-g32", "file"],
    ]);
    const errorOf = (r: (typeof folder.results)[number] | undefined) => (r && "output_error" in r ? r.output_error! : NaN);
    expect(errorOf(folder.results[2])).toBeLessThan(errorOf(folder.results[3]));
    // One file: only the layers it feeds are calibrated on it; the others say why they are synthetic.
    const one = JSON.parse((await quantlab("quantize", STORIES_FILE, ...args, "--calibration", path.join(calib, "layers.1.attn_in.f32"))).stdout) as QuantizeJson;
    expect(one.calibration_label).toBe("activation files (1 file for 3 of 35 linear layers, 509 tokens)");
    expect(one.results.map((r) => ("calibration" in r ? r.calibration : "error"))).toEqual(["synthetic", "error", "file", "file"]);
    expect(errorOf(one.results[2])).toBe(errorOf(folder.results[2]));

    // A text of one's own: the model folder is run on it.
    const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-calib-"));
    try {
      const text = path.join(dir, "my-story.txt");
      await writeFile(text, "Once upon a time, a little dog found a red ball in the park. He ran to show it to his friend the cat. ".repeat(4));
      const ran = JSON.parse((await quantlab("quantize", STORIES_DIR, ...args, "--calibration", text)).stdout) as QuantizeJson;
      expect(ran.calibration).toBe("model");
      expect(ran.calibration_label).toMatch(/^model run on my-story\.txt, \d+ tokens$/);
      expect(errorOf(ran.results[2])).not.toBe(errorOf(folder.results[2]));

      const bad = path.join(dir, "layers.1.attn_in.f32");
      await writeFile(bad, new Uint8Array(4 * 100));
      for (const [source, target, message] of [
        [bad, STORIES_FILE, /--calibration: layers\.1\.attn_in\.f32: 100 values are not whole tokens of 64/],
        [path.join(dir, "nothing.f32"), STORIES_FILE, /--calibration: .*nothing\.f32 is not a file/],
        [text, STORIES_FILE, /a calibration text needs a model folder with config\.json and tokenizer\.json/],
        [STORIES_FILE, STORIES_FILE, /model\.safetensors names no linear layer of the model/],
      ] as const) {
        const run = await quantlab("quantize", target, ...args, "--calibration", source);
        expect(run.code, source).toBe(2);
        expect(run.stderr.trim().split("\n")).toHaveLength(1);
        expect(run.stderr).toMatch(message);
      }
      // NaN is found when the layer reads its file: exit 2, naming the file, token and channel.
      const nan = new Uint8Array(await readFile(path.join(calib, "layers.1.attn_in.f32")));
      new DataView(nan.buffer).setFloat32(4 * (64 * 7 + 5), NaN, true);
      await writeFile(bad, nan);
      const poisoned = await quantlab("quantize", STORIES_FILE, ...args, "--calibration", bad);
      expect(poisoned.code).toBe(2);
      expect(poisoned.stderr).toMatch(/^quantlab quantize: layers\.1\.attn_in\.f32: the activations hold 1 non-finite value \(NaN at token 7, channel 5\)/);
      expect(poisoned.stderr.trim().split("\n")).toHaveLength(1);
      const noCalibrated = await quantlab("quantize", STORIES_FILE, "--formats", "int4-g32", "--calibration", calib);
      expect(noCalibrated.code).toBe(2);
      expect(noCalibrated.stderr).toMatch(/--calibration is for GPTQ \/ AWQ settings/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("an id outside the grammar is an unknown format: exit 2", async () => {
    const run = await quantlab("quantize", STORIES_FILE, "--formats", "gptq4-g128-noclip");
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unknown format "gptq4-g128-noclip"/);
  });
});
