/**
 * GGUF files tensor by tensor: which ggml type llama-quantize gives each tensor for a file type (its
 * per-tensor mixes), and the file's size.
 *
 * The rules follow llama.cpp src/llama-quant.cpp: llama_tensor_get_type (llama_tensor_get_type_impl in later
 * versions) for the mixes, tensor_type_fallback for rows the chosen type's block does not divide, and
 * llama_ftype_get_default_type for each file type's base type. Quoted from ggml-org/llama.cpp at commit
 * 007dbbf3 and checked against the real llama-quantize output of c392e509 in ../shared/golden/gguf.
 * Bytes per block come from the format registry (src/quant/registry.ts through GGML_TYPES).
 */
import { ggmlTensorBytes, ggmlTypeByName, type GgmlType } from "../formats/gguf.ts";
import { getFormat } from "../quant/registry.ts";
import { MemoryInputError, tokenizerOf, type ModelConfig } from "./config.ts";
import { isMatrix, type ModelTensor } from "./tensors.ts";

/** llama-quantize's file types (LLAMA_FTYPE_*), by the name its command line takes, lower-cased K. */
export const GGUF_FILE_TYPES = [
  "f32",
  "f16",
  "bf16",
  "q8_0",
  "q6_K",
  "q5_K_M",
  "q5_K_S",
  "q5_0",
  "q5_1",
  "q4_K_M",
  "q4_K_S",
  "q4_0",
  "q4_1",
  "q3_K_L",
  "q3_K_M",
  "q3_K_S",
  "q2_K",
] as const;
export type GgufFileType = (typeof GGUF_FILE_TYPES)[number];

/** llama-quantize's aliases: "Q4_K" is Q4_K_M, "Q3_K" Q3_K_M, "Q5_K" Q5_K_M (tools/quantize QUANT_OPTIONS). */
const ALIASES: Record<string, GgufFileType> = { q3_k: "q3_K_M", q4_k: "q4_K_M", q5_k: "q5_K_M" };

export function findGgufFileType(name: string): GgufFileType | undefined {
  const lower = name.toLowerCase();
  return ALIASES[lower] ?? GGUF_FILE_TYPES.find((t) => t.toLowerCase() === lower);
}

/** llama_ftype_get_default_type: the type every quantizable tensor starts from. */
function defaultType(ftype: GgufFileType): string {
  if (ftype.startsWith("q2_K")) return "q2_K";
  if (ftype.startsWith("q3_K")) return "q3_K";
  if (ftype.startsWith("q4_K")) return "q4_K";
  if (ftype.startsWith("q5_K")) return "q5_K";
  return ftype; // f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q6_K
}

const QUANTIZED = (type: string) => !["f32", "f16", "bf16"].includes(type);

/** use_more_bits in llama-quant.cpp: the first and last eighth of the layers and every third in between. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

export interface GgufTensorChoice {
  tensor: ModelTensor;
  /** What the mix picked before the row-length fallback ("q6_K"). */
  mixture: string;
  /** The type written ("q8_0" when q6_K's 256-block does not divide the rows). */
  type: GgmlType;
  /** Set when the fallback changed the type: llama-quantize's "required fallback quantization". */
  fallback?: string;
  bytes: number;
}

/**
 * The type llama-quantize writes for every tensor of a model converted from Hugging Face (1-D tensors and
 * Mixtral's router stay F32, as convert_hf_to_gguf writes them and tensor_allows_quantization keeps them).
 * `isLlama70B` is llama.cpp's LLM_TYPE_70B (80 layers with grouped-query attention, Llama and Qwen2),
 * which gets attn_v one step up.
 */
