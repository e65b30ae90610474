/**
 * `quantlab export MODEL_DIR --to gguf|gptq|awq|onnx ... --out OUT`:
 *  - gguf: a GGUF file llama.cpp loads (src/pipeline/export-gguf.ts);
 *  - gptq / awq: a checkpoint folder (model.safetensors with packed layers, config.json with its
 *    quantization_config, quantize_config.json for GPTQ, the tokenizer files), calibrated on the linear layers'
 *    inputs of the model's own run on a calibration text (src/pipeline/export-quantized.ts);
 *  - onnx: the graph the lab runs at a precision, weights inline (src/model/evaluate.ts precisionModel).
 * Everything is written as OUT.partial (a file or a folder) and renamed to OUT only once complete, so a failed
 * or interrupted export leaves nothing half-written under the target name.
 */
import { mkdir, open, readdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { isFormatError } from "../formats/errors.ts";
import { openModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { exportGguf, isExportError, planGgufExport } from "../pipeline/export-gguf.ts";
import { parseImatrix } from "../formats/imatrix.ts";
import { formatBytes } from "../common/format.ts";
import { EXIT, parseCommandArgs, type CliIO, type Command } from "./command.ts";
import { isModelInputError, ModelInputError } from "../model/architecture.ts";
import { collectCalibration, precisionModel } from "../model/evaluate.ts";
import { calibratedMethod, checkPrecision, fallbackSummary } from "../model/precision.ts";
import { loadModelDir } from "../node/model-dir.ts";
import { checkpointFiles, quantizeForExport, TOKENIZER_FILES, type QuantizedExportSettings } from "../pipeline/export-quantized.ts";
import { BUNDLED_CALIBRATION, nodeOrt, readText } from "./eval.ts";

async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

class UsageError extends Error {}

export const exportCommand: Command = {
  name: "export",
  summary: "Write a checkpoint as GGUF (llama.cpp), GPTQ or AWQ safetensors, or the ONNX graph the lab runs.",
  usage:
    "quantlab export MODEL_DIR --to gguf --type TYPE [--imatrix FILE] --out FILE.gguf\n" +
    "       quantlab export MODEL_DIR --to gptq|awq [--bits 4] [--group 128] [--act-order] [--sym] [--damp 0.01] [--calibration FILE] --out DIR\n" +
    "       quantlab export MODEL_DIR --to onnx [--precision P] [--calibration FILE] --out FILE.onnx",
  details: [
    "MODEL_DIR holds config.json, tokenizer.json (tokenizer_config.json optional) and the safetensors",
    "(one file or an index with shards).",
    "",
    "--to gguf: TYPE is a llama-quantize file type; each tensor gets the type llama-quantize's rules give it,",
    "with its fallbacks for rows a type cannot take (printed). Architectures: llama, mistral, qwen2.",
    "Tokenizers: SentencePiece-style BPE (tokenizer.ggml.model llama) and byte-level BPE (gpt2: Qwen2,",
    "Llama 3, with the pre-tokenizer llama.cpp must apply).",
    "  --type TYPE      F32, F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, Q4_0, ...",
    "  --imatrix FILE   llama.cpp importance matrix (llama-imatrix .dat) for the importance-weighted",
    "                   encoders, as llama-quantize --imatrix",
    "",
    "--to gptq | awq: a checkpoint folder transformers / vLLM / AutoGPTQ / AutoAWQ load: model.safetensors",
    "(qweight, qzeros, scales, g_idx as GPTQ v1 or AutoAWQ GEMM pack them), config.json with",
    "quantization_config, quantize_config.json (GPTQ) and the tokenizer files. The layers calibrate on their",
    "inputs in the model's own run (onnxruntime-web, wasm) on the calibration text. Layers the layout cannot",
    "take (rows that do not fill int32 words, AWQ rows the group does not divide) stay unquantized and are",
    "listed (modules_to_not_convert). AWQ folds its scales into the norms and previous linear layers.",
    "  --bits N         GPTQ 2, 4 or 8; AWQ 4 (default 4)",
    "  --group N        columns per group, 32, 64 or 128 (default 128); GPTQ also -1 (per channel)",
    "  --act-order      GPTQ: quantize columns in order of decreasing Hessian diagonal (desc_act)",
    "  --sym            symmetric (zero point 2^(bits-1))",
    "  --damp F         GPTQ dampening, a fraction of the mean Hessian diagonal (default 0.01)",
    "  --calibration FILE  the calibration text; default the lab's second bundled story (never the eval text)",
    "",
    "--to onnx: the graph the lab runs at a precision (f32, a registry format such as int4-g32, int8, q4_K,",
    "or gptq4 / awq4-g32, which calibrate as above), weights inline: MatMulNBits for int4/int8 groups,",
    "decoded float32 for other formats. A protobuf holds at most 2 GB: bigger models stop with a message.",
    "  --precision P    default f32",
    "",
    "  --out PATH       the file (gguf, onnx) or folder (gptq, awq) to write; written as PATH.partial and",
    "                   renamed when complete; a folder must not exist yet or be empty",
    "  --help           this text",
    "",
    "A model the writer cannot express (unknown architecture, no tokenizer) stops before anything is",
    "written: exit code 2 and one line.",
    "",
    "Examples:",
    "  npx quantlab export ../shared/models/stories260K --to gguf --type Q4_K_M --out stories.gguf",
    "  npx quantlab export ../shared/models/stories260K --to gptq --bits 4 --group 128 --out stories-gptq",
    "  npx quantlab export ../shared/models/stories260K --to onnx --precision int4-g32 --out stories.onnx",
  ].join("\n"),
  async run(args, io) {
    const parsed = parseCommandArgs(
      exportCommand,
      args,
      {
        to: { type: "string" },
        type: { type: "string" },
        out: { type: "string" },
        imatrix: { type: "string" },
        bits: { type: "string" },
        group: { type: "string" },
        "act-order": { type: "boolean" },
        sym: { type: "boolean" },
        damp: { type: "string" },
        calibration: { type: "string" },
        precision: { type: "string" },
      },
      io,
    );
    if (!parsed) return EXIT.usage;
    const { values } = parsed;
    const to = values.to ?? "gguf";
    const dir = parsed.positionals[0];
    const out = values.out;
    if (!dir || !out || parsed.positionals.length > 1 || (to === "gguf" && !values.type)) {
      io.err(`quantlab export: MODEL_DIR${to === "gguf" ? ", --type" : ""} and --out are required\nUsage: ${exportCommand.usage}\n`);
      return EXIT.usage;
    }
    if (!["gguf", "gptq", "awq", "onnx"].includes(to)) {
      io.err(`quantlab export: --to ${to} is not a target (gguf, gptq, awq, onnx)\n`);
      return EXIT.usage;
    }
    const partial = `${out}.partial`;
    try {
      if (to === "gguf") return await exportGgufFile(dir, values.type!, out, partial, values.imatrix, io);
      if (to === "onnx") return await exportOnnxFile(dir, values.precision ?? "f32", values.calibration, out, partial, io);
      return await exportQuantizedDir(dir, quantizedSettings(to, values), values.calibration, out, partial, io);
    } catch (e) {
      await rm(partial, { force: true, recursive: true });
      if (e instanceof UsageError || isExportError(e) || isFormatError(e) || isModelInputError(e)) {
        io.err(`quantlab export: ${(e as Error).message.replace(/\s*\n\s*/g, " ")}\n`);
        return EXIT.usage;
      }
      throw e;
    }
  },
};

function integerOption(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`${option} must be an integer, got "${value}"`);
  return n;
}

function quantizedSettings(
  to: string,
  values: { bits?: string; group?: string; "act-order"?: boolean; sym?: boolean; damp?: string },
): QuantizedExportSettings {
  const method = to as "gptq" | "awq";
  const bits = integerOption(values.bits, "--bits", 4);
  const group = integerOption(values.group, "--group", 128);
  if (method === "gptq" && ![2, 4, 8].includes(bits)) throw new UsageError(`--bits ${bits}: the GPTQ layout packs 2, 4 or 8 bits`);
  if (method === "awq" && bits !== 4) throw new UsageError(`--bits ${bits}: the AWQ (GEMM) layout packs 4 bits only`);
  if (![32, 64, 128].includes(group) && !(group === -1 && method === "gptq")) {
    throw new UsageError(`--group ${group}: use 32, 64 or 128${method === "gptq" ? " (or -1, per channel)" : ""}`);
  }
  if (method === "awq" && values["act-order"]) throw new UsageError("--act-order is a GPTQ setting");
  const settings: QuantizedExportSettings = { method, bits, group, sym: values.sym ?? false, actOrder: values["act-order"] ?? false };
  if (values.damp !== undefined) {
    const damp = Number(values.damp);
    if (!(damp > 0 && damp < 1)) throw new UsageError(`--damp must be a number between 0 and 1, got "${values.damp}"`);
    if (method === "awq") throw new UsageError("--damp is a GPTQ setting");
    settings.damp = damp;
  }
  return settings;
}

/** Loads the model for a calibrated or graph export, with the calibration text's ids when needed. */
async function loadForRun(dir: string) {
  await readJson(path.join(dir, "config.json"), true); // a clear "not found" before anything else
  return loadModelDir(dir);
}

/** Every linear layer's input in the model's run on the calibration text (the lab's second bundled story by default). */
export async function exportCalibration(model: Awaited<ReturnType<typeof loadModelDir>>, dir: string, file: string | undefined): Promise<Map<string, Float32Array>> {
  if (!model.tokenizer) throw new ModelInputError(`${dir}: no tokenizer.json, so the calibration text cannot be turned into tokens`);
  const ids = model.tokenizer.encode(await readText(file ?? BUNDLED_CALIBRATION)).slice(0, model.arch.maxPositionEmbeddings);
  if (ids.length < 2) throw new ModelInputError(`${file ?? BUNDLED_CALIBRATION}: the calibration text needs at least two tokens`);
  return collectCalibration(model, ids, { ort: await nodeOrt(), executionProvider: "wasm" });
}

/** A new file written whole at `partial`, then renamed to `out`. */
async function writeFileAtomically(partial: string, out: string, write: (file: Awaited<ReturnType<typeof open>>) => Promise<void>): Promise<void> {
  const file = await open(partial, "w").catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot write ${partial}: ${e.code ?? e.message}`);
  });
  try {
    await write(file);
  } finally {
    await file.close();
  }
  await rename(partial, out);
}

async function exportGgufFile(dir: string, type: string, out: string, partial: string, imatrixFile: string | undefined, io: CliIO): Promise<number> {
  let sources;
  try {
    const config = await readJson(path.join(dir, "config.json"), true);
    const tokenizer = await readJson(path.join(dir, "tokenizer.json"), false);
    const tokenizerConfig = await readJson(path.join(dir, "tokenizer_config.json"), false);
    sources = await openPath(dir);
    const model = await openModel(sources);
    const plan = await planGgufExport({ model, config, tokenizer, tokenizerConfig, name: path.basename(path.resolve(dir)) }, type);
    for (const t of plan.tensors) {
      if (t.fallbackFrom) io.err(`  ${t.entry.name}: ${t.fallbackFrom} does not fit rows of ${t.entry.dims[0]}; written as ${t.entry.type.name}\n`);
    }
    let imatrix: ReturnType<typeof parseImatrix> | undefined;
    if (imatrixFile) {
      const bytes = await readFile(imatrixFile).catch((e: NodeJS.ErrnoException) => {
        throw new UsageError(`${imatrixFile}: ${e.code === "ENOENT" ? "not found" : e.message}`);
      });
      imatrix = parseImatrix(new Uint8Array(bytes), imatrixFile);
      const unknown = [...imatrix.keys()].filter((k) => !plan.tensors.some((t) => t.entry.name === k));
      if (unknown.length > 0) io.err(`  the importance matrix names tensors the model does not have (ignored): ${unknown.slice(0, 3).join(", ")}${unknown.length > 3 ? ", ..." : ""}\n`);
    }
    let layout: Awaited<ReturnType<typeof exportGguf>> | undefined;
    await writeFileAtomically(partial, out, async (file) => {
      let position = 0;
      layout = await exportGguf(plan, {
        async write(bytes) {
          await file.write(bytes, 0, bytes.length, position);
          position += bytes.length;
        },
      }, { imatrix });
    });
    io.out(`${out}: ${plan.tensors.length} tensors, ${plan.fileType}, ${formatBytes(layout!.fileBytes)}\n`);
    return EXIT.ok;
  } finally {
    if (sources) await closeSources(sources);
  }
}

async function exportOnnxFile(dir: string, precision: string, calibrationFile: string | undefined, out: string, partial: string, io: CliIO): Promise<number> {
  checkPrecision(precision);
  const model = await loadForRun(dir);
  const calibration = calibratedMethod(precision) ? await exportCalibration(model, dir, calibrationFile) : undefined;
  const { prepared, bytes } = precisionModel(model, precision, {}, calibration ? { calibration } : {});
  await writeFileAtomically(partial, out, async (file) => {
    await file.write(bytes, 0, bytes.length, 0);
  });
  io.out(`${out}: ${prepared.precision}, ${formatBytes(bytes.length)}, fallbacks ${fallbackSummary(prepared.fallbacks)}\n`);
  return EXIT.ok;
}

async function exportQuantizedDir(dir: string, settings: QuantizedExportSettings, calibrationFile: string | undefined, out: string, partial: string, io: CliIO): Promise<number> {
  const existing = await readdir(out).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : []));
  if (existing && existing.length > 0) throw new UsageError(`${out} exists and is not an empty folder: give a new one`);
  const config = (await readJson(path.join(dir, "config.json"), true)) as Record<string, unknown>;
  const model = await loadForRun(dir);
  const calibration = await exportCalibration(model, dir, calibrationFile);
  const result = quantizeForExport({ arch: model.arch, weights: model.weights, config, calibration }, settings);
  if (result.layers.length === 0) {
    throw new UsageError(`no linear layer fits the ${settings.method.toUpperCase()} layout at these settings (${result.unconverted[0]?.reason ?? "no layers"}); nothing written`);
  }
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot write ${partial}: ${e.code ?? e.message}`);
  });
  for (const f of checkpointFiles(result)) {
    const file = await open(path.join(partial, f.name), "w");
    try {
      let position = 0;
      for (const part of f.parts) {
        await file.write(part, 0, part.length, position);
        position += part.length;
      }
    } finally {
      await file.close();
    }
  }
  for (const name of TOKENIZER_FILES) {
    // Contents only (not the source's permissions: a read-only model folder gives writable copies).
    const bytes = await readFile(path.join(dir, name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
    if (bytes) await writeFile(path.join(partial, name), bytes);
  }
  if (existing) await rmdir(out);
  await rename(partial, out);
  for (const u of result.unconverted) io.err(`  ${u.module}: kept unquantized (${u.reason})\n`);
  for (const w of result.warnings) io.err(`  warning: ${w}\n`);
  io.out(`${out}: ${settings.method.toUpperCase()} ${settings.bits}-bit, group ${settings.group}, ${result.layers.length} layers packed, ${result.unconverted.length} kept unquantized\n`);
  return EXIT.ok;
}
