/**
 * `quantlab memory`: will a model fit? The estimate comes from src/memory (the same functions the lab's
 * memory panel calls); this file reads the options, the config (a file, a URL or a preset) and lays the
 * answer out as text or JSON.
 */
import { readFile } from "node:fs/promises";
import { formatBytes, formatCount } from "../common/format.ts";
import { isMemoryInputError, MemoryInputError, parseConfigText, type ModelConfig } from "../memory/config.ts";
import {
  estimateInference,
  estimateTraining,
  FRAMEWORKS,
  KV_CACHE_TYPES,
  RECOMPUTE,
  TRAIN_METHODS,
  type Framework,
  type KvCacheType,
  type MemoryEstimate,
  type Recompute,
  type TrainMethod,
} from "../memory/estimate.ts";
import { ggufFileEstimate, type GgufFileType } from "../memory/gguf-size.ts";
import { DEFAULT_GPU, resolveGpu } from "../memory/gpus.ts";
import { PRESETS, findPreset, presetConfig } from "../memory/presets.ts";
import { resolvePrecision } from "../memory/precision.ts";
import { modelTensors } from "../memory/tensors.ts";
import { EXIT, parseCommandArgs, type CliIO, type Command } from "./command.ts";

/** The models and types of the GGUF size table (issue 7). */
export const GGUF_TABLE_MODELS = ["qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b"];
export const GGUF_TABLE_TYPES: GgufFileType[] = ["q8_0", "q6_K", "q5_K_M", "q4_K_M", "q3_K_M", "q2_K"];

export interface MemoryJson {
  params: number;
  components: Record<string, number>;
  total_bytes: number;
  gpu_bytes: number;
  cpu_bytes: number;
  fits: boolean;
}

export function memoryJson(e: MemoryEstimate): MemoryJson {
  return { params: e.params, components: e.components, total_bytes: e.totalBytes, gpu_bytes: e.gpuBytes, cpu_bytes: e.cpuBytes, fits: e.fits };
}

export interface GgufTableRow {
  model: string;
  type: string;
  bytes: number;
}

export function ggufTable(): GgufTableRow[] {
  return GGUF_TABLE_MODELS.flatMap((model) => {
    const config = presetConfig(model);
    const tensors = modelTensors(config);
    return GGUF_TABLE_TYPES.map((type) => ({ model, type, bytes: ggufFileEstimate(config, tensors, type).fileBytes }));
  });
}

function ggufTableText(rows: GgufTableRow[]): string {
  const header = ["model", ...GGUF_TABLE_TYPES];
  const lines = GGUF_TABLE_MODELS.map((model) => [
    model,
    ...GGUF_TABLE_TYPES.map((type) => `${(rows.find((r) => r.model === model && r.type === type)!.bytes / 1e9).toFixed(2)} GB`),
  ]);
  const all = [header, ...lines];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const fmt = (cells: string[]) => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [
    fmt(header),
    ...lines.map(fmt),
    "",
    "GGUF file sizes (GB = 10^9 bytes), tensor by tensor with llama-quantize's per-tensor mixes; the",
    "metadata and tokenizer are estimated from the vocabulary size.",
    "",
  ].join("\n");
}

/** A config from a preset id, a config.json path or an http(s) URL. */
export async function loadConfig(target: string): Promise<ModelConfig> {
  if (findPreset(target)) return presetConfig(target);
  if (/^https?:\/\//i.test(target)) {
    const response = await fetch(target);
    if (!response.ok) throw new MemoryInputError(`${target}: HTTP ${response.status}`);
    return parseConfigText(await response.text(), target);
  }
  let text: string;
  try {
    text = await readFile(target, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new MemoryInputError(`${target}: no such file, and not a preset (presets: ${PRESETS.map((p) => p.id).join(", ")})`);
    }
    throw new MemoryInputError(`${target}: ${code === "EISDIR" ? "is a folder, expected a config.json" : (e as Error).message}`);
  }
  return parseConfigText(text, target);
}