export function ggufTensorTypes(config: ModelConfig, tensors: readonly ModelTensor[], ftype: GgufFileType): GgufTensorChoice[] {
  const base = defaultType(ftype);
  const nGqa = config.numHeads / config.numKvHeads;
  const nExpert = config.numExperts > 1 ? config.numExperts : 0;
  const n = config.numLayers;
  const is70B = config.numLayers === 80 && config.numKvHeads !== config.numHeads && ["llama", "mistral", "qwen2"].includes(config.architecture);
  const tied = !tensors.some((t) => t.role === "output");
  const nAttentionV = tensors.filter((t) => t.role === "attn_v" || t.role === "attn_qkv").length;
  let iAttentionV = 0;

  return tensors.map((t): GgufTensorChoice => {
    if (!isMatrix(t) || t.role === "ffn_gate_inp") return choice(t, "f32", "f32");
    let type = base;
    if (QUANTIZED(base)) {
      const layer = t.layer ?? 0;
      if (t.role === "output" || (tied && t.role === "token_embd")) {
        // The output tensor (or a tied token_embd, which is the output too): Q8_0 when the row is not a whole
        // number of the base type's blocks, otherwise Q6_K unless the base is already Q8_0.
        const block = getFormat(base).blockWeights;
        if (t.cols % block !== 0) type = "q8_0";
        else if (type !== "q8_0") type = "q6_K";
      } else if (t.role === "attn_v" || t.role === "attn_qkv") {
        if (t.role === "attn_qkv") {
          // Fused qkv (Phi-3): the ATTENTION_QKV branch.
          if (ftype === "q3_K_M" || ftype === "q3_K_L") type = "q4_K";
          else if (ftype === "q4_K_M") type = "q5_K";
          else if (ftype === "q5_K_M") type = "q6_K";
        } else {
          if (ftype === "q2_K") type = nGqa >= 4 ? "q4_K" : "q3_K";
          else if (ftype === "q3_K_M") type = iAttentionV < 2 ? "q5_K" : "q4_K";
          else if (ftype === "q3_K_L") type = "q5_K";
          else if ((ftype === "q4_K_M" || ftype === "q5_K_M") && useMoreBits(iAttentionV, nAttentionV)) type = "q6_K";
          else if (ftype === "q4_K_S" && iAttentionV < 4) type = "q5_K";
          // "In the 70B model we have 8 heads sharing the same attn_v weights ... quantizing this tensor with more bits"
          if (is70B && (type === "q3_K" || type === "q4_K")) type = "q5_K";
          if (nExpert === 8) type = "q8_0";
        }
        iAttentionV++;
      } else if (t.role === "attn_k") {
        if (nExpert === 8) type = "q8_0";
      } else if (t.role === "ffn_down") {
        // layer_info: the tensor's own layer (the counter i_ffn_down equals it in loader order).
        if (ftype === "q2_K") type = "q3_K";
        else if (ftype === "q3_K_M") type = layer < Math.trunc(n / 16) ? "q5_K" : "q4_K"; // non-Falcon: Q4_K past the first 16th
        else if (ftype === "q3_K_L") type = "q5_K";
        else if (ftype === "q4_K_M") {
          if (useMoreBits(layer, n)) type = "q6_K";
        } else if (ftype === "q5_K_M" && useMoreBits(layer, n)) type = "q6_K";
        else if (ftype === "q4_K_S" && layer < Math.trunc(n / 8)) type = "q5_K";
      } else if (t.role === "attn_output") {
        if (nExpert === 8) {
          if (["q2_K", "q3_K_S", "q3_K_M", "q4_K_S", "q4_K_M"].includes(ftype)) type = "q5_K";
        } else if (ftype === "q2_K") type = "q3_K";
        else if (ftype === "q3_K_M") type = "q4_K";
        else if (ftype === "q3_K_L") type = "q5_K";
      }
    }
    return choice(t, type, QUANTIZED(type) ? fallbackFor(type, t.cols) : type);
  });
}

/**
 * tensor_type_fallback: the registry's row-length check already knows llama.cpp's fallback for each K-quant
 * (q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, F16 when 32 does not divide the row either).
 * For the 32-weight types llama-quantize has no fallback and stops; the registry suggests F16, as here.
 */
