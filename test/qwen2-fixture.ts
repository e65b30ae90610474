/**
 * A tiny Qwen2-style checkpoint built for tests (no real byte-level BPE tokenizer is available offline):
 * seeded random weights with Qwen2's q/k/v biases, a qwen2 config.json, and a byte-level BPE tokenizer.json
 * made the way GPT-2/Qwen2 tokenizers are: GPT-2's byte-to-unicode alphabet (256 base tokens), merges
 * learned on a small English/Chinese/code corpus, Qwen2's pre-tokenizer (its split regex, then ByteLevel),
 * the ChatML special tokens and one non-special added token, and tokenizer_config.json with Qwen2's chat
 * template. Node-only.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { encodeFromF32 } from "../src/formats/dtypes.ts";
import { writeSafetensors, type TensorToWrite } from "../src/formats/safetensors.ts";
import { gaussian } from "./random.ts";

/** Qwen2's split pattern, as its tokenizer.json spells it. */
export const QWEN2_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others move to U+0100 and up. */
export function byteToUnicode(): string[] {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out = new Array<string>(256);
  let next = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep(b) ? b : 256 + next++);
  return out;
}

const CORPUS = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.
The quick brown fox jumps over the lazy dog. It's 2024 and we're testing tokenizers: they'll split words, numbers 12345 and symbols! In 2024, 2025 and 2026 we count 100, 200 and 300.
def tokenize(text):\n    return [t for t in text.split(" ") if t]\n
我想在苹果公司工作。今天天气很好，我们去公园散步吧。Привет, как дела? Ça va très bien, merci.
The model reads the story again and again, and the story gets better every time she reads it.`;

/**
 * Pre-tokens for training: like Qwen2's split, but digits in runs (as Llama 3's split keeps up to three), so
 * the merges include digit pairs ("2 0") that Qwen2's one-digit split never applies and Llama 3's would: a
 * GGUF that named the wrong pre-tokenizer would then tokenize numbers differently in llama.cpp.
 */
function pretokens(text: string): string[] {
  return text.match(/'(?:[sStTmMdD]|re|RE|ve|VE|ll|LL)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu) ?? [];
}

/** Byte-pair merges learned on the corpus: the most frequent adjacent pair each round (ties: first seen). */
function learnMerges(count: number): [string, string][] {
  const alphabet = byteToUnicode();
  const encoder = new TextEncoder();
  const words = new Map<string, number>();
  for (const p of pretokens(CORPUS)) {
    const w = [...encoder.encode(p)].map((b) => alphabet[b]!).join("\u0000");
    words.set(w, (words.get(w) ?? 0) + 1);
  }
  let split = [...words].map(([w, n]) => ({ symbols: w.split("\u0000"), n }));
  const merges: [string, string][] = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of split) for (let i = 0; i + 1 < symbols.length; i++) pairs.set(`${symbols[i]}\u0000${symbols[i + 1]}`, (pairs.get(`${symbols[i]}\u0000${symbols[i + 1]}`) ?? 0) + n);
    let best: string | undefined;
    for (const [pair, n] of pairs) if (best === undefined || n > pairs.get(best)!) best = pair;
    if (best === undefined) break;
    const [a, b] = best.split("\u0000") as [string, string];
    merges.push([a, b]);
    split = split.map(({ symbols, n }) => {
      const out: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (symbols[i] === a && symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(symbols[i]!);
      }
      return { symbols: out, n };
    });
  }
  return merges;
}

export const QWEN2_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface Qwen2Fixture {
  dir: string;
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  config: Record<string, unknown>;
  /** Ids of the special tokens. */
  special: { endOfText: number; imStart: number; imEnd: number; custom: number };
  /** The tokenizer's own tokens (base + merges + added); config.json's vocab_size is larger (padding). */
  tokenCount: number;
}

/** Writes the checkpoint into `dir` (config.json, model.safetensors, tokenizer.json, tokenizer_config.json). */
export async function writeQwen2Fixture(dir: string): Promise<Qwen2Fixture> {
  const alphabet = byteToUnicode();
  const merges = learnMerges(300);
  const vocab: Record<string, number> = {};
  for (const c of alphabet) vocab[c] = Object.keys(vocab).length;
  for (const [a, b] of merges) if (vocab[a + b] === undefined) vocab[a + b] = Object.keys(vocab).length;
  const base = Object.keys(vocab).length;
  const special = { endOfText: base, imStart: base + 1, imEnd: base + 2, custom: base + 3 };
  const added = (id: number, content: string, isSpecial: boolean) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: !isSpecial, special: isSpecial });
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      added(special.endOfText, "<|endoftext|>", true),
      added(special.imStart, "<|im_start|>", true),
      added(special.imEnd, "<|im_end|>", true),
      added(special.custom, "<custom>", false),
    ],
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  const tokenCount = base + 4;
  const vocabSize = Math.ceil(tokenCount / 64) * 64 + 64; // padded, as Qwen2 pads its embedding
  const [hidden, heads, kvHeads, ff, layers] = [64, 4, 2, 128, 2];
  const headDim = hidden / heads;
  const config = {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    hidden_size: hidden,
    intermediate_size: ff,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    vocab_size: vocabSize,
    bos_token_id: special.endOfText,
    eos_token_id: special.imEnd,
    torch_dtype: "float32",
  };
  const tokenizerConfig = {
    add_prefix_space: false,
    bos_token: null,
    eos_token: "<|im_end|>",
    pad_token: "<|endoftext|>",
    unk_token: null,
    chat_template: QWEN2_CHAT_TEMPLATE,
    model_max_length: 512,
    tokenizer_class: "Qwen2Tokenizer",
  };

  let seed = 1000;
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const x = gaussian(shape.reduce((a, b) => a * b, 1), std, seed++).map((v) => v + mean);
    tensors.push({ name, dtype: "F32", shape, data: encodeFromF32("F32", x) });
  };
  add("model.embed_tokens.weight", [vocabSize, hidden], 0.05);
  add("model.norm.weight", [hidden], 0.02, 1);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [hidden], 0.02, 1);
    add(`${p}post_attention_layernorm.weight`, [hidden], 0.02, 1);
    add(`${p}self_attn.q_proj.weight`, [heads * headDim, hidden], 0.05);
    add(`${p}self_attn.q_proj.bias`, [heads * headDim], 0.02);
    add(`${p}self_attn.k_proj.weight`, [kvHeads * headDim, hidden], 0.05);
    add(`${p}self_attn.k_proj.bias`, [kvHeads * headDim], 0.02);
    add(`${p}self_attn.v_proj.weight`, [kvHeads * headDim, hidden], 0.05);
    add(`${p}self_attn.v_proj.bias`, [kvHeads * headDim], 0.02);
    add(`${p}self_attn.o_proj.weight`, [hidden, heads * headDim], 0.05);
    add(`${p}mlp.gate_proj.weight`, [ff, hidden], 0.05);
    add(`${p}mlp.up_proj.weight`, [ff, hidden], 0.05);
    add(`${p}mlp.down_proj.weight`, [hidden, ff], 0.05);
  }

  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  await writeFile(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  await writeFile(path.join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig, null, 2));
  await writeFile(path.join(dir, "model.safetensors"), writeSafetensors(tensors));
  return { dir, tokenizer, tokenizerConfig, config, special, tokenCount };
}
