/**
 * `quantlab gptq` and `quantlab awq`: one linear layer quantized with calibration activations. The weights
 * come from a raw float32 file (--shape OUT,IN) or a tensor of a safetensors model (--tensor NAME); the
 * activations are raw float32 [tokens, IN] files, streamed through the calibration pass in chunks (never
 * held whole). Both print the relative output error ||X W^T - X Q^T||^2 / ||X W^T||^2 on the calibration
 * tokens (and on --eval tokens: calibration is not evaluation), round-to-nearest's in the same setting, the
 * weight MSE and the time; --out writes the pieces a checkpoint stores.
 */
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { formatMeasure } from "../common/format.ts";
import { openModel, readTensorRows } from "../formats/model.ts";
import type { LabDevice } from "../gpu/device.ts";
import { closeSources } from "../node/file-source.ts";
import { awqGptqQuantize, awqQuantize, awqRtn, AWQ_DEFAULT_GROUP } from "../quant/awq.ts";
import type { MatrixShape } from "../quant/format.ts";
import { gptqQuantize, gptqRtn, type GptqResult } from "../quant/gptq.ts";
import { clipSampleStep, HessianAccumulator, type CalibrationStats } from "../quant/hessian.ts";
import { relOutputErrorGram, weightMse } from "../quant/output-error.ts";
import { describeDevice, openGpuDevice, reportRunError } from "./backend.ts";
import { EXIT, type CliIO, type Command } from "./command.ts";
import { openTarget } from "./inspect.ts";
import { backendOption, CliInputError, float32Of, readExactFile } from "./quant-args.ts";

/** What --json prints. */
export interface CalibratedJson {
  method: "gptq" | "awq" | "awq+gptq";
  rel_output_error: number;
  rel_output_error_eval?: number;
  weight_mse: number;
  rtn_rel_output_error: number;
  rtn_rel_output_error_eval?: number;
  seconds: number;
  calib_tokens: number;
  eval_tokens?: number;
  /** Where the activations came from: always a file here (--calib, --eval). */
  calibration: "file";
  calib_file: string;
  /** AWQ: the chosen ratio. */
  alpha?: number;
  warnings: string[];
}

const COMMON_OPTIONS = {
  weights: { type: "string" },
  tensor: { type: "string" },
  shape: { type: "string" },
  calib: { type: "string" },
  eval: { type: "string" },
  bits: { type: "string" },
  group: { type: "string" },
  json: { type: "boolean" },
  out: { type: "string" },
} as const;

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], extra: Record<string, { type: "string" | "boolean" }>): Values {
  try {
    return parseArgs({ args, options: { ...COMMON_OPTIONS, ...extra }, allowPositionals: false, strict: true }).values as Values;
  } catch (e) {
    throw new CliInputError(`${(e as Error).message} (--help shows the options)`);
  }
}

const str = (v: Values, name: string): string | undefined => v[name] as string | undefined;

function required(v: Values, name: string): string {
  const s = str(v, name);
  if (!s) throw new CliInputError(`--${name} is required`);
  return s;
}

function intOption(v: Values, name: string, fallback: number): number {
  const s = str(v, name);
  if (s === undefined) return fallback;
  if (name === "group" && (s === "-1" || s === "channel")) return -1;
  if (!/^\d+$/.test(s)) throw new CliInputError(`--${name} must be a whole number${name === "group" ? " (or channel)" : ""}, got "${s}"`);
  return Number(s);
}

