/**
 * `quantlab eval` and `quantlab generate`: the model run in onnxruntime-web's wasm provider in Node, the
 * same modules the lab's worker calls (src/model). eval prints perplexity and the KL divergence from f32 at
 * each precision; generate prints one precision's continuation of a prompt.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { formatBytes, formatMeasure, formatShare } from "../common/format.ts";
import { isFormatError } from "../formats/errors.ts";
import { isModelInputError, ModelInputError } from "../model/architecture.ts";
import { evaluatePrecisions, openPrecision, type EvaluationReport } from "../model/evaluate.ts";
import type { LoadedDecoder } from "../model/load.ts";
import { checkPrecision, fallbackSummary } from "../model/precision.ts";
import { tokenPicker, type Sampling } from "../model/sampling.ts";
import type { OrtModule } from "../model/session.ts";
import { loadModelDir } from "../node/model-dir.ts";
import { EXIT, parseCommandArgs, usageError, type CliIO, type Command } from "./command.ts";
import { table } from "./quantize.ts";

export const DEFAULT_PRECISIONS = "f32,f16,int8,int4-g32,q8_0,q4_K,nf4";
/** The evaluation text the lab bundles (stories260K's reference text). */
export const BUNDLED_TEXT = fileURLToPath(new URL("../../public/models/stories260K/eval.txt", import.meta.url));
/** The second bundled text, for GPTQ/AWQ calibration (never the evaluation text). */
export const BUNDLED_CALIBRATION = fileURLToPath(new URL("../../public/models/stories260K/calibration.txt", import.meta.url));

export async function readText(file: string): Promise<string> {
  return readFile(file, "utf8").catch((e: Error) => {
    throw new ModelInputError(`${file}: ${e.message}`);
  });
}

/** onnxruntime-web in Node: one wasm thread, errors only. */
export async function nodeOrt(): Promise<OrtModule> {
  const ort = await import("onnxruntime-web");
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  return ort;
}

export interface EvalJson {
  tokens: number;
  precisions: {
    name: string;
    ppl: number;
    delta_ppl: number;
    kld_mean: number;
    kld_median: number;
    kld_p99: number;
    kld_max: number;
    top1_agree: number;
    weights_bytes: number;
    fallbacks: { tensor: string; to: string }[];
    /** The f16 precision only: what it computes in on this provider. */
    compute?: string;
  }[];
}

export function evalJson(report: EvaluationReport): EvalJson {
  return {
    tokens: report.tokens,
    precisions: report.precisions.map((p) => ({
      name: p.name,
      ppl: p.ppl,
      delta_ppl: p.deltaPpl,
      kld_mean: p.kldMean,
      kld_median: p.kldMedian,
      kld_p99: p.kldP99,
      kld_max: p.kldMax,
      top1_agree: p.top1Agree,
      weights_bytes: p.weightsBytes,
      fallbacks: p.fallbacks.map((f) => ({ tensor: f.tensor, to: f.to })),
      ...(p.compute ? { compute: p.compute } : {}),
    })),
  };
}

export function evalTable(report: EvaluationReport): string {
  const header = ["precision", "weights", "ppl", "Δppl", "KLD mean", "median", "p99", "max", "top-1 = f32", "fallbacks"];
  const rows = report.precisions.map((p) => [
    p.name,
    formatBytes(p.weightsBytes),
    p.ppl.toFixed(4),
    (p.deltaPpl >= 0 ? "+" : "") + p.deltaPpl.toFixed(4),
    formatMeasure(p.kldMean),
    formatMeasure(p.kldMedian),
    formatMeasure(p.kldP99),
    formatMeasure(p.kldMax),
    formatShare(p.top1Agree),
    fallbackSummary(p.fallbacks),
  ]);
  const notes = report.precisions.filter((p) => p.compute).map((p) => `${p.name}: ${p.compute}`);
  return [`${report.tokens} tokens, ${report.executionProvider} provider; KL divergence and agreement against f32`, "", ...table(header, rows, 1), ...notes, ""].join("\n");
}

