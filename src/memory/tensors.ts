/**
 * Every tensor a model of a given config holds, named as llama.cpp's GGUF converter names them
 * (convert_hf_to_gguf.py with gguf-py's tensor map: model.embed_tokens -> token_embd, q_proj -> attn_q,
 * ...), with its shape. Parameter counts, framework estimates and GGUF sizes all start from this list.
 *
 * Shapes are given as a matrix: `cols` is the input width (GGUF ne0, the row length that quantization
 * blocks run along), `rows` the output width, and `experts` the third dimension of Mixtral's stacked expert
 * tensors (1 otherwise). A 1-D tensor (a norm or a bias) has rows = 1.
 */
import { architectureRules, type ModelConfig } from "./config.ts";

/** What a tensor is, for the rules that treat tensors differently. */
export type TensorRole =
  | "token_embd"
  | "output"
  | "attn_q"
  | "attn_k"
  | "attn_v"
  | "attn_qkv"
  | "attn_output"
  | "ffn_gate"
  | "ffn_up"
  | "ffn_down"
  | "ffn_gate_inp" // Mixtral's router: never quantized by llama.cpp
  | "norm"
  | "bias";

export interface ModelTensor {
  /** The GGUF name, e.g. "blk.3.attn_v.weight". */
  name: string;
  role: TensorRole;
  /** Layer index, undefined for token_embd, output and output_norm. */
  layer?: number;
  rows: number;
  cols: number;
  experts: number;
  params: number;
}

/** True for the matrices a quantizer rewrites (2-D or stacked-expert weights, not norms or biases). */
export function isMatrix(t: ModelTensor): boolean {
  return t.role !== "norm" && t.role !== "bias";
}

/** Weights inside the transformer layers that frameworks quantize (all matrices but embeddings, lm_head and router). */
export function isLinear(t: ModelTensor): boolean {
  return isMatrix(t) && t.layer !== undefined && t.role !== "ffn_gate_inp";
}

function tensor(name: string, role: TensorRole, rows: number, cols: number, layer?: number, experts = 1): ModelTensor {
  return { name, role, ...(layer === undefined ? {} : { layer }), rows, cols, experts, params: rows * cols * experts };
}

/** The tensors of one layer, in llama.cpp's loader order (sorted by name within the layer). */
export function layerTensors(config: ModelConfig, i: number): ModelTensor[] {
  const r = architectureRules(config.architecture);
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const ff = config.intermediateSize;
  const p = `blk.${i}.`;
  const out: ModelTensor[] = [];
  const norm = (n: string, width = h) => out.push(tensor(`${p}${n}.weight`, "norm", 1, width, i));
  const bias = (n: string, width: number) => out.push(tensor(`${p}${n}.bias`, "bias", 1, width, i));

  norm("attn_norm");
  if (r.fusedProjections) {
    out.push(tensor(`${p}attn_qkv.weight`, "attn_qkv", q + 2 * kv, h, i));
  } else {
    out.push(tensor(`${p}attn_q.weight`, "attn_q", q, h, i));
    out.push(tensor(`${p}attn_k.weight`, "attn_k", kv, h, i));
    out.push(tensor(`${p}attn_v.weight`, "attn_v", kv, h, i));
    if (config.qkvBias) {
      bias("attn_q", q);
      bias("attn_k", kv);
      bias("attn_v", kv);
    }
  }
  if (r.qkNorm) {
    norm("attn_q_norm", config.headDim);
    norm("attn_k_norm", config.headDim);
  }
  out.push(tensor(`${p}attn_output.weight`, "attn_output", h, q, i));
  if (config.outputBias) bias("attn_output", h);
  norm("ffn_norm");
  if (r.normsPerLayer === 4) {
    // Gemma2: post_attention_layernorm and post_feedforward_layernorm besides the two pre-norms.
    norm("post_attention_norm");
    norm("post_ffw_norm");
  }
  if (config.numExperts > 1) {
    const e = config.numExperts;
    out.push(tensor(`${p}ffn_gate_inp.weight`, "ffn_gate_inp", e, h, i));
    out.push(tensor(`${p}ffn_gate_exps.weight`, "ffn_gate", ff, h, i, e));
    out.push(tensor(`${p}ffn_up_exps.weight`, "ffn_up", ff, h, i, e));
    out.push(tensor(`${p}ffn_down_exps.weight`, "ffn_down", h, ff, i, e));
  } else if (r.fusedProjections) {
    // Phi-3's gate_up_proj is one [2*ff, h] matrix; GGUF keeps it fused as ffn_up.
    out.push(tensor(`${p}ffn_up.weight`, "ffn_up", 2 * ff, h, i));
    out.push(tensor(`${p}ffn_down.weight`, "ffn_down", h, ff, i));
  } else {
    out.push(tensor(`${p}ffn_gate.weight`, "ffn_gate", ff, h, i));
    out.push(tensor(`${p}ffn_up.weight`, "ffn_up", ff, h, i));
    out.push(tensor(`${p}ffn_down.weight`, "ffn_down", h, ff, i));
    if (config.mlpBias) {
      bias("ffn_gate", ff);
      bias("ffn_up", ff);
      bias("ffn_down", h);
    }
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Tensors outside the layers: token_embd, output_norm and (untied) output. */
export function globalTensors(config: ModelConfig): ModelTensor[] {
  const out = [
    tensor("token_embd.weight", "token_embd", config.vocabSize, config.hiddenSize),
    tensor("output_norm.weight", "norm", 1, config.hiddenSize),
  ];
  if (!config.tieWordEmbeddings) out.push(tensor("output.weight", "output", config.vocabSize, config.hiddenSize));
  return out;
}

/**
 * All tensors in llama.cpp's loader order: tensors outside the layers first (sorted by name), then layer by
 * layer (llama_model_loader's weight_name_comparer sorts by layer number, then by name). That order matters:
 * llama-quantize's per-layer counters (i_attention_wv, i_ffn_down) advance in it.
 */
export function modelTensors(config: ModelConfig): ModelTensor[] {
  const globals = globalTensors(config).sort((a, b) => (a.name < b.name ? -1 : 1));
  const layers: ModelTensor[] = [];
  for (let i = 0; i < config.numLayers; i++) layers.push(...layerTensors(config, i));
  return [...globals, ...layers];
}

export function totalParams(tensors: readonly ModelTensor[]): number {
  return tensors.reduce((s, t) => s + t.params, 0);
}

/** Parameters one token actually runs through (Mixtral: expertsPerToken of numExperts FFNs). */
export function activeParams(config: ModelConfig, tensors: readonly ModelTensor[]): number {
  return tensors.reduce((s, t) => s + (t.experts > 1 ? (t.params / t.experts) * config.expertsPerToken : t.params), 0);
}
