/**
 * A Hugging Face checkpoint (config.json, tokenizer.json, safetensors) as a GGUF file that llama.cpp loads:
 * the plan (metadata, tensor names, types) is made and checked whole before a byte is written, then the
 * tensors stream through the lab's CPU quantizers one at a time into the GGUF writer.
 *
 * - Names and types: src/memory/tensors.ts names every tensor as llama.cpp's converter does, and
 *   src/memory/gguf-size.ts picks each tensor's type as llama-quantize does for the file type (its mixes,
 *   and its fallbacks for rows a type's block does not divide). Per-tensor rows are quantized with the
 *   registry's formats, which match llama.cpp's reference quantizers bit for bit.
 * - q and k of the `llama` architecture are stored with their rows in Meta's interleaved-rotary order,
 *   which llama.cpp's llama rope (adjacent pairs) expects: convert_hf_to_gguf's LlamaModel.permute undone
 *   from Hugging Face's rotate-half order (see permuteRotaryRows).
 * - Architectures: llama (and mistral, written as llama) and qwen2 (q/k/v biases, no q/k permutation).
 * - Tokenizer: src/pipeline/gguf-tokenizer.ts: SentencePiece-style BPE as tokenizer.ggml.model "llama",
 *   byte-level BPE (Qwen2, Llama 3) as "gpt2" with its pre-tokenizer and merges; other tokenizers stop the
 *   export with a message (nothing written).
 */
import { ggmlTypeByName, LLAMA_FTYPE, type GgmlType } from "../formats/gguf.ts";
import { writeGguf, type ByteSink, type GgufKeyValue, type GgufLayout, type GgufTensorEntry } from "../formats/gguf-writer.ts";
import { readTensorRows, tensorRowLayout, type OpenedModel } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { parseConfig, type ModelConfig } from "../memory/config.ts";
import { ggufTensorTypes, resolveGgufFileType, type GgufFileType } from "../memory/gguf-size.ts";
import { modelTensors, type ModelTensor } from "../memory/tensors.ts";
import { getFormat } from "../quant/registry.ts";
import type { ImportanceMatrix } from "../formats/imatrix.ts";
import { ExportError } from "./export-error.ts";
import { tokenizerKeyValues } from "./gguf-tokenizer.ts";

export { ExportError, isExportError } from "./export-error.ts";

export interface PlannedTensor {
  entry: GgufTensorEntry;
  source: TensorInfo;
  /** Registry format id the rows are encoded with ("f32" for raw float32). */
  format: string;
  /** What llama-quantize's mix picked, when the row length made it fall back. */
  fallbackFrom?: string;
  /** Rows permuted from rotate-half to interleaved rotary order, with this many heads. */
  permuteHeads?: number;
}

export interface GgufExportPlan {
  fileType: GgufFileType;
  config: ModelConfig;
  kv: GgufKeyValue[];
  tensors: PlannedTensor[];
}

export interface ExportInput {
  model: OpenedModel;
  /** Parsed config.json. */
  config: unknown;
  /** Parsed tokenizer.json; undefined when the checkpoint has none. */
  tokenizer: unknown;
  /** Parsed tokenizer_config.json (add_bos_token, chat_template), optional. */
  tokenizerConfig?: unknown;
  name?: string;
}

/** The Hugging Face name of each GGUF tensor (convert_hf_to_gguf's tensor map, for the supported layouts). */
function hfNameOf(gguf: string): string[] {
  const globals: Record<string, string[]> = {
    "token_embd.weight": ["model.embed_tokens.weight"],
    "output_norm.weight": ["model.norm.weight"],
    "output.weight": ["lm_head.weight"],
  };
  if (globals[gguf]) return globals[gguf]!;
  const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(gguf);
  if (!m) return [];
  const [, layer, part, kind] = m;
  const local: Record<string, string> = {
    attn_norm: "input_layernorm",
    ffn_norm: "post_attention_layernorm",
    attn_q: "self_attn.q_proj",
    attn_k: "self_attn.k_proj",
    attn_v: "self_attn.v_proj",
    attn_output: "self_attn.o_proj",
    attn_q_norm: "self_attn.q_norm",
    attn_k_norm: "self_attn.k_norm",
    ffn_gate: "mlp.gate_proj",
    ffn_up: "mlp.up_proj",
    ffn_down: "mlp.down_proj",
  };
  const hf = local[part!];
  return hf ? [`model.layers.${layer}.${hf}.${kind}`] : [];
}

