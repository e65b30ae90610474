/**
 * The model's tokenizer from tokenizer.json + tokenizer_config.json, with @huggingface/tokenizers (the
 * maintained JS port of Hugging Face tokenizers), checked against the model's vocabulary: an id the
 * embedding has no row for would make every run fail later, so it is refused here by name.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelInputError } from "./architecture.ts";

export interface TextTokenizer {
  /** Ids as the model is trained to see them (BOS first when tokenizer_config.json says so). */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** Each id's piece, for showing where two generations depart. */
  piece(id: number): string;
  /** Highest id + 1 over the vocabulary and added tokens. */
  size: number;
  /** tokenizer_config.json's chat_template, when it has one. */
  chatTemplate?: string;
  specialTokens: { bos?: string; eos?: string };
}

function parseJson(text: string, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ModelInputError(`${name}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ModelInputError(`${name}: not a JSON object`);
  return v as Record<string, unknown>;
}

function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

export function loadTokenizer(tokenizerJson: string, tokenizerConfigJson: string | undefined, vocabSize: number): TextTokenizer {
  const json = parseJson(tokenizerJson, "tokenizer.json");
  const config = tokenizerConfigJson === undefined ? {} : parseJson(tokenizerConfigJson, "tokenizer_config.json");
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new ModelInputError(`tokenizer.json: the tokenizer cannot be built (${(e as Error).message})`);
  }
  let size = 0;
  for (const id of tokenizer.get_vocab(true).values()) size = Math.max(size, id + 1);
  for (const id of tokenizer.get_added_tokens_decoder().keys()) size = Math.max(size, id + 1);
  if (size > vocabSize) {
    throw new ModelInputError(`tokenizer.json has ids up to ${size - 1}, but the model's vocabulary has ${vocabSize} entries (vocab_size in config.json): they do not belong together`);
  }
  const out: TextTokenizer = {
    encode: (text) => tokenizer.encode(text).ids,
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true }),
    piece: (id) => tokenizer.id_to_token(id) ?? `<${id}>`,
    size,
    specialTokens: {},
  };
  const bos = tokenText(config["bos_token"]);
  const eos = tokenText(config["eos_token"]);
  if (bos !== undefined) out.specialTokens.bos = bos;
  if (eos !== undefined) out.specialTokens.eos = eos;
  if (typeof config["chat_template"] === "string") out.chatTemplate = config["chat_template"];
  return out;
}
