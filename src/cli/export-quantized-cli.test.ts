/**
 * The GPTQ / AWQ checkpoints and the ONNX file `quantlab export` writes, read back on stories260K:
 *  - every packed layer, unpacked with the loaders' formulas (test/gptq-awq-unpack.ts, not the packer), is
 *    exactly our quantizer's codes and zero points times its scales rounded to float16 (the stored dtype);
 *  - GPTQ: the checkpoint, dequantized and run through the lab's ONNX graph, scores the evaluation text as the
 *    lab's gptq4 run with the same layers quantized (the rest float);
 *  - AWQ: the folded checkpoint (norms / s, W*s) computes the same function as its layers unfolded, and holds
 *    the lab's awq precision's weights where both quantize a layer set;
 *  - ONNX: the written file in a fresh onnxruntime-web session gives the in-memory session's logits.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeToF32 } from "../formats/dtypes.ts";
import { readTensorBytes } from "../formats/model.ts";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.ts";
import { collectCalibration, openPrecision, precisionModel } from "../model/evaluate.ts";
import type { LoadedDecoder } from "../model/load.ts";
import { prepareWeights } from "../model/precision.ts";
import { qualityOf } from "../model/quality.ts";
import { DecoderSession, type OrtModule } from "../model/session.ts";
import type { DecoderWeights } from "../model/weights.ts";
import { NodeFileSource } from "../node/file-source.ts";
import { loadModelDir } from "../node/model-dir.ts";
import { quantizeForExport, roundToF16, type QuantizedExport } from "../pipeline/export-quantized.ts";
import { dequantizeGrouped } from "../quant/gptq.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantlabInProcess } from "../../test/quantlab-cli.ts";
import { unpackAwqGemm, unpackGptqV1 } from "../../test/gptq-awq-unpack.ts";
import { BUNDLED_CALIBRATION, BUNDLED_TEXT, nodeOrt } from "./eval.ts";

let dir: string;
let model: LoadedDecoder;
let ort: OrtModule;
let evalIds: number[];
let calibration: Map<string, Float32Array>;
let config: Record<string, unknown>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-export-q-"));
  model = await loadModelDir(STORIES_DIR);
  ort = await nodeOrt();
  evalIds = model.tokenizer!.encode(await readFile(BUNDLED_TEXT, "utf8")).slice(0, 512);
  // The calibration the CLI takes: the second bundled story, cut to the context.
  const calibrationIds = model.tokenizer!.encode(await readFile(BUNDLED_CALIBRATION, "utf8")).slice(0, 512);
  calibration = await collectCalibration(model, calibrationIds, { ort, executionProvider: "wasm" });
  config = JSON.parse(await readFile(path.join(STORIES_DIR, "config.json"), "utf8"));
}, 120_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

async function readCheckpoint(folder: string): Promise<{ file: SafetensorsFile; tensor: (name: string) => Promise<Uint8Array>; headerJson: unknown }> {
  const bytes = await readFile(path.join(folder, "model.safetensors"));
  // The header parsed as plain JSON, independently of our reader: an 8-byte length, then UTF-8 JSON.
  const n = Number(bytes.readBigUInt64LE(0));
  const headerJson = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const source = await NodeFileSource.open(path.join(folder, "model.safetensors"));
  try {
    const file = await readSafetensors(source);
    const data = new Map<string, Uint8Array>();
    for (const t of file.tensors) data.set(t.name, await readTensorBytes(t));
    return { file, headerJson, tensor: async (name) => data.get(name)! };
  } finally {
    await source.close();
  }
}

const i32 = (b: Uint8Array) => new Int32Array(b.slice().buffer);

/** Our quantizer's weights with float16 scales: what the checkpoint must hold exactly. */
function expectedWeights(exported: QuantizedExport, module: string): Float32Array {
  const layer = exported.layers.find((l) => l.module === module)!;
  const q = layer.quantized;
  return dequantizeGrouped(q.codes, roundToF16(q.scales), q.zeros, q.gIdx, { rows: q.rows, cols: q.cols });
}