function fallbackFor(type: string, cols: number): string {
  const check = getFormat(type).checkRowLength(cols);
  return check.ok ? type : (check.fallback ?? "f16");
}

function choice(tensor: ModelTensor, mixture: string, written: string): GgufTensorChoice {
  const type = ggmlTypeByName(written);
  if (!type) throw new Error(`no ggml type ${written}`);
  const bytes = ggmlTensorBytes(type, [tensor.cols, tensor.rows, tensor.experts]);
  return { tensor, mixture, type, ...(written === mixture ? {} : { fallback: written }), bytes };
}

export function resolveGgufFileType(name: string): GgufFileType {
  const t = findGgufFileType(name);
  if (!t) throw new MemoryInputError(`unknown GGUF file type "${name}" (known: ${GGUF_FILE_TYPES.join(", ")})`);
  return t;
}

/** GGUF's data alignment (general.alignment default, GGUF_DEFAULT_ALIGNMENT). */
export const GGUF_ALIGNMENT = 32;

/**
 * An estimate of the bytes before the data section: key-values (hyper-parameters, the tokenizer's tokens,
 * token types, scores or merges, a chat template) and the tensor infos, padded to the alignment. The tensor
 * infos are exact; the tokenizer is estimated from the vocabulary size because a config.json does not hold
 * it: each token is written as a u64 length and its UTF-8 bytes plus an i32 type; SentencePiece vocabularies
 * add an f32 score per token, byte-level BPE ones about one merge per token ("a b", two pieces and a space).
 * Average piece lengths are assumptions (6 bytes for SentencePiece pieces, 7 for byte-level BPE pieces, whose
 * "Ġ" marker takes 2 UTF-8 bytes), and 4 KiB of other keys and chat template; checked against stories260K's
 * real GGUF header in the tests.
 */
export function ggufMetadataBytes(config: ModelConfig, tensors: readonly ModelTensor[]): number {
  const spm = tokenizerOf(config) === "spm";
  const pieceBytes = spm ? 6 : 7;
  const perToken = 8 + pieceBytes + 4 + (spm ? 4 : 8 + 2 * pieceBytes + 1);
  const otherKeys = config.vocabSize > 1000 ? 4096 : 1024; // a real model ships a chat template; stories260K has none
  const fixed = 4 + 4 + 8 + 8;
  const infos = tensors.reduce((s, t) => s + 8 + t.name.length + 4 + 8 * dimsOf(t).length + 4 + 8, 0);
  return align(fixed + otherKeys + config.vocabSize * perToken + infos);
}

function dimsOf(t: ModelTensor): number[] {
  if (t.rows === 1 && t.experts === 1) return [t.cols];
  return t.experts > 1 ? [t.cols, t.rows, t.experts] : [t.cols, t.rows];
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;

export interface GgufFileEstimate {
  ftype: GgufFileType;
  tensors: GgufTensorChoice[];
  /** Sum of the tensors' bytes, unpadded (what llama-quantize reports as the model size). */
  tensorBytes: number;
  /** Metadata and tensor infos (estimated tokenizer, see ggufMetadataBytes). */
  metadataBytes: number;
  /** The whole file: metadata, then every tensor padded to the alignment. */
  fileBytes: number;
  /** Tensors whose type llama-quantize had to fall back from its mix's choice. */
  fallbacks: number;
}

export function ggufFileEstimate(config: ModelConfig, tensors: readonly ModelTensor[], ftype: GgufFileType): GgufFileEstimate {
  const chosen = ggufTensorTypes(config, tensors, ftype);
  const tensorBytes = chosen.reduce((s, c) => s + c.bytes, 0);
  const paddedData = chosen.reduce((s, c) => s + align(c.bytes), 0);
  const metadataBytes = ggufMetadataBytes(config, tensors);
  return {
    ftype,
    tensors: chosen,
    tensorBytes,
    metadataBytes,
    fileBytes: metadataBytes + paddedData,
    fallbacks: chosen.filter((c) => c.fallback !== undefined).length,
  };
}