function oneOf<T extends string>(name: string, value: string | undefined, known: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(known as readonly string[]).includes(value)) throw new MemoryInputError(`--${name} must be one of ${known.join(", ")}, got "${value}"`);
  return value as T;
}

function integer(name: string, value: string | undefined, fallback: number | undefined, min: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new MemoryInputError(`--${name} must be an integer >= ${min}, got "${value}"`);
  }
  return n;
}

function estimateText(config: ModelConfig, e: MemoryEstimate, gpuLabel: string, usable: number): string {
  const rows = Object.entries(e.components).map(([name, bytes]) => [name, formatBytes(bytes), formatCount(bytes)]);
  rows.push(["total", formatBytes(e.totalBytes), formatCount(e.totalBytes)]);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) => `  ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padStart(widths[1]!)}  ${r[2]!.padStart(widths[2]!)} B`);
  return [
    `${config.name}: ${formatCount(e.params)} parameters (${config.architecture}, ${config.numLayers} layers)`,
    ...lines,
    `GPU ${formatBytes(e.gpuBytes)}, CPU ${formatBytes(e.cpuBytes)}; ${gpuLabel} has ${formatBytes(usable)} usable`,
    ...(e.maxSequences !== undefined ? [`KV cache holds ${e.maxSequences} sequences of this length`] : []),
    `${e.fits ? "FITS" : "DOES NOT FIT"}: ${e.verdict}`,
    "",
    "Assumes:",
    ...e.assumptions.map((a) => `  - ${a}`),
    "",
  ].join("\n");
}