/** The checkpoint's weights as float32 (packed layers dequantized with `unpack`), named as the model's. */
async function dequantizedCheckpoint(
  folder: string,
  unpack: (module: string, rows: number, cols: number, read: (name: string) => Promise<Uint8Array>) => Promise<Float32Array>,
): Promise<DecoderWeights> {
  const { file, tensor } = await readCheckpoint(folder);
  const names = new Set(file.tensors.map((t) => t.name));
  const out: DecoderWeights = new Map();
  for (const t of model.weights.values()) {
    const module = t.name.replace(/\.weight$/, "");
    const values = names.has(t.name)
      ? decodeToF32(file.tensors.find((x) => x.name === t.name)!.dtype, await tensor(t.name))
      : await unpack(module, t.shape[0]!, t.shape[1]!, tensor);
    out.set(t.name, { name: t.name, shape: t.shape, values });
  }
  return out;
}

async function logitsOf(weights: DecoderWeights): Promise<Float32Array> {
  const { session } = await openPrecision({ arch: model.arch, weights }, "f32", { ort, executionProvider: "wasm" });
  try {
    return (await session.forward(evalIds)).logits;
  } finally {
    await session.release();
  }
}

describe("quantlab export --to gptq", () => {
  it("GPTQ v1 layers unpack to our GPTQ's weights, and the checkpoint scores as the lab's gptq4 run", async () => {
    const out = path.join(dir, "gptq");
    const run = await quantlabInProcess("export", STORIES_DIR, "--to", "gptq", "--bits", "4", "--group", "128", "--out", out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("20 layers packed, 15 kept unquantized");
    expect(run.stderr).toContain("model.layers.0.mlp.down_proj: kept unquantized (172 input features do not fill whole int32 words");
    expect((await readdir(out)).sort()).toEqual(
      ["config.json", "generation_config.json", "model.safetensors", "quantize_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"],
    );
    const quantizeConfig = JSON.parse(await readFile(path.join(out, "quantize_config.json"), "utf8"));
    expect(quantizeConfig).toMatchObject({ bits: 4, group_size: 128, desc_act: false, sym: false, checkpoint_format: "gptq" });
    const qc = JSON.parse(await readFile(path.join(out, "config.json"), "utf8")).quantization_config;
    expect(qc.modules_to_not_convert).toHaveLength(15);
    expect(qc.modules_in_block_to_quantize).toEqual([["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]]);

    const { headerJson } = await readCheckpoint(out);
    expect((headerJson as Record<string, { dtype: string; shape: number[] }>)["model.layers.0.self_attn.q_proj.qweight"]).toMatchObject({ dtype: "I32", shape: [8, 64] });
    expect((headerJson as Record<string, { dtype: string; shape: number[] }>)["model.layers.0.self_attn.k_proj.qzeros"]).toMatchObject({ dtype: "I32", shape: [1, 4] });

    // Our GPTQ with the CLI's settings (deterministic): the checkpoint holds exactly its codes and zeros.
    const ours = quantizeForExport({ arch: model.arch, weights: model.weights, config, calibration }, { method: "gptq", bits: 4, group: 128 });
    let maxScaleRounding = 0;
    const exported = await dequantizedCheckpoint(out, async (module, rows, cols, read) => {
      const w = unpackGptqV1(i32(await read(`${module}.qweight`)), i32(await read(`${module}.qzeros`)), await read(`${module}.scales`), i32(await read(`${module}.g_idx`)), 4, rows, cols);
      expect(w, module).toEqual(expectedWeights(ours, module));
      const dequantized = ours.layers.find((l) => l.module === module)!.dequantized;
      w.forEach((v, i) => (maxScaleRounding = Math.max(maxScaleRounding, Math.abs(v - dequantized[i]!))));
      return w;
    });
    expect(maxScaleRounding).toBeGreaterThan(0); // float16 scales do round
    expect(maxScaleRounding).toBeLessThan(1e-3);

    // The lab's gptq4, quantizing the same layers (the others float32 as the checkpoint keeps them).
    const keepFloat = new Set([...model.weights.keys()].filter((n) => !ours.layers.some((l) => `${l.module}.weight` === n)));
    const lab = precisionModel(model, "gptq4", {}, { calibration, keepFloat });
    const labSession = await DecoderSession.create(ort, lab.bytes, model.arch, "wasm");
    const labLogits = (await labSession.forward(evalIds)).logits;
    await labSession.release();
    const labPpl = qualityOf(labLogits, model.arch.vocabSize, evalIds).ppl;
    const exportPpl = qualityOf(await logitsOf(exported), model.arch.vocabSize, evalIds).ppl;
    const f32Ppl = qualityOf(await logitsOf(model.weights), model.arch.vocabSize, evalIds).ppl;
    console.log(`stories260K eval ppl: f32 ${f32Ppl.toFixed(5)}, lab gptq4 (same layers) ${labPpl.toFixed(5)}, exported GPTQ checkpoint ${exportPpl.toFixed(5)}`);
    expect(exportPpl).not.toBe(f32Ppl);
    expect(Math.abs(exportPpl - labPpl) / labPpl).toBeLessThan(1e-4);
  }, 180_000);

  it("act-order, symmetric, group 32: the act-order g_idx and the zero point 8 come back exactly", async () => {
    const out = path.join(dir, "gptq-act");
    const run = await quantlabInProcess("export", STORIES_DIR, "--to", "gptq", "--group", "32", "--act-order", "--sym", "--out", out);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(await readFile(path.join(out, "quantize_config.json"), "utf8"))).toMatchObject({ group_size: 32, desc_act: true, sym: true });
    const ours = quantizeForExport({ arch: model.arch, weights: model.weights, config, calibration }, { method: "gptq", bits: 4, group: 32, actOrder: true, sym: true });
    const { tensor } = await readCheckpoint(out);
    let shuffled = 0;
    for (const { module, quantized } of ours.layers) {
      const gIdx = i32(await tensor(`${module}.g_idx`));
      if (gIdx.some((g, i) => g !== Math.floor(i / 32))) shuffled++;
      expect([...new Set(i32(await tensor(`${module}.qzeros`)))].map((w) => w >>> 0), module).toEqual([0x77777777]); // 8 - 1 in every nibble
      const w = unpackGptqV1(i32(await tensor(`${module}.qweight`)), i32(await tensor(`${module}.qzeros`)), await tensor(`${module}.scales`), gIdx, 4, quantized.rows, quantized.cols);
      expect(w, module).toEqual(expectedWeights(ours, module));
    }
    expect(shuffled).toBe(ours.layers.length); // act-order regrouped every layer's columns
  }, 120_000);

  it("bad settings or a target in the way: exit 2, one line, nothing written", async () => {
    const out = path.join(dir, "bad");
    const cases: [string[], RegExp][] = [
      [["--to", "gptq", "--bits", "3"], /GPTQ layout packs 2, 4 or 8 bits/],
      [["--to", "awq", "--group", "100"], /--group 100/],
      // At group 128 no stories260K layer fits AWQ (rows of 64 and 172): nothing to export.
      [["--to", "awq"], /no linear layer fits the AWQ layout.*multiple of the group size 128/],
      [["--to", "onnx", "--precision", "int5"], /unknown precision "int5"/],
    ];
    for (const [args, message] of cases) {
      const run = await quantlabInProcess("export", STORIES_DIR, ...args, "--out", out);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toMatch(message);
    }
    const taken = await quantlabInProcess("export", STORIES_DIR, "--to", "gptq", "--out", dir);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toMatch(/exists and is not an empty folder/);
    expect((await readdir(dir)).filter((f) => f.startsWith("bad"))).toEqual([]);
  }, 120_000);
});

describe("quantlab export --to awq", () => {
  it("AutoAWQ GEMM layers unpack to our AWQ's weights, and the folded scales keep the function", async () => {
    const out = path.join(dir, "awq");
    const run = await quantlabInProcess("export", STORIES_DIR, "--to", "awq", "--group", "32", "--out", out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("20 layers packed, 15 kept unquantized");
    const qc = JSON.parse(await readFile(path.join(out, "config.json"), "utf8")).quantization_config;
    expect(qc).toMatchObject({ quant_method: "awq", bits: 4, group_size: 32, zero_point: true, version: "gemm" });

    const ours = quantizeForExport({ arch: model.arch, weights: model.weights, config, calibration }, { method: "awq", bits: 4, group: 32 });
    const exported = await dequantizedCheckpoint(out, async (module, rows, cols, read) => {
      const w = unpackAwqGemm(i32(await read(`${module}.qweight`)), i32(await read(`${module}.qzeros`)), await read(`${module}.scales`), 32, rows, cols);
      expect(w, module).toEqual(expectedWeights(ours, module));
      return w;
    });
    // The norms in front of q/k/v carry 1/s (stories260K has grouped KV heads: o_proj keeps s = 1).
    const norm = "model.layers.0.input_layernorm.weight";
    const s = ours.awqScales.get(norm)!;
    expect(s).toBeDefined();
    expect(ours.awqScales.has("model.layers.0.self_attn.v_proj.weight")).toBe(false);
    expect(exported.get(norm)!.values).toEqual(model.weights.get(norm)!.values.map((v, c) => Math.fround(v / s[c]!)));

    // The lab's awq4-g32 precision runs the same folding (one implementation): where the layout took every layer
    // of a set (q/k/v, and o with s = 1), its graph holds exactly the checkpoint's weights before the fp16 rounding
    // of the scales, and the same folded norms. gate/up (172 rows, not a multiple of 8) stay float in the
    // checkpoint but are quantized per the lab's rules, so their set differs.
    const lab = prepareWeights(model.weights, "awq4-g32", { calibration });
    const sameSets = ours.layers.filter((q) => /self_attn/.test(q.module));
    expect(sameSets.length).toBe(4 * model.arch.numLayers);
    for (const q of sameSets) expect(lab.tensors.get(`${q.module}.weight`)!.decoded, q.module).toEqual(q.dequantized);
    expect(lab.tensors.get(norm)!.decoded).toEqual(exported.get(norm)!.values);

    // Unfolded: the original norms, and each layer's columns divided back by its set's s.
    const unfolded: DecoderWeights = new Map(exported);
    for (const [prev, scales] of ours.awqScales) {
      unfolded.set(prev, model.weights.get(prev)!);
      const readers = prev.endsWith("input_layernorm.weight") ? ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"] : ["mlp.gate_proj", "mlp.up_proj"];
      for (const r of readers) {
        const name = prev.replace(/(input|post_attention)_layernorm\.weight$/, `${r}.weight`);
        const t = exported.get(name)!;
        const cols = t.shape[1]!;
        unfolded.set(name, { ...t, values: t.values.map((v, i) => Math.fround(v / scales[i % cols]!)) });
      }
    }
    const folded = await logitsOf(exported);
    const plain = await logitsOf(unfolded);
    let maxDiff = 0;
    folded.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - plain[i]!))));
    const foldedPpl = qualityOf(folded, model.arch.vocabSize, evalIds).ppl;
    const plainPpl = qualityOf(plain, model.arch.vocabSize, evalIds).ppl;
    const f32Ppl = qualityOf(await logitsOf(model.weights), model.arch.vocabSize, evalIds).ppl;
    console.log(`AWQ g32 checkpoint: ppl ${foldedPpl.toFixed(5)} folded, ${plainPpl.toFixed(5)} unfolded (f32 ${f32Ppl.toFixed(5)}); max |logit diff| ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThan(1e-3);
    expect(Math.abs(foldedPpl - plainPpl) / plainPpl).toBeLessThan(1e-5);
    // Folding wrongly (the norms left as they were) would change the function: the check can fail.
    const wrong: DecoderWeights = new Map(exported);
    for (const prev of ours.awqScales.keys()) wrong.set(prev, model.weights.get(prev)!);
    const wrongPpl = qualityOf(await logitsOf(wrong), model.arch.vocabSize, evalIds).ppl;
    expect(Math.abs(wrongPpl - plainPpl) / plainPpl).toBeGreaterThan(1e-3);
  }, 180_000);
});

describe("quantlab export --to onnx", () => {
  it("the written file, in a fresh session, gives the in-memory session's logits", async () => {
    const out = path.join(dir, "int4.onnx");
    const run = await quantlabInProcess("export", STORIES_DIR, "--to", "onnx", "--precision", "int4-g32", "--out", out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/int4-g32/);
    const bytes = new Uint8Array(await readFile(out));
    const fromFile = await DecoderSession.create(ort, bytes, model.arch, "wasm");
    const { session: inMemory } = await openPrecision(model, "int4-g32", { ort, executionProvider: "wasm" });
    try {
      const a = (await fromFile.forward(evalIds.slice(0, 64))).logits;
      const b = (await inMemory.forward(evalIds.slice(0, 64))).logits;
      expect(a).toEqual(b);
      const f32 = await logitsOf(model.weights);
      expect(a).not.toEqual(f32.subarray(0, a.length)); // a real int4 graph, not the f32 one
    } finally {
      await fromFile.release();
      await inMemory.release();
    }
    expect(bytes).toEqual(precisionModel(model, "int4-g32").bytes);
  }, 120_000);
});