/** The architectures the export writes: llama.cpp's architecture name, and whether q/k rows are permuted. */
const EXPORTED_ARCHITECTURES: Readonly<Record<string, { gguf: string; permuteQk: boolean }>> = {
  llama: { gguf: "llama", permuteQk: true },
  mistral: { gguf: "llama", permuteQk: true },
  // Qwen2 runs llama.cpp's NEOX rope (rotate-half), the Hugging Face order: its converter permutes nothing.
  qwen2: { gguf: "qwen2", permuteQk: false },
};

/** Plans the export: every key and tensor, checked; throws ExportError on what GGUF cannot take. */
export async function planGgufExport(input: ExportInput, fileTypeName: string): Promise<GgufExportPlan> {
  let fileType: GgufFileType;
  try {
    fileType = resolveGgufFileType(fileTypeName);
  } catch (e) {
    throw new ExportError((e as Error).message);
  }
  let config: ModelConfig;
  try {
    config = parseConfig(input.config, "config.json");
  } catch (e) {
    throw new ExportError((e as Error).message);
  }
  const arch = EXPORTED_ARCHITECTURES[config.architecture];
  if (!arch) {
    throw new ExportError(`the GGUF export writes ${Object.keys(EXPORTED_ARCHITECTURES).join(", ")} models; this config is "${config.architecture}"`);
  }
  if (config.numExperts > 1) throw new ExportError("mixture-of-experts checkpoints are not exported yet");
  if (input.tokenizer === undefined) throw new ExportError("the checkpoint has no tokenizer.json: llama.cpp needs the vocabulary in the GGUF");
  const tokenizerKv = await tokenizerKeyValues({
    tokenizer: input.tokenizer,
    config: input.config,
    vocabSize: config.vocabSize,
    ...(input.tokenizerConfig === undefined ? {} : { tokenizerConfig: input.tokenizerConfig }),
  });

  const byName = new Map(input.model.tensors.map((t) => [t.name, t]));
  const wanted = modelTensors(config);
  const choices = ggufTensorTypes(config, wanted, fileType);
  const tensors = choices.map((c): PlannedTensor => {
    const source = hfNameOf(c.tensor.name).map((n) => byName.get(n)).find((t) => t !== undefined);
    if (!source) throw new ExportError(`no tensor of the checkpoint holds ${c.tensor.name} (looked for ${hfNameOf(c.tensor.name).join(", ") || "no known name"})`);
    checkShape(c.tensor, source);
    const planned: PlannedTensor = {
      entry: { name: c.tensor.name, dims: c.tensor.rows === 1 ? [c.tensor.cols] : [c.tensor.cols, c.tensor.rows], type: c.type },
      source,
      format: formatOf(c.type),
    };
    if (c.fallback) planned.fallbackFrom = c.mixture;
    if (arch.permuteQk && c.tensor.role === "attn_q") planned.permuteHeads = config.numHeads;
    if (arch.permuteQk && c.tensor.role === "attn_k") planned.permuteHeads = config.numKvHeads;
    return planned;
  });

  const a = arch.gguf;
  const kv: GgufKeyValue[] = [
    { key: "general.architecture", value: { type: "string", value: a } },
    { key: "general.name", value: { type: "string", value: input.name ?? a } },
    { key: "general.file_type", value: { type: "u32", value: LLAMA_FTYPE[fileType] } },
    { key: "general.quantization_version", value: { type: "u32", value: 2 } },
    { key: `${a}.context_length`, value: { type: "u32", value: config.maxPositionEmbeddings ?? 2048 } },
    { key: `${a}.embedding_length`, value: { type: "u32", value: config.hiddenSize } },
    { key: `${a}.block_count`, value: { type: "u32", value: config.numLayers } },
    { key: `${a}.feed_forward_length`, value: { type: "u32", value: config.intermediateSize } },
    { key: `${a}.attention.head_count`, value: { type: "u32", value: config.numHeads } },
    { key: `${a}.attention.head_count_kv`, value: { type: "u32", value: config.numKvHeads } },
    { key: `${a}.rope.dimension_count`, value: { type: "u32", value: config.headDim } },
    { key: `${a}.rope.freq_base`, value: { type: "f32", value: numberOr(input.config, "rope_theta", 10000) } },
    { key: `${a}.attention.layer_norm_rms_epsilon`, value: { type: "f32", value: numberOr(input.config, "rms_norm_eps", 1e-5) } },
    { key: `${a}.vocab_size`, value: { type: "u32", value: config.vocabSize } },
    ...tokenizerKv,
  ];
  return { fileType, config, kv, tensors };
}

