/**
 * A decoder ready to build: its architecture (config.json), float32 weights (safetensors) and, when the
 * files are there, its tokenizer. Everything is read and checked before anything is returned, so a caller
 * replaces what it showed only with a model that is complete.
 */
import type { OpenedModel } from "../formats/model.ts";
import { parseDecoderConfig, type DecoderArchitecture } from "./architecture.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
import { loadDecoderWeights, type DecoderWeights } from "./weights.ts";

export interface ModelTextFiles {
  /** config.json's text. */
  config: string;
  /** tokenizer.json's text. */
  tokenizer?: string;
  tokenizerConfig?: string;
  /** generation_config.json's text (for its stop ids). */
  generationConfig?: string;
}

export interface LoadedDecoder {
  arch: DecoderArchitecture;
  weights: DecoderWeights;
  tokenizer?: TextTokenizer;
  /** Ids that end a generation (generation_config.json's eos_token_id, one id or a list). */
  stopIds: number[];
}

export async function loadDecoder(files: ModelTextFiles, opened: OpenedModel, signal?: AbortSignal): Promise<LoadedDecoder> {
  const arch = parseDecoderConfig(files.config, "config.json");
  const tokenizer = files.tokenizer === undefined ? undefined : loadTokenizer(files.tokenizer, files.tokenizerConfig, arch.vocabSize);
  const weights = await loadDecoderWeights(opened, arch, signal);
  const loaded: LoadedDecoder = { arch, weights, stopIds: stopIdsOf(files.generationConfig) };
  if (tokenizer) loaded.tokenizer = tokenizer;
  return loaded;
}

function stopIdsOf(generationConfig: string | undefined): number[] {
  if (generationConfig === undefined) return [];
  try {
    const eos = (JSON.parse(generationConfig) as { eos_token_id?: unknown }).eos_token_id;
    const ids = Array.isArray(eos) ? eos : [eos];
    return ids.filter((v): v is number => Number.isInteger(v));
  } catch {
    return []; // stop ids only shorten generations; a broken file is not worth refusing the model for
  }
}
