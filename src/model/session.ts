/**
 * One decoder graph in an onnxruntime-web InferenceSession: a forward pass with the key/value cache, a
 * whole-text evaluation, and generation that feeds only the new token after the prompt. The ort module is
 * passed in (Node imports onnxruntime-web's node build, the browser its WebGPU build), so this file runs in
 * both.
 */
import type * as Ort from "onnxruntime-web";
import type { DecoderArchitecture } from "./architecture.ts";
import { CALIBRATION_POINTS, calibrationOutputName, type Float16Mode } from "./decoder-graph.ts";

export type OrtModule = typeof Ort;
export type ExecutionProvider = "wasm" | "webgpu";

/**
 * How a provider runs the f16 precision: in fp16 only where it has fp16 kernels. WebGPU computes in fp16
 * when the adapter has shader-f16; without it ORT's WebGPU kernels refuse any float16 tensor, so the fp16
 * values go in as float32. onnxruntime's wasm (CPU) provider has float32 kernels for Gemm, MatMul, Softmax
 * and the norms' ops: it runs an fp16 graph only by wrapping those ops in Casts to float32, so fp16 weights
 * with float32 compute is what it honestly does.
 */
export function float16ModeFor(ep: ExecutionProvider, shaderF16: boolean): Float16Mode {
  if (ep === "webgpu") return shaderF16 ? "compute" : "float32";
  return "cast";
}

/** What the f16 precision computes in, for the table: "fp16", or why not. */
export function float16ComputeNote(mode: Float16Mode): string {
  return mode === "compute" ? "fp16 weights, fp16 compute" : "fp16 weights, fp32 compute (EP has no fp16)";
}

/** Keys and values of every layer so far: [KV, T, D] float32 each. */
export interface KvCache {
  length: number;
  keys: Ort.Tensor[];
  values: Ort.Tensor[];
}

export interface ForwardResult {
  /** [S, V] */
  logits: Float32Array;
  cache: KvCache;
  /** Linear-layer inputs (graphs built with calibrationOutputs), by output name. */
  calibration: Map<string, Float32Array>;
}

export class DecoderSession {
  /** Sessions created and not yet released, in this thread (what a cancelled run must leave at 0). */
  static live = 0;
  private released = false;

  private constructor(
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    readonly arch: DecoderArchitecture,
    readonly executionProvider: ExecutionProvider,
  ) {}

  static async create(ort: OrtModule, model: Uint8Array, arch: DecoderArchitecture, executionProvider: ExecutionProvider): Promise<DecoderSession> {
    const session = await ort.InferenceSession.create(model, { executionProviders: [executionProvider], graphOptimizationLevel: "all" });
    DecoderSession.live++;
    return new DecoderSession(ort, session, arch, executionProvider);
  }

  emptyCache(): KvCache {
    const { numLayers, numKvHeads, headDim } = this.arch;
    const empty = () => new this.ort.Tensor("float32", new Float32Array(0), [numKvHeads, 0, headDim]);
    return { length: 0, keys: Array.from({ length: numLayers }, empty), values: Array.from({ length: numLayers }, empty) };
  }

  /**
   * Runs `ids` after the cached positions. An aborted `signal` stops it before the run, or discards the run's
   * result after it (one run cannot be interrupted: callers split long inputs, see evaluate.ts).
   */
  async forward(ids: readonly number[], cache: KvCache = this.emptyCache(), signal?: AbortSignal): Promise<ForwardResult> {
    const { ort, arch } = this;
    signal?.throwIfAborted();
    if (ids.length === 0) throw new Error("forward needs at least one token");
    const max = arch.maxPositionEmbeddings;
    if (max !== undefined && cache.length + ids.length > max) {
      throw new Error(`${cache.length + ids.length} positions exceed the model's context of ${max}`);
    }
    for (const id of ids) {
      if (!(Number.isInteger(id) && id >= 0 && id < arch.vocabSize)) throw new Error(`token id ${id} is outside the vocabulary of ${arch.vocabSize}`);
    }
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, (i) => BigInt(i)), [ids.length]),
    };
    for (let l = 0; l < arch.numLayers; l++) {
      feeds[`past_key.${l}`] = cache.keys[l]!;
      feeds[`past_value.${l}`] = cache.values[l]!;
    }
    const out = await this.session.run(feeds);
    signal?.throwIfAborted();
    const next: KvCache = { length: cache.length + ids.length, keys: [], values: [] };
    for (let l = 0; l < arch.numLayers; l++) {
      next.keys.push(out[`present_key.${l}`]!);
      next.values.push(out[`present_value.${l}`]!);
    }
    const calibration = new Map<string, Float32Array>();
    for (let l = 0; l < arch.numLayers; l++) {
      for (const point of CALIBRATION_POINTS) {
        const t = out[calibrationOutputName(l, point)];
        if (t) calibration.set(calibrationOutputName(l, point), (await t.getData()) as Float32Array);
      }
    }
    return { logits: (await out["logits"]!.getData()) as Float32Array, cache: next, calibration };
  }

  /** Greedy or sampled continuation of `prompt`: `count` new ids, stopping early after a stop id; `signal` is checked at every token. */
  async generate(prompt: readonly number[], count: number, pick: (logits: Float32Array) => number, stopIds: readonly number[] = [], signal?: AbortSignal): Promise<number[]> {
    const V = this.arch.vocabSize;
    let { logits, cache } = await this.forward(prompt, undefined, signal);
    const generated: number[] = [];
    for (let i = 0; i < count; i++) {
      const rows = logits.length / V;
      const id = pick(logits.subarray((rows - 1) * V));
      generated.push(id);
      if (stopIds.includes(id) || i === count - 1) break;
      ({ logits, cache } = await this.forward([id], cache, signal));
    }
    return generated;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    DecoderSession.live--;
    await this.session.release();
  }
}
