/**
 * A Hugging Face config.json reduced to what memory depends on: layer count, widths, heads, vocabulary,
 * tied embeddings, biases and experts. Pure: it takes the parsed JSON (or its text) and throws
 * MemoryInputError with one line saying what is wrong.
 *
 * Defaults are the ones the transformers config classes apply when a key is absent (LlamaConfig,
 * MistralConfig, Qwen2Config, Qwen3Config, GemmaConfig, Gemma2Config, Phi3Config, MixtralConfig in
 * transformers/models/<arch>/configuration_<arch>.py).
 */

export class MemoryInputError extends Error {
  override readonly name = "MemoryInputError";
}

export function isMemoryInputError(e: unknown): e is MemoryInputError {
  return e instanceof Error && (e as { name?: string }).name === "MemoryInputError";
}

export type Architecture = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma" | "gemma2" | "phi3" | "mixtral";

interface ArchitectureRules {
  /** tie_word_embeddings when the config does not say (transformers' config class default). */
  tiedByDefault: boolean;
  /** q/k/v projections always carry a bias (Qwen2's attention hard-codes bias=True for them). */
  qkvBias: boolean;
  /** Per-head RMSNorm on q and k (Qwen3). */
  qkNorm: boolean;
  /** Norms per layer: 2 (input, post-attention), Gemma2 adds pre/post feed-forward norms: 4. */
  normsPerLayer: number;
  /** Phi-3 stores q/k/v as one qkv_proj and gate/up as one gate_up_proj. */
  fusedProjections: boolean;
  /** Mixture of experts (Mixtral): num_local_experts FFNs and a router per layer. */
  experts: boolean;
  /** The GGUF architecture llama.cpp's converter writes (mistral and mixtral are written as llama). */
  ggufArchitecture: string;
  /** Tokenizer family, for the size of the GGUF tokenizer metadata: SentencePiece or byte-level BPE. */
  tokenizer: "spm" | "bpe";
}

const RULES: Record<Architecture, ArchitectureRules> = {
  llama: rules({ tokenizer: "bpe" }), // Llama 3 is BPE; Llama 2 and stories260K are SPM (see tokenizerOf)
  mistral: rules({ tokenizer: "spm" }),
  qwen2: rules({ qkvBias: true, ggufArchitecture: "qwen2" }),
  qwen3: rules({ qkNorm: true, ggufArchitecture: "qwen3" }),
  gemma: rules({ tiedByDefault: true, ggufArchitecture: "gemma", tokenizer: "spm" }),
  gemma2: rules({ tiedByDefault: true, normsPerLayer: 4, ggufArchitecture: "gemma2", tokenizer: "spm" }),
  phi3: rules({ fusedProjections: true, ggufArchitecture: "phi3", tokenizer: "spm" }),
  mixtral: rules({ experts: true, tokenizer: "spm" }),
};

function rules(over: Partial<ArchitectureRules>): ArchitectureRules {
  return {
    tiedByDefault: false,
    qkvBias: false,
    qkNorm: false,
    normsPerLayer: 2,
    fusedProjections: false,
    experts: false,
    ggufArchitecture: "llama",
    tokenizer: "bpe",
    ...over,
  };
}

export const ARCHITECTURES = Object.keys(RULES) as Architecture[];

export interface ModelConfig {
  /** A preset id or the file name the config came from. */
  name: string;
  architecture: Architecture;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /** Biases on q, k and v (Qwen2; Llama's attention_bias also puts one on o_proj). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama/Gemma attention_bias = true). */
  outputBias: boolean;
  /** Biases on the MLP projections (Llama's mlp_bias). */
  mlpBias: boolean;
  /** 1 for a dense model. */
  numExperts: number;
  /** Experts each token runs through (Mixtral: 2); 1 for a dense model. */
  expertsPerToken: number;
  /** The longest context the model was trained for, when the config says. */
  maxPositionEmbeddings?: number;
}

export function architectureRules(a: Architecture): ArchitectureRules {
  return RULES[a];
}

/** SentencePiece or byte-level BPE: Llama 3's 128k vocabulary is BPE, Llama 2's and stories260K's SPM. */
export function tokenizerOf(config: ModelConfig): "spm" | "bpe" {
  if (config.architecture === "llama") return config.vocabSize >= 100_000 ? "bpe" : "spm";
  return RULES[config.architecture].tokenizer;
}

/** model_type values that name each architecture (qwen2.5 checkpoints say "qwen2"). */
const MODEL_TYPES: Record<string, Architecture> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma: "gemma",
  gemma2: "gemma2",
  phi3: "phi3",
  mixtral: "mixtral",
};

/** Parses config.json text; a syntax error is reported as bad input, not thrown as SyntaxError. */
export function parseConfigText(text: string, name: string): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new MemoryInputError(`${name}: not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(json, name);
}

export function parseConfig(json: unknown, name: string): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new MemoryInputError(`${name}: a config.json must be a JSON object`);
  }
  const c = json as Record<string, unknown>;
  const modelType = c["model_type"];
  if (typeof modelType !== "string") {
    throw new MemoryInputError(`${name}: no "model_type" key, so the architecture is unknown (known: ${ARCHITECTURES.join(", ")})`);
  }
  const architecture = MODEL_TYPES[modelType];
  if (!architecture) {
    throw new MemoryInputError(`${name}: unknown architecture "${modelType}" (known: ${ARCHITECTURES.join(", ")})`);
  }
  const r = RULES[architecture];
  const need = (key: string) => positiveInteger(c, key, name, architecture);
  const optional = (key: string, fallback: number) => (c[key] === undefined || c[key] === null ? fallback : need(key));

  const hiddenSize = need("hidden_size");
  const numHeads = need("num_attention_heads");
  const numKvHeads = optional("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new MemoryInputError(`${name}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDim = optional("head_dim", hiddenSize / numHeads);
  if (!Number.isInteger(headDim)) {
    throw new MemoryInputError(`${name}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and there is no "head_dim"`);
  }
  const attentionBias = flag(c, "attention_bias", false, name);
  const numExperts = r.experts ? need("num_local_experts") : 1;
  const expertsPerToken = r.experts ? need("num_experts_per_tok") : 1;
  if (expertsPerToken > numExperts) {
    throw new MemoryInputError(`${name}: num_experts_per_tok ${expertsPerToken} is more than num_local_experts ${numExperts}`);
  }
  const maxPositions = c["max_position_embeddings"] === undefined ? undefined : need("max_position_embeddings");
  return {
    name,
    architecture,
    hiddenSize,
    numLayers: need("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: need("intermediate_size"),
    vocabSize: need("vocab_size"),
    tieWordEmbeddings: flag(c, "tie_word_embeddings", r.tiedByDefault, name),
    qkvBias: r.qkvBias || attentionBias,
    outputBias: attentionBias,
    mlpBias: flag(c, "mlp_bias", false, name),
    numExperts,
    expertsPerToken,
    ...(maxPositions === undefined ? {} : { maxPositionEmbeddings: maxPositions }),
  };
}

function positiveInteger(c: Record<string, unknown>, key: string, name: string, architecture: Architecture): number {
  const v = c[key];
  if (v === undefined || v === null) throw new MemoryInputError(`${name}: missing key "${key}" (needed for ${architecture})`);
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new MemoryInputError(`${name}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function flag(c: Record<string, unknown>, key: string, fallback: boolean, name: string): boolean {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new MemoryInputError(`${name}: "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}
