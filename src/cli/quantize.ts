/**
 * `quantlab quantize PATH|URL --formats q8_0,q4_K,int4-g128,nf4,... [--tensors REGEX] [--json]
 * [--backend cpu|webgpu]`: every matching tensor through every format with the lab's own pipeline
 * (src/pipeline/quantize-tensor.ts, the one the quantization worker runs), then the error metrics per
 * tensor and format and the model-wide memory totals per format.
 */
import { parseArgs } from "node:util";
import { formatBytes, formatCount, formatMeasure, formatShare } from "../common/format.ts";
import { openModel } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { isDecodable, quantizedSourceTypes, undecodableReason } from "../formats/tensor-data.ts";
import type { ByteSource } from "../formats/source.ts";
import type { LabDevice } from "../gpu/device.ts";
import { closeSources } from "../node/file-source.ts";
import { modelTotals } from "../pipeline/model-results.ts";
import { quantizableTensors, quantizeModel, type ModelCell } from "../pipeline/quantize-model.ts";
import { isCalibrated, type LabFormat } from "../pipeline/quantize-layer.ts";
import { calibrationOptions, calibrationTargets, fileCalibration, modelCalibration, type ActivationFile, type CalibrationOrWhy } from "../pipeline/model-calibration.ts";
import { tensorRowLayout } from "../formats/model.ts";
import { calibratedMethod } from "../quant/calibrated.ts";
import { isQuantInputError, QuantInputError } from "../quant/errors.ts";
import { loadModelDir } from "../node/model-dir.ts";
import { open, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { BUNDLED_CALIBRATION, nodeOrt } from "./eval.ts";
import { BackendUnavailableError, describeDevice, openGpuDevice, reportRunError } from "./backend.ts";
import { EXIT, type CliIO, type Command } from "./command.ts";
import { openTarget, reportError } from "./inspect.ts";
import { backendOption, CliInputError, formatByName } from "./quant-args.ts";

const CPU_BACKEND_REASON = "--backend cpu";

/** One tensor and format in `--json`. Numbers are null where JSON has none (an infinite SNR: no error at all). */
export type QuantizeJsonResult =
  | {
      tensor: string;
      format: string;
      mse: number;
      rmse: number;
      max_abs_err: number;
      snr_db: number | null;
      cosine: number;
      bits_per_weight: number;
      bytes_before: number;
      bytes_after: number;
      /** Additions to the issue's keys: */
      share_saved: number;
      ran_on: "gpu" | "cpu";
      /** Why it ran on the CPU (no kernel yet, --backend cpu, a lost device...); absent when it ran on the GPU. */
      why?: string;
      /** ||XW^T - XQ^T||^2 / ||XW^T||^2 on the layer's calibration activations (when it has some), and on held-out ones. */
      output_error?: number;
      output_error_heldout?: number;
      /** Where those activations came from. */
      calibration?: "model" | "synthetic" | "file";
    }
  | { tensor: string; format: string; error: string; fallback: string | null };

export interface QuantizeJsonTotal {
  format: string;
  /** The matching tensors' bytes as stored. */
  bytes_before: number;
  /** Their bytes in this format; a tensor the format cannot take counts with llama.cpp's fallback format. */
  bytes_after: number;
  /** Additions: how many tensors, and how many of them counted with a fallback (or as stored). */
  tensors: number;
  fallback_tensors: number;
}

export interface QuantizeJson {
  /** The activations output errors (and GPTQ / AWQ) use: the model run when the folder has config.json and a tokenizer, else synthetic. */
  calibration: "model" | "file" | "synthetic";
  calibration_label: string;
  /** Too few calibration tokens for a layer's columns (rank-deficient Hessian), ... */
  calibration_warnings: string[];
  results: QuantizeJsonResult[];
  totals: QuantizeJsonTotal[];
}

const finiteOrNull = (v: number) => (Number.isFinite(v) ? v : null);

function jsonResult(tensor: TensorInfo, r: ModelCell): QuantizeJsonResult {
  if (!r.ok) return { tensor: tensor.name, format: r.format, error: r.error.message, fallback: r.error.fallback ?? null };
  const m = r.metrics;
  return {
    tensor: tensor.name,
    format: r.format,
    mse: m.mse,
    rmse: m.rmse,
    max_abs_err: m.maxAbsErr,
    snr_db: finiteOrNull(m.snrDb),
    cosine: m.cosine,
    bits_per_weight: r.bitsPerWeight,
    bytes_before: tensor.bytes,
    bytes_after: r.stored.bytes,
    share_saved: tensor.bytes > 0 ? 1 - r.stored.bytes / tensor.bytes : 0,
    ran_on: r.ranOn,
    ...(r.why ? { why: r.why } : {}),
    ...(r.outputError
      ? {
          output_error: r.outputError.calibration,
          ...(r.outputError.heldOut !== undefined ? { output_error_heldout: r.outputError.heldOut } : {}),
          calibration: r.outputError.source,
        }
      : {}),
  };
}

interface Options {
  target: string;
  formats: LabFormat[];
  tensors: RegExp | undefined;
  json: boolean;
  backend: "cpu" | "webgpu";
  /** --calibration: a text for the model run, or activation files (a folder of .f32, or a comma-separated list). */
  calibration: string | undefined;
}

function parseOptions(args: string[]): Options {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { formats: { type: "string" }, tensors: { type: "string" }, json: { type: "boolean" }, backend: { type: "string" }, calibration: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new CliInputError(`${(e as Error).message} (--help shows the options)`);
  }
  const [target, ...extra] = parsed.positionals;
  if (target === undefined || extra.length > 0) throw new CliInputError(`expected one PATH or URL, got ${parsed.positionals.length}`);
  const v = parsed.values;
  if (!v.formats) throw new CliInputError("--formats is required, e.g. --formats q8_0,q4_K,int4-g128,nf4");
  const names = v.formats.split(",").map((s) => s.trim()).filter(Boolean);
  const formats = [...new Map(names.map((n): LabFormat => calibratedMethod(n) ?? formatByName(n)).map((f) => [f.id, f])).values()];
  let tensors: RegExp | undefined;
  if (v.tensors !== undefined) {
    try {
      tensors = new RegExp(v.tensors);
    } catch (e) {
      throw new CliInputError(`--tensors: ${(e as Error).message}`);
    }
  }
  return { target, formats, tensors, json: v.json ?? false, backend: backendOption(v.backend), calibration: v.calibration };
}

export const quantizeCommand: Command = {
  name: "quantize",
  summary: "Quantize a model's tensors with several formats; the error and memory of each, and the totals.",
  usage: "quantlab quantize PATH|URL --formats F1,F2,... [--tensors REGEX] [--json] [--backend cpu|webgpu] [--calibration TEXT.txt|DIR|A.f32,B.f32]",
  details: [
    "Streams every floating-point tensor of a safetensors model (a file, an index json, a folder or an",
    "http(s) URL read with Range requests) or of a .gguf file through each format: encode, decode, and",
    "compare with the original. Per tensor and format: MSE, RMSE, max |error|, SNR in dB, cosine",
    "similarity, exact bits per weight, bytes before (as stored) and after. Then per format the model-wide",
    "totals. A GGUF's quantized tensors (Q4_K, Q8_0...) are decoded first: their errors are relative to",
    "the file's weights, not to the float32 weights the file was made from.",
    "",
    "A tensor a format cannot take (a K-quant on rows that are not a multiple of 256) is listed with the",
    "reason and the format llama.cpp falls back to; the totals count it in that fallback format.",
    "",
    "GPTQ, AWQ and AWQ+GPTQ take part like formats: gptq4-g128, gptq4-g128-act, gptq3-channel-sym,",
    "awq4-g128, awq4-g32-noclip, awqgptq4-g128, ... (METHOD BITS [-g32|-g64|-g128|-channel] [-act] [-static]",
    "[-sym] [-noclip] [-dampX]). They calibrate on each linear layer's real inputs when the folder has",
    "config.json and tokenizer.json (the model is run in f32 on the lab's calibration text; a quarter of the",
    "tokens is held out), else on synthetic activations; every format then also gets the layer's output",
    "error ||XW^T - XQ^T||^2 / ||XW^T||^2 on them (and on the held-out tokens), labelled with the source.",
    "",
    "Options:",
    "  --formats LIST   comma-separated format ids (quantlab formats lists them): q8_0,q4_K,int4-g128,nf4",
    "  --tensors REGEX  only tensors whose name matches (JavaScript regular expression, unanchored)",
    "  --json           print {\"results\":[{\"tensor\",\"format\",\"mse\",\"rmse\",\"max_abs_err\",\"snr_db\",",
    "                   \"cosine\",\"bits_per_weight\",\"bytes_before\",\"bytes_after\",\"share_saved\",\"ran_on\",",
    "                   \"why\"}], \"totals\":[{\"format\",\"bytes_before\",\"bytes_after\",\"tensors\",\"fallback_tensors\"}]};",
    "                   a tensor a format cannot take is {\"tensor\",\"format\",\"error\",\"fallback\"} instead;",
    "                   snr_db is null when there is no error at all (an infinite SNR);",
    "                   why (only there when it ran on the CPU) says why it did; with calibration:",
    "                   \"output_error\", \"output_error_heldout\", \"calibration\" per result and",
    "                   \"calibration\":\"model\"|\"file\"|\"synthetic\", \"calibration_label\", \"calibration_warnings\"",
    "  --backend B      cpu (default: the TypeScript reference) or webgpu (the WGSL kernels through Dawn;",
    "                   formats without a kernel yet run on the CPU reference)",
    "  --calibration S  what the layers calibrate on instead of the lab's calibration text: a .txt file (the",
    "                   model folder is run on it), or raw activations: a folder of .f32 files or a",
    "                   comma-separated list, float32 [tokens, in] each, named after the layer's weight",
    "                   (model.layers.0.self_attn.q_proj.weight.f32) or layers.N.attn_in / mlp_in /",
    "                   o_proj_in / down_proj_in.f32 (or any name when --tensors picks one layer); layers",
    "                   without a file use synthetic activations",
    "",
    "Bad input (unknown format, a bad regex, an unreadable model) exits with code 2 and one line.",
    "",
    "Example:",
    "  npx quantlab quantize ../shared/models/stories260K --formats q8_0,q4_0,int4-g128,nf4 --tensors 'layers\\.0\\.'",
  ].join("\n"),
  async run(args, io) {
    let options: Options;
    try {
      options = parseOptions(args);
    } catch (e) {
      return reportRunError("quantize", e, io);
    }
    let sources: ByteSource[] = [];
    let device: LabDevice | undefined;
    try {
      sources = await openTarget(options.target);
      const model = await openModel(sources);
      const matching = model.tensors.filter((t) => !options.tensors || options.tensors.test(t.name));
      const tensors = quantizableTensors(matching);
      const undecodable = matching.filter((t) => !isDecodable(t));
      if (tensors.length === 0) {
        const why = undecodable.length > 0 ? ` (${undecodable[0]!.name}: ${undecodableReason(undecodable[0]!)})` : "";
        throw new CliInputError(`no floating-point tensor of ${model.name} matches ${options.tensors ? `/${options.tensors.source}/` : "(any)"}${why}`);
      }
      if (undecodable.length > 0 && !options.json) {
        const types = [...new Set(undecodable.map((t) => t.dtype))].join(", ");
        io.err(`quantlab quantize: left out ${undecodable.length} tensor${undecodable.length === 1 ? "" : "s"} stored as ${types}, which the lab can list but not decode\n`);
      }
      const calibration = await cliCalibration(options, model.tensors, tensors);
      if (options.backend === "webgpu") device = await openGpuDevice();
      const out = await quantizeAll(tensors, options, device, io, calibration);
      if (options.json) io.out(JSON.stringify(out) + "\n");
      else io.out(quantizeTable(model.name, out, device ? describeDevice(device) : "CPU reference (TypeScript)", quantizedSourceTypes(tensors)));
      for (const w of out.calibration_warnings) io.err(`quantlab: warning: ${w}\n`);
      return EXIT.ok;
    } catch (e) {
      // A calibration file found unusable when its layer reads it (NaN) is bad input too.
      if (e instanceof CliInputError || e instanceof BackendUnavailableError || isQuantInputError(e)) return reportRunError("quantize", e, io);
      return reportError(e, options.target, io);
    } finally {
      device?.device.destroy();
      await closeSources(sources);
    }
  },
};

/**
 * What the layers calibrate on, when a GPTQ / AWQ setting is asked for: --calibration's activation files or
 * text, else the lab's calibration text when the target is a folder with config.json and tokenizer.json (the
 * model run loads every weight in float32); otherwise why there is nothing (synthetic activations then).
 */
async function cliCalibration(options: Options, tensors: readonly TensorInfo[], selected: readonly TensorInfo[]): Promise<CalibrationOrWhy> {
  const source = options.calibration;
  if (!options.formats.some(isCalibrated)) {
    if (source !== undefined) throw new CliInputError("--calibration is for GPTQ / AWQ settings (gptq4-g128, awq4-g128, ...), and --formats has none");
    return { why: "no GPTQ / AWQ setting asked for" };
  }
  const kind = (p: string) => stat(p).then((s) => (s.isDirectory() ? "dir" : "file"), () => "missing" as const);
  if (source !== undefined && !/\.txt$/i.test(source)) {
    const paths = (await kind(source)) === "dir" ? (await readdir(source)).filter((f) => /\.f32$/i.test(f)).sort().map((f) => path.join(source, f)) : source.split(",");
    if (paths.length === 0) throw new CliInputError(`--calibration: ${source} holds no .f32 activation file`);
    const files: ActivationFile[] = [];
    for (const p of paths) {
      const info = await stat(p).catch(() => undefined);
      if (!info?.isFile()) throw new CliInputError(`--calibration: ${p} is not a file`);
      files.push({ name: path.basename(p), size: info.size, read: (start, end) => readRange(p, start, end) });
    }
    try {
      // With --tensors picking one layer, a file named after none is that layer's.
      return { model: await fileCalibration(files, calibrationTargets(tensors), selected.length === 1 ? selected[0]!.name : undefined) };
    } catch (e) {
      if (e instanceof QuantInputError) throw new CliInputError(`--calibration: ${e.message}`);
      throw e;
    }
  }
  const isDir = (await kind(options.target)) === "dir";
  const has = (name: string) => stat(path.join(options.target, name)).then(() => true, () => false);
  const runnable = isDir && (await has("config.json")) && (await has("tokenizer.json"));
  if (source !== undefined) {
    if (!runnable) throw new CliInputError(`--calibration ${source}: a calibration text needs a model folder with config.json and tokenizer.json to run; give activation files (.f32) instead`);
    if ((await kind(source)) !== "file") throw new CliInputError(`--calibration: ${source} is not a file`);
  }
  if (!isDir) return { why: "not a model folder" };
  if (!runnable) return { why: "no config.json and tokenizer.json in the folder" };
  const model = await loadModelDir(options.target);
  const text = { name: source ? path.basename(source) : "calibration.txt", text: await readFile(source ?? BUNDLED_CALIBRATION, "utf8") };
  return { model: await modelCalibration(model, text, { ort: await nodeOrt(), executionProvider: "wasm" }) };
}

/** Bytes start..end of a file (the whole file without a range). */
async function readRange(file: string, start?: number, end?: number): Promise<Uint8Array> {
  if (start === undefined) return new Uint8Array(await readFile(file));
  const handle = await open(file, "r");
  try {
    const out = new Uint8Array((end ?? (await handle.stat()).size) - start);
    const { bytesRead } = await handle.read(out, 0, out.length, start);
    return out.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Every tensor through every format, one tensor at a time (src/pipeline/quantize-model.ts). */
async function quantizeAll(tensors: TensorInfo[], options: Options, device: LabDevice | undefined, io: CliIO, calibration: CalibrationOrWhy): Promise<QuantizeJson> {
  const showProgress = !options.json && process.stderr.isTTY;
  const run = await quantizeModel(tensors, options.formats, {
    ...calibrationOptions(calibration),
    ...(device ? { device } : { noDeviceReason: CPU_BACKEND_REASON }),
    onProgress: showProgress ? (p) => io.err(`\r${Math.min(p.tensorsDone + 1, p.tensorsTotal)}/${p.tensorsTotal} ${p.tensor}\u001b[K`) : undefined,
  });
  if (showProgress) io.err("\r\u001b[K");
  const results = run.rows.flatMap((row, i) => row.cells.map((cell) => jsonResult(tensors[i]!, cell)));
  const totals = modelTotals(run.rows, run.formats).map(
    (t): QuantizeJsonTotal => ({ format: t.format, bytes_before: t.bytesBefore, bytes_after: t.bytesAfter, tensors: t.tensors, fallback_tensors: t.substitutions.length }),
  );
  const warnings = new Set<string>();
  if ("model" in calibration) {
    for (const t of tensors) {
      const { rowLength } = tensorRowLayout(t);
      for (const w of (await calibration.model.layer(t.name, rowLength))?.warnings ?? []) warnings.add(`${t.name}: ${w}`);
    }
  }
  const anyCalibrated = options.formats.some(isCalibrated);
  const label = "model" in calibration ? calibration.model.label : anyCalibrated ? `synthetic activations (${calibration.why})` : `none (${calibration.why})`;
  return { calibration: "model" in calibration ? calibration.model.source : "synthetic", calibration_label: label, calibration_warnings: [...warnings], results, totals };
}

/** Columns padded to their widest cell: the first `leftColumns` left-aligned, the rest right-aligned. */
export function table(header: string[], rows: string[][], leftColumns: number): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c < leftColumns ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** `storedAs`: the ggml types the tensors are stored in (a GGUF's), against whose decoded values the errors are measured. */
export function quantizeTable(modelName: string, out: QuantizeJson, where: string, storedAs: readonly string[] = []): string {
  const rows = out.results.map((r) =>
    "error" in r
      ? [r.tensor, r.format, `cannot: ${r.error.replace(/^tensor "[^"]*": /, "")}`]
      : [
          r.tensor,
          r.format,
          String(Number(r.bits_per_weight.toFixed(4))),
          formatMeasure(r.mse),
          formatMeasure(r.rmse),
          formatMeasure(r.max_abs_err),
          r.snr_db === null ? "∞" : r.snr_db.toFixed(2),
          r.cosine.toFixed(6),
          formatCount(r.bytes_before),
          formatCount(r.bytes_after),
          r.output_error === undefined
            ? "—"
            : `${formatMeasure(r.output_error)}${r.output_error_heldout !== undefined ? ` / ${formatMeasure(r.output_error_heldout)}` : ""}${r.calibration === "synthetic" ? " (synthetic)" : ""}`,
          r.ran_on,
        ],
  );
  // Error lines have three cells; pad them so the columns line up and the message runs past them.
  const width = 12;
  const metricLines = table(
    ["tensor", "format", "bits/w", "MSE", "RMSE", "max|err|", "SNR dB", "cosine", "bytes before", "bytes after", "out err calib / held-out", "ran on"],
    rows.map((r) => (r.length === width ? r : [r[0]!, r[1]!, ...Array<string>(width - 2).fill("")])),
    2,
  );
  rows.forEach((r, i) => {
    if (r.length !== width) metricLines[i + 1] = `${metricLines[i + 1]!.trimEnd()}  ${r[2]}`;
  });

  const totalLines = table(
    ["format", "tensors", "bytes before", "bytes after", "saved", "size after", "with fallback"],
    out.totals.map((t) => [
      t.format,
      String(t.tensors),
      formatCount(t.bytes_before),
      formatCount(t.bytes_after),
      formatShare(t.bytes_before > 0 ? 1 - t.bytes_after / t.bytes_before : 0),
      formatBytes(t.bytes_after),
      String(t.fallback_tensors),
    ]),
    1,
  );
  // Why formats ran on the CPU, once per distinct reason (only worth saying when a GPU was asked for).
  const whys = [...new Set(out.results.flatMap((r) => ("why" in r && r.why && r.why !== CPU_BACKEND_REASON ? [`${r.format}: ${r.why}`] : [])))];
  return [
    `${modelName}: ${new Set(out.results.map((r) => r.tensor)).size} tensors on ${where}`,
    ...(storedAs.length > 0 ? [`Errors are relative to the file's ${storedAs.join(", ")} weights as decoded, not the original float32 weights.`] : []),
    `calibration: ${out.calibration_label}`,
    "",
    ...metricLines,
    ...(whys.length > 0 ? ["", "Ran on the CPU reference:", ...whys.map((w) => `  ${w}`)] : []),
    "",
    "Totals (tensors a format cannot take counted in llama.cpp's fallback format):",
    ...totalLines,
    "",
  ].join("\n");
}