function numberOr(config: unknown, key: string, fallback: number): number {
  const v = (config as Record<string, unknown>)[key];
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
}

function formatOf(type: GgmlType): string {
  if (type.name === "F32") return "f32";
  if (!type.formatId) throw new ExportError(`the lab has no quantizer for ggml type ${type.name}`);
  return type.formatId;
}

function checkShape(t: ModelTensor, source: TensorInfo): void {
  const { rows, rowLength } = tensorRowLayout(source);
  const expected = t.rows === 1 ? [1, t.cols] : [t.rows, t.cols];
  if (rows !== expected[0] || rowLength !== expected[1]) {
    throw new ExportError(`tensor ${source.name} is ${source.shape.join("x")}; config.json says ${t.name} is ${expected.join("x")}`);
  }
}

/**
 * Hugging Face stores q and k rows per head as [first halves of the rotary pairs, second halves]
 * (rotate_half); llama.cpp's llama rope wants them interleaved. convert_hf_to_gguf's permute: view the rows
 * as (heads, 2, headDim/2) and swap the last two axes: output row h*d + 2j + t = input row h*d + t*d/2 + j.
 */
export function permuteRotaryRows(x: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new ExportError(`${rows} rows do not split into ${heads} heads of an even size`);
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < d / 2; j++) {
      for (let t = 0; t < 2; t++) {
        const from = (h * d + t * (d / 2) + j) * cols;
        out.set(x.subarray(from, from + cols), (h * d + 2 * j + t) * cols);
      }
    }
  }
  return out;
}

/** The registry format (or "f32") each checkpoint tensor gets in the plan, by its Hugging Face name: the mix the lab can run. */
export function planFormats(plan: GgufExportPlan): Map<string, string> {
  return new Map(plan.tensors.map((t) => [t.source.name, t.format]));
}

/** Rows per encoded piece: about 16 MiB of float32, whole rows. */
const PIECE_BYTES = 16 * 1024 * 1024;

/** Streams the planned file into `sink`, tensor by tensor, piece by piece. */
export async function exportGguf(
  plan: GgufExportPlan,
  sink: ByteSink,
  opts: {
    signal?: AbortSignal;
    onTensor?: (done: number, total: number, name: string) => void;
    /** llama.cpp importance matrix by GGUF tensor name (src/formats/imatrix.ts), for the formats that use one. */
    imatrix?: ImportanceMatrix;
  } = {},
): Promise<GgufLayout> {
  const entries = plan.tensors.map((t) => t.entry);
  const pieces: Uint8Array[] = [];
  return writeGguf(
    sink,
    plan.kv,
    entries,
    async (i) => {
      const t = plan.tensors[i]!;
      pieces.length = 0;
      const { rows, rowLength: cols } = tensorRowLayout(t.source);
      const format = t.format === "f32" ? undefined : getFormat(t.format);
      const imatrix = opts.imatrix?.get(t.entry.name);
      if (imatrix && imatrix.length !== cols) {
        throw new ExportError(`the importance matrix has ${imatrix.length} values for ${t.entry.name}, whose rows hold ${cols}`);
      }
      const encode = (x: Float32Array, n: number) =>
        format ? format.encode(x, { rows: n, cols }, { tensorName: t.entry.name, imatrix }).slice() : new Uint8Array(x.slice().buffer);
      if (t.permuteHeads) {
        const x = new Float32Array(rows * cols);
        for await (const c of readTensorRows(t.source, { signal: opts.signal })) x.set(c.values, c.firstRow * cols);
        pieces.push(encode(permuteRotaryRows(x, rows, cols, t.permuteHeads), rows));
      } else {
        const chunkBytes = Math.max(1, Math.floor(PIECE_BYTES / (cols * 4))) * cols * 4;
        for await (const c of readTensorRows(t.source, { signal: opts.signal, chunkBytes, reuseBuffers: true })) pieces.push(encode(c.values, c.rows));
      }
      opts.onTensor?.(i + 1, entries.length, t.entry.name);
      return concat(pieces);
    },
    { signal: opts.signal },
  );
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
