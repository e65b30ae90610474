/**
 * Built-in configs: the key fields of each model's public config.json on the Hugging Face hub (the
 * repository named in `source`), written out by hand. They go through the same parser as a user's file.
 * Published parameter totals (model cards) are kept beside them so a test checks our count against them.
 */
import { MemoryInputError, parseConfig, type ModelConfig } from "./config.ts";

export interface Preset {
  id: string;
  /** The Hugging Face repository whose config.json these values come from. */
  source: string;
  /** The parameter count the model card publishes, in billions, when it gives one. */
  publishedBillions?: number;
  config: Record<string, unknown>;
}

const qwen25 = (over: Record<string, unknown>) => ({
  model_type: "qwen2",
  max_position_embeddings: 32768,
  tie_word_embeddings: false,
  vocab_size: 152064,
  ...over,
});

const llama3 = (over: Record<string, unknown>) => ({
  model_type: "llama",
  max_position_embeddings: 131072,
  tie_word_embeddings: false,
  vocab_size: 128256,
  num_key_value_heads: 8,
  ...over,
});

export const PRESETS: readonly Preset[] = [
  {
    id: "qwen2.5-0.5b",
    source: "Qwen/Qwen2.5-0.5B-Instruct",
    publishedBillions: 0.49,
    config: qwen25({ hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true }),
  },
  {
    id: "qwen2.5-1.5b",
    source: "Qwen/Qwen2.5-1.5B-Instruct",
    publishedBillions: 1.54,
    config: qwen25({ hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true }),
  },
  {
    id: "qwen2.5-3b",
    source: "Qwen/Qwen2.5-3B-Instruct",
    publishedBillions: 3.09,
    config: qwen25({ hidden_size: 2048, intermediate_size: 11008, num_hidden_layers: 36, num_attention_heads: 16, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true }),
  },
  {
    id: "qwen2.5-7b",
    source: "Qwen/Qwen2.5-7B-Instruct",
    publishedBillions: 7.61,
    config: qwen25({ hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4 }),
  },
  {
    id: "qwen2.5-14b",
    source: "Qwen/Qwen2.5-14B-Instruct",
    publishedBillions: 14.7,
    config: qwen25({ hidden_size: 5120, intermediate_size: 13824, num_hidden_layers: 48, num_attention_heads: 40, num_key_value_heads: 8 }),
  },
  {
    id: "qwen2.5-32b",
    source: "Qwen/Qwen2.5-32B-Instruct",
    publishedBillions: 32.5,
    config: qwen25({ hidden_size: 5120, intermediate_size: 27648, num_hidden_layers: 64, num_attention_heads: 40, num_key_value_heads: 8 }),
  },
  {
    id: "qwen2.5-72b",
    source: "Qwen/Qwen2.5-72B-Instruct",
    publishedBillions: 72.7,
    config: qwen25({ hidden_size: 8192, intermediate_size: 29568, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8 }),
  },
  {
    id: "qwen3-8b",
    source: "Qwen/Qwen3-8B",
    publishedBillions: 8.2,
    config: { model_type: "qwen3", hidden_size: 4096, intermediate_size: 12288, num_hidden_layers: 36, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, tie_word_embeddings: false, max_position_embeddings: 40960 },
  },
  {
    id: "llama-3.2-1b",
    source: "meta-llama/Llama-3.2-1B-Instruct",
    publishedBillions: 1.24,
    config: llama3({ hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32, head_dim: 64, tie_word_embeddings: true }),
  },
  {
    id: "llama-3.2-3b",
    source: "meta-llama/Llama-3.2-3B-Instruct",
    publishedBillions: 3.21,
    config: llama3({ hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 28, num_attention_heads: 24, head_dim: 128, tie_word_embeddings: true }),
  },
  {
    id: "llama-3.1-8b",
    source: "meta-llama/Llama-3.1-8B-Instruct",
    publishedBillions: 8.03,
    config: llama3({ hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32 }),
  },
  {
    id: "llama-3.1-70b",
    source: "meta-llama/Llama-3.1-70B-Instruct",
    publishedBillions: 70.6,
    config: llama3({ hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 80, num_attention_heads: 64 }),
  },
  {
    id: "mistral-7b",
    source: "mistralai/Mistral-7B-v0.1",
    publishedBillions: 7.24,
    config: { model_type: "mistral", hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000, tie_word_embeddings: false, max_position_embeddings: 32768 },
  },
  {
    id: "mixtral-8x7b",
    source: "mistralai/Mixtral-8x7B-v0.1",
    publishedBillions: 46.7,
    config: { model_type: "mixtral", hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000, num_local_experts: 8, num_experts_per_tok: 2, tie_word_embeddings: false, max_position_embeddings: 32768 },
  },
  {
    id: "gemma-7b",
    source: "google/gemma-7b",
    publishedBillions: 8.54,
    config: { model_type: "gemma", hidden_size: 3072, intermediate_size: 24576, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 16, head_dim: 256, vocab_size: 256000, max_position_embeddings: 8192 },
  },
  {
    id: "gemma-2-9b",
    source: "google/gemma-2-9b-it",
    publishedBillions: 9.24,
    config: { model_type: "gemma2", hidden_size: 3584, intermediate_size: 14336, num_hidden_layers: 42, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 256, vocab_size: 256000, max_position_embeddings: 8192 },
  },
  {
    id: "phi-3-mini",
    source: "microsoft/Phi-3-mini-4k-instruct",
    publishedBillions: 3.82,
    config: { model_type: "phi3", hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32064, tie_word_embeddings: false, max_position_embeddings: 4096 },
  },
];

export function findPreset(id: string): Preset | undefined {
  const wanted = id.toLowerCase();
  return PRESETS.find((p) => p.id === wanted);
}

export function presetConfig(id: string): ModelConfig {
  const preset = findPreset(id);
  if (!preset) throw new MemoryInputError(`unknown preset "${id}" (presets: ${PRESETS.map((p) => p.id).join(", ")})`);
  return parseConfig(preset.config, preset.id);
}
