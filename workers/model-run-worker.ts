/**
 * The model-run worker: builds the decoder at each precision and runs it in onnxruntime-web (WebGPU
 * provider, wasm when there is no adapter or the user asks for it), off the page's thread. Sessions live
 * only while a run needs them (src/model/evaluate.ts releases each one); cancel stops a run at its next chunk
 * of tokens or next token, and releases its session.
 */
import * as Comlink from "comlink";
import * as ort from "onnxruntime-web/webgpu";
import { BlobSource } from "../src/formats/source.ts";
import { openModel } from "../src/formats/model.ts";
import { renderChat } from "../src/model/chat-template.ts";
import { evaluatePrecisions, generateAcrossPrecisions } from "../src/model/evaluate.ts";
import { ModelInputError } from "../src/model/architecture.ts";
import { loadDecoder, type LoadedDecoder, type ModelTextFiles } from "../src/model/load.ts";
import { DecoderSession, float16ModeFor, type ExecutionProvider } from "../src/model/session.ts";
import type { Float16Mode } from "../src/model/decoder-graph.ts";
import type { ModelRunWorkerApi, RunOptions, RunProgress } from "./model-run-worker-api.ts";
import { toWireError } from "./wire-error.ts";
import { BUNDLED_MODEL, fetchText } from "./bundled.ts";

const BUNDLED = BUNDLED_MODEL;

let model: LoadedDecoder | undefined;
/** The bundled second text, which gptq/awq precisions calibrate on (the evaluation text never is). */
let calibrationText: Promise<string> | undefined;
let running: AbortController | undefined;

function current(): LoadedDecoder {
  if (!model) throw new Error("no model is loaded");
  return model;
}

/** WebGPU when asked and available, else wasm with the reason; and how f16 runs there (fp16 compute needs shader-f16). */
async function provider(asked: ExecutionProvider): Promise<{ ep: ExecutionProvider; float16: Float16Mode; fallbackReason?: string }> {
  if (asked === "wasm") return { ep: "wasm", float16: float16ModeFor("wasm", false) };
  const gpu = (self.navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  if (adapter) return { ep: "webgpu", float16: float16ModeFor("webgpu", adapter.features.has("shader-f16")) };
  return { ep: "wasm", float16: float16ModeFor("wasm", false), fallbackReason: gpu ? "no WebGPU adapter" : "this browser has no WebGPU" };
}

async function run<T>(options: RunOptions, onProgress: ((p: RunProgress) => void) | undefined, body: (settings: Parameters<typeof evaluatePrecisions>[3]) => Promise<T>): Promise<T & { executionProvider: ExecutionProvider; fallbackReason?: string }> {
  running?.abort();
  const controller = new AbortController();
  running = controller;
  try {
    const { ep, float16, fallbackReason } = await provider(options.executionProvider);
    calibrationText ??= fetchText(new URL("calibration.txt", BUNDLED));
    const m = current();
    let last: RunProgress = { done: 0, total: options.precisions.length, precision: "" };
    const settings = {
      calibrationIds: m.tokenizer!.encode(await calibrationText).slice(0, m.arch.maxPositionEmbeddings),
      ort,
      executionProvider: ep,
      float16,
      signal: controller.signal,
      onProgress: (done: number, total: number, precision: string) => {
        last = { done, total, precision };
        onProgress?.(last);
      },
      onStep: (tokensDone: number, tokens: number) => onProgress?.({ ...last, tokensDone, tokens }),
    };
    const result = await body(settings);
    return { ...result, executionProvider: ep, ...(fallbackReason ? { fallbackReason } : {}) };
  } catch (e) {
    throw toWireError(e);
  } finally {
    if (running === controller) running = undefined;
  }
}

const api: ModelRunWorkerApi = {
  async loadBundled() {
    try {
      ort.env.wasm.numThreads = 1;
      const [config, tokenizer, tokenizerConfig, generationConfig, evalText, calibrationText, weights] = await Promise.all([
        fetchText(new URL("config.json", BUNDLED)),
        fetchText(new URL("tokenizer.json", BUNDLED)),
        fetchText(new URL("tokenizer_config.json", BUNDLED)),
        fetchText(new URL("generation_config.json", BUNDLED)),
        fetchText(new URL("eval.txt", BUNDLED)),
        fetchText(new URL("calibration.txt", BUNDLED)),
        fetch(new URL("model.safetensors", BUNDLED)).then((r) => r.blob()),
      ]);
      const opened = await openModel([new BlobSource(weights, "model.safetensors")]);
      // Replaced only once the new model is complete: a failure keeps what was loaded.
      model = await loadDecoder({ config, tokenizer, tokenizerConfig, generationConfig }, opened);
      return { name: "stories260K", evalText, calibrationText };
    } catch (e) {
      throw toWireError(e);
    }
  },

  async loadFiles(files) {
    try {
      const byName = (name: string) => files.find((f) => f.name === name);
      const config = byName("config.json");
      if (!config) throw new ModelInputError("no config.json among the files: pick the model's whole folder");
      const tokenizer = byName("tokenizer.json");
      if (!tokenizer) throw new ModelInputError("no tokenizer.json among the files: the model's text cannot be tokenized without it");
      const text = async (name: string) => byName(name)?.text();
      const texts: ModelTextFiles = { config: await config.text(), tokenizer: await tokenizer.text() };
      const tokenizerConfig = await text("tokenizer_config.json");
      const generationConfig = await text("generation_config.json");
      if (tokenizerConfig !== undefined) texts.tokenizerConfig = tokenizerConfig;
      if (generationConfig !== undefined) texts.generationConfig = generationConfig;
      const opened = await openModel(files.map((f) => new BlobSource(f)));
      model = await loadDecoder(texts, opened);
      return { name: opened.name };
    } catch (e) {
      throw toWireError(e);
    }
  },

  evaluate(text, options, onProgress) {
    return run(options, onProgress, async (settings) => {
      const m = current();
      const ids = m.tokenizer!.encode(text);
      const context = m.arch.maxPositionEmbeddings ?? ids.length;
      if (ids.length < 2) throw new Error("the text needs at least two tokens");
      const report = await evaluatePrecisions(m, ids.slice(0, context), options.precisions, settings);
      return { ...report, text };
    });
  },

  generate(prompt, tokens, sampling, options, onProgress) {
    return run(options, onProgress, async (settings) => {
      const m = current();
      const tokenizer = m.tokenizer!;
      const promptIds = tokenizer.encode(prompt);
      const room = (m.arch.maxPositionEmbeddings ?? Infinity) - promptIds.length;
      const generations = await generateAcrossPrecisions(m, promptIds, Math.max(1, Math.min(tokens, room)), sampling, options.precisions, { ...settings, stopIds: m.stopIds });
      const rows = generations.map((g) => ({ ...g, pieces: g.ids.map((id) => tokenizer.piece(id)), text: tokenizer.decode(g.ids) }));
      return { rows };
    });
  },

  async renderChat(messages) {
    try {
      const t = model?.tokenizer;
      const options: Parameters<typeof renderChat>[1] = {};
      if (t?.chatTemplate) options.template = t.chatTemplate;
      if (t?.specialTokens.bos) options.bosToken = t.specialTokens.bos;
      if (t?.specialTokens.eos) options.eosToken = t.specialTokens.eos;
      return renderChat(messages, options);
    } catch (e) {
      throw toWireError(e);
    }
  },

  async cancel() {
    running?.abort();
  },

  async liveSessions() {
    return DecoderSession.live;
  },
};

Comlink.expose(api);
