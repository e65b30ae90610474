/**
 * A Hugging Face tokenizer (tokenizer.json, tokenizer_config.json, config.json) as GGUF's tokenizer.* keys,
 * as llama.cpp's convert_hf_to_gguf.py writes them:
 *
 * - SentencePiece-style BPE (model.type "BPE" with byte_fallback, "▁" for spaces: Llama 2, Mistral,
 *   stories260K): tokenizer.ggml.model "llama", with scores and token types (spmVocabulary).
 * - Byte-level BPE (GPT-2's byte-to-unicode alphabet: Qwen2, Llama 3): tokenizer.ggml.model "gpt2", the
 *   pre-tokenizer's name in tokenizer.ggml.pre, tokens with their types, and the merges (_set_vocab_gpt2).
 *
 * Both then take what gguf-py's SpecialVocab takes: the bos/eos/unk/sep/pad ids (tokenizer_config.json's
 * "<typ>_token", else config.json's "<typ>_token_id"), add_bos_token/add_eos_token and the chat template.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { sha256Hex } from "../common/sha256.ts";
import type { GgufKeyValue } from "../formats/gguf-writer.ts";
import { ExportError } from "./export-error.ts";

/** gguf-py's TokenType. */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; byte_fallback?: boolean; unk_token?: string };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: unknown;
}

/** The tokenizer as the exporter is given it. */
export interface TokenizerFiles {
  /** Parsed tokenizer.json. */
  tokenizer: unknown;
  /** Parsed tokenizer_config.json, when there is one. */
  tokenizerConfig?: unknown;
  /** Parsed config.json (bos_token_id, eos_token_id... when tokenizer_config.json does not name them). */
  config: unknown;
  vocabSize: number;
}

/** The tokenizer.* key-values, checked; throws ExportError on a tokenizer GGUF cannot express. */
export async function tokenizerKeyValues(files: TokenizerFiles): Promise<GgufKeyValue[]> {
  const t = files.tokenizer as TokenizerJson;
  const model = t?.model;
  if (!model || model.type !== "BPE" || typeof model.vocab !== "object" || model.vocab === null) {
    throw new ExportError(`tokenizer.json is not a BPE vocabulary (model.type ${JSON.stringify(model?.type)}); the GGUF export writes BPE tokenizers (SentencePiece-style or byte-level)`);
  }
  const kv = model.byte_fallback === true ? spmVocabulary(t, files.vocabSize) : await bpeVocabulary(t, files);
  return [...kv, ...specialKeyValues(t, files)];
}

function stringArray(key: string, value: string[]): GgufKeyValue {
  return { key, value: { type: "array", elementType: "string", value } };
}

/**
 * SentencePiece-style BPE as GGUF's "llama" vocabulary. Scores: SentencePiece lists pieces in score order,
 * so a normal piece's score is minus its rank among the normal pieces (0, -1, -2, ...); byte and control
 * tokens score 0. That reproduces llama.c's tok512 exactly (../shared/golden/gguf README) and is all
 * llama.cpp's SPM tokenizer needs (it compares scores to order merges).
 */
function spmVocabulary(t: TokenizerJson, vocabSize: number): GgufKeyValue[] {
  const model = t.model!;
  const tokens = new Array<string>(vocabSize);
  for (const [piece, id] of Object.entries(model.vocab!)) if (id >= 0 && id < vocabSize) tokens[id] = piece;
  const special = new Set<number>();
  for (const a of t.added_tokens ?? []) {
    if (a.id >= 0 && a.id < vocabSize) {
      tokens[a.id] = a.content;
      if (a.special) special.add(a.id);
    }
  }
  const missing = tokens.findIndex((p) => p === undefined);
  if (missing >= 0 || tokens.length !== vocabSize) throw new ExportError(`tokenizer.json has no token for id ${missing} (config.json says vocab_size ${vocabSize})`);
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  const unk = model.unk_token !== undefined ? model.vocab![model.unk_token] : undefined;
  let rank = 0;
  tokens.forEach((piece, id) => {
    if (id === unk) types[id] = TOKEN_TYPE.unknown;
    else if (special.has(id)) types[id] = TOKEN_TYPE.control;
    else if (/^<0x[0-9A-F]{2}>$/.test(piece)) types[id] = TOKEN_TYPE.byte;
    else {
      types[id] = TOKEN_TYPE.normal;
      scores[id] = -rank++;
    }
  });
  return [
    { key: "tokenizer.ggml.model", value: { type: "string", value: "llama" } },
    stringArray("tokenizer.ggml.tokens", tokens),
    { key: "tokenizer.ggml.scores", value: { type: "array", elementType: "f32", value: scores } },
    { key: "tokenizer.ggml.token_type", value: { type: "array", elementType: "i32", value: types } },
  ];
}