function parseShape(text: string): MatrixShape {
  const m = /^(\d+),(\d+)$/.exec(text.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new CliInputError(`--shape must be OUT,IN (two positive integers), got "${text}"`);
  return { rows: Number(m[1]), cols: Number(m[2]) };
}

/** The weights: a raw .f32 file with --shape, or --tensor NAME of a safetensors file/folder/URL. */
async function loadWeights(v: Values): Promise<{ w: Float32Array; shape: MatrixShape }> {
  const file = required(v, "weights");
  const tensorName = str(v, "tensor");
  if (!tensorName) {
    const shapeText = str(v, "shape");
    if (!shapeText) throw new CliInputError("--shape OUT,IN is required with raw float32 weights (or name a safetensors tensor with --tensor)");
    const shape = parseShape(shapeText);
    return { w: float32Of(await readExactFile(file, shape.rows * shape.cols * 4, "the weight file")), shape };
  }
  const sources = await openTarget(file);
  try {
    const model = await openModel(sources);
    const t = model.tensors.find((x) => x.name === tensorName);
    if (!t) throw new CliInputError(`${file} has no tensor "${tensorName}"`);
    if (t.shape.length !== 2) throw new CliInputError(`tensor "${tensorName}" has shape [${t.shape.join(", ")}]: a linear layer's weight is 2-D [OUT, IN]`);
    const shape = { rows: t.shape[0]!, cols: t.shape[1]! };
    if (str(v, "shape") && JSON.stringify(parseShape(str(v, "shape")!)) !== JSON.stringify(shape)) {
      throw new CliInputError(`--shape ${str(v, "shape")} does not match tensor "${tensorName}" (${shape.rows},${shape.cols})`);
    }
    const w = new Float32Array(shape.rows * shape.cols);
    for await (const chunk of readTensorRows(t)) w.set(chunk.values, chunk.firstRow * shape.cols);
    return { w, shape };
  } finally {
    await closeSources(sources);
  }
}

/** Activations [tokens, cols] of a raw float32 file, streamed through the calibration pass 16 MiB at a time. */
async function activationStats(file: string, cols: number, what: string, clipSample: boolean): Promise<CalibrationStats> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    throw new CliInputError(`${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  const tokenBytes = cols * 4;
  if (size === 0 || size % tokenBytes !== 0) {
    throw new CliInputError(`${file}: ${what} has ${size} bytes, not a whole number of tokens of ${cols} float32 values (the layer's IN)`);
  }
  const tokens = size / tokenBytes;
  const acc = new HessianAccumulator(cols, clipSample ? { clipSampleStep: clipSampleStep(tokens) } : {});
  const perRead = Math.max(1, Math.floor((16 << 20) / tokenBytes)) * tokenBytes;
  const handle = await open(file, "r");
  try {
    const buffer = new Uint8Array(new ArrayBuffer(Math.min(perRead, size)));
    for (let at = 0; at < size; at += perRead) {
      const n = Math.min(perRead, size - at);
      await handle.read(buffer, 0, n, at);
      acc.add(new Float32Array(buffer.buffer, 0, n / 4));
    }
  } finally {
    await handle.close();
  }
  return acc.result();
}

interface Quantized {
  method: CalibratedJson["method"];
  q: Float32Array;
  rtn: Float32Array;
  alpha?: number;
  warnings: string[];
  files: Record<string, ArrayBufferView>;
  label: string;
}

async function runCalibrated(
  command: "gptq" | "awq",
  args: string[],
  io: CliIO,
  extra: Record<string, { type: "string" | "boolean" }>,
  quantize: (v: Values, w: Float32Array, shape: MatrixShape, calib: CalibrationStats, device: LabDevice | undefined) => Promise<Quantized>,
): Promise<number> {
  let device: LabDevice | undefined;
  try {
    const v = parse(args, extra);
    const { w, shape } = await loadWeights(v);
    const calibFile = required(v, "calib");
    if (str(v, "backend") !== undefined && backendOption(str(v, "backend")) === "webgpu") device = await openGpuDevice();
    const start = performance.now();
    const calib = await activationStats(calibFile, shape.cols, "the calibration file", command === "awq");
    const result = await quantize(v, w, shape, calib, device);
    const seconds = (performance.now() - start) / 1000;
    const evalFile = str(v, "eval");
    const evalStats = evalFile ? await activationStats(evalFile, shape.cols, "the eval file", false) : undefined;
    const json: CalibratedJson = {
      method: result.method,
      rel_output_error: relOutputErrorGram(calib.gram, w, result.q, shape),
      ...(evalStats ? { rel_output_error_eval: relOutputErrorGram(evalStats.gram, w, result.q, shape) } : {}),
      weight_mse: weightMse(w, result.q),
      rtn_rel_output_error: relOutputErrorGram(calib.gram, w, result.rtn, shape),
      ...(evalStats ? { rtn_rel_output_error_eval: relOutputErrorGram(evalStats.gram, w, result.rtn, shape), eval_tokens: evalStats.tokens } : {}),
      seconds,
      calib_tokens: calib.tokens,
      calibration: "file",
      calib_file: calibFile,
      ...(result.alpha !== undefined ? { alpha: result.alpha } : {}),
      warnings: result.warnings,
    };
    const outDir = str(v, "out");
    if (outDir) await writePieces(outDir, { q: result.q, ...result.files });
    if (v.json) io.out(JSON.stringify(json) + "\n");
    else io.out(resultText(result.label, shape, json, device ? describeDevice(device) : "CPU reference (TypeScript)", outDir));
    return EXIT.ok;
  } catch (e) {
    return reportRunError(command, e, io);
  } finally {
    device?.device.destroy();
  }
}

function resultText(label: string, shape: MatrixShape, j: CalibratedJson, where: string, outDir: string | undefined): string {
  const e = (x: number) => x.toExponential(4);
  const ratio = (a: number, b: number) => `${(a / b).toFixed(3)}x RTN`;
  const lines = [
    `${label} of a ${shape.rows} x ${shape.cols} layer, ${j.calib_tokens} calibration tokens; ${where}`,
    `  calibration activations: file ${j.calib_file} (${j.calib_tokens} tokens)${j.eval_tokens !== undefined ? `; held-out: --eval file (${j.eval_tokens} tokens)` : ""}`,
    `  output error, calibration  ${e(j.rel_output_error)}   RTN ${e(j.rtn_rel_output_error)}   ${ratio(j.rel_output_error, j.rtn_rel_output_error)}`,
  ];
  if (j.rel_output_error_eval !== undefined && j.rtn_rel_output_error_eval !== undefined) {
    lines.push(`  output error, held-out     ${e(j.rel_output_error_eval)}   RTN ${e(j.rtn_rel_output_error_eval)}   ${ratio(j.rel_output_error_eval, j.rtn_rel_output_error_eval)}   (${j.eval_tokens} tokens)`);
  }
  lines.push(`  weight MSE                 ${e(j.weight_mse)}`);
  if (j.alpha !== undefined) lines.push(`  AWQ ratio (alpha)          ${j.alpha}`);
  lines.push(`  time                       ${formatMeasure(j.seconds, 3)} s`);
  for (const w of j.warnings) lines.push(`warning: ${w}`);
  if (outDir) lines.push(`wrote the pieces to ${outDir}`);
  return lines.join("\n") + "\n";
}

/** Raw little-endian files named after their type: q.f32, codes.u8, g_idx.i32, ... */
async function writePieces(dir: string, pieces: Record<string, ArrayBufferView>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const ext = (a: ArrayBufferView) => (a instanceof Float32Array ? "f32" : a instanceof Int32Array ? "i32" : "u8");
  for (const [name, a] of Object.entries(pieces)) await writeFile(path.join(dir, `${name}.${ext(a)}`), new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

function gptqPieces(r: GptqResult): Record<string, ArrayBufferView> {
  return { codes: r.codes, scales: r.scales, zeros: r.zeros, g_idx: r.gIdx, ...(r.perm ? { perm: r.perm } : {}) };
}

export const gptqCommand: Command = {
  name: "gptq",
  summary: "Quantize one linear layer with GPTQ on calibration activations; print its output error against round-to-nearest.",
  usage:
    "quantlab gptq --weights W.f32 --shape OUT,IN | --weights MODEL --tensor NAME  --calib X.f32 [--bits 4] [--group 128] [--act-order] " +
    "[--static-groups] [--sym] [--damp 0.01] [--eval X2.f32] [--backend cpu|webgpu] [--json] [--out DIR]",
  details: [
    "Options:",
    "  --weights FILE      the layer's weight: raw little-endian float32 [OUT, IN] with --shape OUT,IN, or a",
    "                      safetensors file/folder/URL with --tensor NAME",
    "  --calib X.f32       calibration activations (the layer's inputs), raw float32 [tokens, IN]",
    "  --eval X2.f32       held-out activations: their output error is reported too (calibration is not evaluation)",
    "  --bits N            2..8 (default 4)",
    "  --group G           columns per group: 32, 64, 128 (default) or any size; channel (or --group=-1) for one",
    "                      group per output channel",
    "  --act-order         quantize columns in order of decreasing Hessian diagonal",
    "  --static-groups     with --act-order: group parameters from the natural column groups, fixed up front",
    "  --sym               symmetric grid (zero point 2^(bits-1), as the reference: levels -8..7 at 4 bits)",
    "  --damp F            dampening, a fraction of the mean Hessian diagonal (default 0.01)",
    "  --backend B         cpu (TypeScript reference, default) or webgpu (WGSL kernels through Dawn)",
    "  --out DIR           write q.f32 (dequantized), codes.u8, scales.f32, zeros.f32, g_idx.i32 (and perm.i32)",
    "",
    'Output: the errors and time; --json prints {"rel_output_error", "rel_output_error_eval" (with --eval),',
    '"weight_mse", "rtn_rel_output_error", "seconds", ...}. Bad input exits with code 2 and one line.',
    "",
    "Example:",
    "  npx quantlab gptq --weights W.f32 --shape 512,512 --calib X.f32 --bits 4 --group 128 --act-order --eval X_eval.f32",
  ].join("\n"),
  run: (args, io) =>
    runCalibrated(
      "gptq",
      args,
      io,
      { "act-order": { type: "boolean" }, "static-groups": { type: "boolean" }, sym: { type: "boolean" }, damp: { type: "string" }, backend: { type: "string" } },
      async (v, w, shape, calib, device) => {
        const dampText = str(v, "damp");
        const percDamp = dampText === undefined ? undefined : Number(dampText);
        if (percDamp !== undefined && !(percDamp >= 0 && Number.isFinite(percDamp))) throw new CliInputError(`--damp must be a number >= 0, got "${dampText}"`);
        const options = {
          bits: intOption(v, "bits", 4),
          group: intOption(v, "group", 128),
          sym: v.sym === true,
          actOrder: v["act-order"] === true,
          staticGroups: v["static-groups"] === true,
          ...(percDamp !== undefined ? { percDamp } : {}),
        };
        if (options.staticGroups && !options.actOrder) throw new CliInputError("--static-groups only matters with --act-order");
        let r: GptqResult;
        if (device) {
          const { gpuGptqQuantize } = await import("../gpu/gptq.ts");
          r = await gpuGptqQuantize(device, w, shape, calib, options);
        } else {
          r = gptqQuantize(w, shape, calib, options);
        }
        const label = `GPTQ ${options.bits}-bit ${options.group === -1 ? "per-channel" : `g${options.group}`} ${options.sym ? "sym" : "asym"}${options.actOrder ? " act-order" : ""}${options.staticGroups ? " static-groups" : ""}`;
        return { method: "gptq", q: r.q, rtn: gptqRtn(w, shape, options), warnings: r.warnings, files: gptqPieces(r), label };
      },
    ),
};

export const awqCommand: Command = {
  name: "awq",
  summary: "Quantize one linear layer with AWQ (activation-aware scales and clipping); print its output error against round-to-nearest.",
  usage:
    "quantlab awq --weights W.f32 --shape OUT,IN | --weights MODEL --tensor NAME  --calib X.f32 [--bits 4] [--group 128] [--no-clip] " +
    "[--no-zero-point] [--gptq] [--eval X2.f32] [--json] [--out DIR]",
  details: [
    "Options:",
    "  --weights, --tensor, --shape, --calib, --eval, --bits, --json: as for `quantlab gptq`",
    "  --group G           columns per group, dividing IN (default 128); channel (or --group=-1) per output channel",
    "  --no-clip           skip the clip search (scales only)",
    "  --no-zero-point     symmetric grid (no zero point)",
    "  --gptq              AWQ followed by GPTQ: GPTQ quantizes W*s against the inputs X/s",
    "  --out DIR           write q.f32 (comparable with W: divided back by s), q_scaled.f32 (what a checkpoint",
    "                      stores, 1/s folded into the previous operation), awq_scales.f32, clip_max.f32, codes.u8,",
    "                      scales.f32, zeros.f32",
    "",
    'Output: as `quantlab gptq`, plus the chosen ratio (alpha); RTN is AWQ\'s own quantizer without scales.',
    "",
    "Example:",
    "  npx quantlab awq --weights ../shared/models/stories260K --tensor model.layers.2.mlp.gate_proj.weight \\",
    "      --calib ../shared/models/stories260K/reference/calib/layers.2.mlp_in.f32 --group 32",
  ].join("\n"),
  run: (args, io) =>
    runCalibrated("awq", args, io, { "no-clip": { type: "boolean" }, "no-zero-point": { type: "boolean" }, gptq: { type: "boolean" } }, async (v, w, shape, calib) => {
      const options = { bits: intOption(v, "bits", 4), group: intOption(v, "group", AWQ_DEFAULT_GROUP), clip: v["no-clip"] !== true, zeroPoint: v["no-zero-point"] !== true };
      const rtn = awqRtn(w, shape, options);
      const label = `AWQ ${options.bits}-bit ${options.group === -1 ? "per-channel" : `g${options.group}`} ${options.zeroPoint ? "asym" : "sym"} ${options.clip ? "scale+clip" : "scale"}`;
      if (v.gptq) {
        const r = awqGptqQuantize(w, shape, calib, options, {});
        const files = { ...gptqPieces(r.gptq), q_scaled: r.gptq.q, awq_scales: r.awq.scales, ...(r.awq.clipMax ? { clip_max: r.awq.clipMax } : {}) };
        return { method: "awq+gptq", q: r.q, rtn, alpha: r.awq.alpha, warnings: r.gptq.warnings, files, label: `${label} + GPTQ` };
      }
      const r = awqQuantize(w, shape, calib, options);
      const files = { q_scaled: r.qScaled, awq_scales: r.scales, ...(r.clipMax ? { clip_max: r.clipMax } : {}), codes: r.codes, scales: r.qscales, zeros: r.qzeros };
      return { method: "awq", q: r.q, rtn, alpha: r.alpha, warnings: r.warnings, files, label };
    }),
};