function failure(command: string, io: CliIO, e: unknown): number {
  if (isModelInputError(e) || isFormatError(e)) {
    io.err(`quantlab ${command}: ${(e as Error).message.replace(/\s*\n\s*/g, " ")}\n`);
    return EXIT.usage;
  }
  io.err(`quantlab ${command}: unexpected failure: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT.failure;
}


function positiveInt(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ModelInputError(`${option} must be a positive integer, got "${value}"`);
  return n;
}

function needTokenizer(model: LoadedDecoder, dir: string) {
  if (!model.tokenizer) throw new ModelInputError(`${dir}: no tokenizer.json, so text cannot be turned into tokens`);
  return model.tokenizer;
}

export const evalCommand: Command = {
  name: "eval",
  summary: "Perplexity and KL divergence from f32 of a model at several precisions (onnxruntime-web, wasm).",
  usage: "quantlab eval MODEL_DIR [--precisions LIST] [--text FILE] [--calibration FILE] [--tokens N] [--json]",
  details: [
    "MODEL_DIR holds config.json, the safetensors (one file or shards with their index) and tokenizer.json.",
    "",
    "Options:",
    `  --precisions LIST  comma-separated: f32 and registry format ids (see \`quantlab formats\`); default ${DEFAULT_PRECISIONS}`,
    "                     f32 always runs first as the reference. Rows a format cannot take get llama.cpp's fallback.",
    "                     gptq4, awq4 (and gptq{2..8}[-g32|-g64|-g128], awq...) calibrate on --calibration's text.",
    "  --text FILE        the evaluation text (UTF-8); default the lab's bundled story (public/models/stories260K/eval.txt)",
    "  --calibration FILE the text GPTQ/AWQ calibrate on; default the lab's second bundled story",
    "  --tokens N         evaluate only the first N tokens (the text must fit the model's context)",
    "  --json             {tokens, precisions:[{name, ppl, delta_ppl, kld_mean, kld_median, kld_p99, kld_max,",
    "                     top1_agree, weights_bytes, fallbacks}]}",
    "",
    "Example: quantlab eval ../shared/models/stories260K --precisions f32,q8_0,q4_K,q2_K",
  ].join("\n"),
  async run(args, io) {
    const parsed = parseCommandArgs(
      evalCommand,
      args,
      { precisions: { type: "string" }, text: { type: "string" }, calibration: { type: "string" }, tokens: { type: "string" }, json: { type: "boolean" } },
      io,
    );
    if (!parsed) return EXIT.usage;
    const [dir, ...extra] = parsed.positionals;
    if (!dir || extra.length > 0) return usageError(evalCommand, io, dir ? `unexpected argument "${extra[0]}"` : "give a MODEL_DIR");
    try {
      const precisions = (parsed.values.precisions ?? DEFAULT_PRECISIONS).split(",").map((p) => p.trim()).filter(Boolean);
      precisions.forEach(checkPrecision); // unknown names fail before the model is read
      const limit = positiveInt(parsed.values.tokens, "--tokens");
      const textFile = parsed.values.text ?? BUNDLED_TEXT;
      const model = await loadModelDir(dir);
      const text = await readText(textFile);
      const calibrationIds = needTokenizer(model, dir).encode(await readText(parsed.values.calibration ?? BUNDLED_CALIBRATION));
      let ids = needTokenizer(model, dir).encode(text);
      if (limit !== undefined) ids = ids.slice(0, limit);
      const context = model.arch.maxPositionEmbeddings;
      if (context !== undefined && ids.length > context) {
        throw new ModelInputError(`${textFile} is ${ids.length} tokens, more than the model's context of ${context}; pass --tokens ${context}`);
      }
      if (ids.length < 2) throw new ModelInputError(`${textFile}: the text needs at least two tokens`);
      const report = await evaluatePrecisions(model, ids, precisions, { ort: await nodeOrt(), executionProvider: "wasm", calibrationIds: calibrationIds.slice(0, model.arch.maxPositionEmbeddings) });
      io.out(parsed.values.json ? `${JSON.stringify(evalJson(report), null, 2)}\n` : evalTable(report));
      return EXIT.ok;
    } catch (e) {
      return failure("eval", io, e);
    }
  },
};

export const generateCommand: Command = {
  name: "generate",
  summary: "Continue a prompt with a model at one precision (onnxruntime-web, wasm).",
  usage: 'quantlab generate MODEL_DIR [--precision P] --prompt TEXT [--tokens N] [--greedy | --temperature T --seed S]',
  details: [
    "Options:",
    "  --precision P      f32 (default) or a registry format id",
    "  --prompt TEXT      the text to continue (tokenized with MODEL_DIR/tokenizer.json)",
    "  --tokens N         new tokens (default 64); generation also stops at generation_config.json's eos ids",
    "  --greedy           the most likely token each step (the default)",
    "  --temperature T    sample at temperature T instead, seeded with --seed S (default 0)",
  ].join("\n"),
  async run(args, io) {
    const parsed = parseCommandArgs(
      generateCommand,
      args,
      {
        precision: { type: "string" },
          prompt: { type: "string" },
          tokens: { type: "string" },
          greedy: { type: "boolean" },
          temperature: { type: "string" },
          seed: { type: "string" },
      },
      io,
    );
    if (!parsed) return EXIT.usage;
    const [dir] = parsed.positionals;
    const { values } = parsed;
    if (!dir) return usageError(generateCommand, io, "give a MODEL_DIR");
    if (values.prompt === undefined) return usageError(generateCommand, io, "give a --prompt");
    if (values.greedy && values.temperature !== undefined) return usageError(generateCommand, io, "--greedy and --temperature exclude each other");
    try {
      const precision = values.precision ?? "f32";
      checkPrecision(precision);
      const count = positiveInt(values.tokens, "--tokens") ?? 64;
      let sampling: Sampling = { kind: "greedy" };
      if (values.temperature !== undefined) {
        const temperature = Number(values.temperature);
        const seed = Number(values.seed ?? "0");
        if (!(temperature > 0)) throw new ModelInputError(`--temperature must be a number above 0, got "${values.temperature}"`);
        if (!Number.isInteger(seed)) throw new ModelInputError(`--seed must be an integer, got "${values.seed}"`);
        sampling = { kind: "sample", temperature, seed };
      }
      const model = await loadModelDir(dir);
      const tokenizer = needTokenizer(model, dir);
      const prompt = tokenizer.encode(values.prompt);
      const room = (model.arch.maxPositionEmbeddings ?? Infinity) - prompt.length;
      if (room < 1) throw new ModelInputError(`the prompt is ${prompt.length} tokens and leaves no room in the model's context`);
      const { session } = await openPrecision(model, precision, { ort: await nodeOrt(), executionProvider: "wasm" });
      try {
        const ids = await session.generate(prompt, Math.min(count, room), tokenPicker(sampling), model.stopIds);
        io.out(`${tokenizer.decode([...prompt, ...ids])}\n`);
      } finally {
        await session.release();
      }
      return EXIT.ok;
    } catch (e) {
      return failure("generate", io, e);
    }
  },
};