/** convert_hf_to_gguf's does_token_look_special: added tokens that are control tokens whatever their flag says. */
function looksSpecial(token: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(token) || /^<\|.*\|>$/s.test(token) || /^<｜.*｜>$/s.test(token);
}

/**
 * Byte-level BPE as GGUF's "gpt2" vocabulary (convert_hf_to_gguf's get_vocab_base and _set_vocab_gpt2):
 * every id below vocab_size is a token ("[PAD<i>]", unused, where the tokenizer has none), added tokens are
 * control tokens when special (or looking special) and user-defined otherwise, and the merges are written
 * as "left right" strings in rank order.
 */
async function bpeVocabulary(t: TokenizerJson, files: TokenizerFiles): Promise<GgufKeyValue[]> {
  const model = t.model!;
  const { vocabSize } = files;
  const tokens = new Array<string>(vocabSize);
  const types = new Int32Array(vocabSize);
  for (const [piece, id] of Object.entries(model.vocab!)) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new ExportError(`tokenizer.json has the token id ${id}, outside config.json's vocab_size ${vocabSize}`);
    tokens[id] = piece;
    types[id] = TOKEN_TYPE.normal;
  }
  for (const a of t.added_tokens ?? []) {
    if (!Number.isInteger(a.id) || a.id < 0 || a.id >= vocabSize) throw new ExportError(`tokenizer.json adds the token id ${a.id}, outside config.json's vocab_size ${vocabSize}`);
    const control = a.special === true || looksSpecial(a.content);
    tokens[a.id] = control ? a.content : a.content.replaceAll("\u2581", " ");
    types[a.id] = control ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
    }
  }
  const merges = (model.merges ?? []).map((m) => (typeof m === "string" ? m : m.join(" ")));
  return [
    { key: "tokenizer.ggml.model", value: { type: "string", value: "gpt2" } },
    { key: "tokenizer.ggml.pre", value: { type: "string", value: await preTokenizerName(t, encoderOf(files)) } },
    stringArray("tokenizer.ggml.tokens", tokens),
    { key: "tokenizer.ggml.token_type", value: { type: "array", elementType: "i32", value: types } },
    stringArray("tokenizer.ggml.merges", merges),
  ];
}

/**
 * The tokenizer's encode as the converter calls it (AutoTokenizer's encode: special tokens added), with
 * @huggingface/tokenizers; undefined when it cannot build this tokenizer (the split pattern decides then).
 */
function encoderOf(files: TokenizerFiles): ((text: string) => number[]) | undefined {
  try {
    const tokenizer = new Tokenizer(files.tokenizer as object, (files.tokenizerConfig ?? {}) as object);
    return (text) => tokenizer.encode(text, { add_special_tokens: true }).ids;
  } catch {
    return undefined;
  }
}

/**
 * convert_hf_to_gguf's get_vocab_base_pre: the SHA-256 of the ids the tokenizer gives this text (as Python
 * prints a list) names the pre-tokenizer of the checkpoints llama.cpp knows. The text is the converter's
 * chktxt, character for character.
 */
const CHECK_TEXT =
  "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

/** A few of the converter's fingerprints (the checkpoints the lab's exports target). */
const PRE_BY_FINGERPRINT: Readonly<Record<string, string>> = {
  "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe", // meta-llama/Meta-Llama-3-8B
  "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2", // Qwen/Qwen1.5-7B
  "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2", // openai-community/gpt2
  "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm", // HuggingFaceTB/SmolLM-135M
  "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm", // deepseek-ai/deepseek-llm-7b-base
};

/**
 * The split patterns of the pre-tokenizers llama.cpp implements (llama-vocab.cpp's regex per pre type),
 * as tokenizer.json's Split pre-tokenizer spells them. A tokenizer the fingerprint does not know (a new or
 * small vocabulary with a known pre-tokenizer) is recognized by its pattern: that pattern is what the
 * pre-tokenizer does.
 */
const PRE_BY_PATTERN: Readonly<Record<string, string>> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
};

/** The Split patterns anywhere in a pre_tokenizer (a Sequence nests them). */
function splitPatterns(node: unknown): string[] {
  if (typeof node !== "object" || node === null) return [];
  const n = node as { type?: string; pattern?: { Regex?: string; String?: string }; pretokenizers?: unknown[] };
  const own = n.type === "Split" && typeof n.pattern?.Regex === "string" ? [n.pattern.Regex] : [];
  return [...own, ...(n.pretokenizers ?? []).flatMap(splitPatterns)];
}