export const memoryCommand: Command = {
  name: "memory",
  summary: "Estimate the GPU/CPU memory of a model for inference or training, and whether it fits.",
  usage:
    "quantlab memory --config FILE|URL|PRESET --precision P [--context N] [--batch N] [--framework F] [--gpu-layers N] [--gpu G] " +
    "[--train M --seq N --recompute R] [--json] | quantlab memory --gguf-table [--json]",
  details: [
    "Options:",
    "  --config FILE|URL|PRESET  a Hugging Face config.json (llama, mistral, qwen2, qwen3, gemma, gemma2, phi3,",
    `                           mixtral) or a preset: ${PRESETS.map((p) => p.id).join(", ")}`,
    "  --precision P     f32, bf16, fp16, int8 (bitsandbytes LLM.int8), fp8, nf4, nf4-dq, gptq-int4, gptq-int8,",
    "                    awq-int4, a GGUF type or mix (f16, q8_0, q6_K, q5_K_M, q4_K_M, q3_K_M, q2_K, ...) or any",
    "                    format id of `quantlab formats` (applied to the layers' linear weights)",
    "  --context N       tokens per sequence (default 4096); 0 gives the footprint right after loading",
    "  --batch N         sequences at once (default 1)",
    `  --framework F     ${FRAMEWORKS.join(", ")} (default llama.cpp for GGUF types, transformers otherwise)`,
    "  --gpu-layers N    llama.cpp/ollama: layers on the GPU (n_gpu_layers; default all)",
    "  --kv-cache T      llama.cpp/ollama KV cache type: f16 (default), q8_0, q4_0",
    "  --gpu-memory-utilization U   vLLM's fraction of GPU memory (default 0.9)",
    "  --gpu G           rtx-3090, rtx-4090 (default), a100-40, a100-80, h100-80, laptop-16, apple-32/64/128",
    `  --train M         ${TRAIN_METHODS.join(", ")}: estimate training instead of inference`,
    "  --seq N           training sequence length (default 2048)",
    `  --recompute R     ${RECOMPUTE.join(", ")} (activation checkpointing; default none)`,
    "  --lora-rank N     LoRA/QLoRA rank (default 16)",
    "  --json            print {\"params\",\"components\":{name: bytes},\"total_bytes\",\"gpu_bytes\",\"cpu_bytes\",\"fits\"}",
    "  --gguf-table      the GGUF file size of Qwen2.5 7B/14B/32B/72B at Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K",
    "                    (--json: {\"rows\":[{\"model\",\"type\",\"bytes\"}]})",
    "",
    "Bad input (a config missing a key, an unknown architecture or preset, a negative size) exits with code 2.",
    "",
    "Examples:",
    "  npx quantlab memory --config qwen2.5-7b --precision q4_K_M --context 4096",
    "  npx quantlab memory --config ../shared/models/stories260K/config.json --precision fp16 --train adamw --seq 512",
  ].join("\n"),
  async run(args, io) {
    const parsed = parseCommandArgs(
      memoryCommand,
      args,
      {
        config: { type: "string" },
        precision: { type: "string" },
        context: { type: "string" },
        batch: { type: "string" },
        framework: { type: "string" },
        "gpu-layers": { type: "string" },
        "kv-cache": { type: "string" },
        "gpu-memory-utilization": { type: "string" },
        gpu: { type: "string" },
        train: { type: "string" },
        seq: { type: "string" },
        recompute: { type: "string" },
        "lora-rank": { type: "string" },
        json: { type: "boolean" },
        "gguf-table": { type: "boolean" },
      },
      io,
      false,
    );
    if (!parsed) return EXIT.usage;
    const v = parsed.values;
    try {
      if (v["gguf-table"]) {
        const rows = ggufTable();
        io.out(v.json ? JSON.stringify({ rows }) + "\n" : ggufTableText(rows));
        return EXIT.ok;
      }
      if (v.config === undefined) throw new MemoryInputError("--config FILE|URL|PRESET is required");
      if (v.precision === undefined) throw new MemoryInputError("--precision is required (e.g. fp16, nf4, q4_K_M)");
      const precision = resolvePrecision(v.precision);
      const gpu = resolveGpu(v.gpu ?? DEFAULT_GPU);
      const batch = integer("batch", v.batch, 1, 1)!;
      const config = await loadConfig(v.config);
      let estimate: MemoryEstimate;
      if (v.train !== undefined) {
        estimate = estimateTraining(config, {
          method: oneOf<TrainMethod>("train", v.train, TRAIN_METHODS, "adamw"),
          precision,
          seq: integer("seq", v.seq, 2048, 1)!,
          batch,
          recompute: oneOf<Recompute>("recompute", v.recompute, RECOMPUTE, "none"),
          loraRank: integer("lora-rank", v["lora-rank"], 16, 1)!,
          gpu,
        });
      } else {
        const defaultFramework: Framework = precision.kind === "gguf" ? "llama.cpp" : "transformers";
        const utilization = v["gpu-memory-utilization"] === undefined ? undefined : Number(v["gpu-memory-utilization"]);
        if (utilization !== undefined && !(utilization > 0 && utilization <= 1)) {
          throw new MemoryInputError(`--gpu-memory-utilization must be a number in (0, 1], got "${v["gpu-memory-utilization"]}"`);
        }
        const gpuLayers = integer("gpu-layers", v["gpu-layers"], undefined, 0);
        estimate = estimateInference(config, {
          precision,
          framework: oneOf<Framework>("framework", v.framework, FRAMEWORKS, defaultFramework),
          context: integer("context", v.context, 4096, 0)!,
          batch,
          gpu,
          kvCache: oneOf<KvCacheType>("kv-cache", v["kv-cache"], KV_CACHE_TYPES, "f16"),
          ...(gpuLayers === undefined ? {} : { gpuLayers }),
          ...(utilization === undefined ? {} : { gpuMemoryUtilization: utilization }),
        });
      }
      io.out(v.json ? JSON.stringify(memoryJson(estimate)) + "\n" : estimateText(config, estimate, gpu.label, gpu.usableBytes));
      return EXIT.ok;
    } catch (e) {
      return reportMemoryError(e, io);
    }
  },
};

function reportMemoryError(e: unknown, io: CliIO): number {
  if (isMemoryInputError(e)) {
    io.err(`quantlab memory: ${e.message.replace(/\s*\n\s*/g, " ")}\n`);
    return EXIT.usage;
  }
  io.err(`quantlab memory: unexpected failure: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT.failure;
}