/** Whether the pre-tokenizer is GPT-2's own: ByteLevel with its built-in regex, nothing else. */
function isGpt2ByteLevel(node: unknown): boolean {
  const n = node as { type?: string; use_regex?: boolean } | null;
  return n?.type === "ByteLevel" && n.use_regex !== false;
}

/** tokenizer.ggml.pre: by the converter's fingerprint when `encode` is given and the fingerprint is known, else by the split pattern. */
export async function preTokenizerName(t: TokenizerJson, encode?: (text: string) => number[]): Promise<string> {
  if (encode) {
    const fingerprint = await sha256Hex(new TextEncoder().encode(`[${encode(CHECK_TEXT).join(", ")}]`));
    const known = PRE_BY_FINGERPRINT[fingerprint];
    if (known) return known;
  }
  const patterns = splitPatterns(t.pre_tokenizer);
  const byPattern = patterns.map((p) => PRE_BY_PATTERN[p]).find((name) => name !== undefined);
  if (byPattern) return byPattern;
  if (patterns.length === 0 && isGpt2ByteLevel(t.pre_tokenizer)) return "gpt-2";
  throw new ExportError(
    "the byte-level BPE pre-tokenizer was not recognized (neither the converter's fingerprint nor a split pattern llama.cpp implements: qwen2, llama-bpe, gpt-2)",
  );
}

type SpecialKind = "bos" | "eos" | "unk" | "sep" | "pad";
/** gguf-py's key for each special token. */
const SPECIAL_KEYS: Readonly<Record<SpecialKind, string>> = {
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  sep: "tokenizer.ggml.seperator_token_id",
  pad: "tokenizer.ggml.padding_token_id",
};

/**
 * SpecialVocab's keys: each special token's id from tokenizer_config.json's "<kind>_token" (a string or
 * {content}), looked up among the added tokens and the vocabulary; else config.json's "<kind>_token_id";
 * add_bos_token / add_eos_token as tokenizer_config.json says; its chat template.
 */
function specialKeyValues(t: TokenizerJson, files: TokenizerFiles): GgufKeyValue[] {
  const tc = (files.tokenizerConfig ?? {}) as Record<string, unknown>;
  const config = (files.config ?? {}) as Record<string, unknown>;
  const idOf = new Map<string, number>(Object.entries(t.model?.vocab ?? {}));
  for (const a of t.added_tokens ?? []) idOf.set(a.content, a.id);
  const out: GgufKeyValue[] = [];
  for (const kind of Object.keys(SPECIAL_KEYS) as SpecialKind[]) {
    const named = tc[`${kind}_token`];
    const content = typeof named === "string" ? named : (named as { content?: unknown } | null)?.content;
    let id = typeof content === "string" ? idOf.get(content) : undefined;
    if (id === undefined) {
      const fromConfig = config[`${kind}_token_id`];
      const first = Array.isArray(fromConfig) ? fromConfig[0] : fromConfig;
      if (Number.isInteger(first) && (first as number) >= 0) id = first as number;
    }
    // llama2.c's tokenizer names <unk> in the model only (tokenizer_config.json may not).
    if (id === undefined && kind === "unk" && t.model?.unk_token !== undefined) id = idOf.get(t.model.unk_token);
    // The SPM export has always named <s> and </s> when the vocabulary has them.
    if (id === undefined && t.model?.byte_fallback === true && (kind === "bos" || kind === "eos")) id = idOf.get(kind === "bos" ? "<s>" : "</s>");
    if (id !== undefined && id < files.vocabSize) out.push({ key: SPECIAL_KEYS[kind], value: { type: "u32", value: id } });
  }
  for (const kind of ["bos", "eos"] as const) {
    const add = tc[`add_${kind}_token`];
    if (typeof add === "boolean") out.push({ key: `tokenizer.ggml.add_${kind}_token`, value: { type: "bool", value: add } });
  }
  const template = chatTemplate(tc["chat_template"]);
  if (template !== undefined) out.push({ key: "tokenizer.chat_template", value: { type: "string", value: template } });
  return out;
}

/** tokenizer_config.json's chat_template: a string, or a list of {name, template} whose "default" one is the template. */
function chatTemplate(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const entry = v.find((e) => (e as { name?: unknown })?.name === "default") as { template?: unknown } | undefined;
    return typeof entry?.template === "string" ? entry.template : undefined;
  }
  return undefined;
}
