/**
 * "Will it fit?": GPU and CPU memory of a model for inference (per framework) and for training, split into
 * named components. Pure arithmetic on a ModelConfig; every assumption is a named constant or a comment
 * saying where it comes from.
 */
import { getFormat } from "../quant/registry.ts";
import { MemoryInputError, type ModelConfig } from "./config.ts";
import type { GpuPreset } from "./gpus.ts";
import { ggufFileTypeOf, resolvePrecision, tensorBytes, type Precision } from "./precision.ts";
import { isLinear, modelTensors, totalParams, type ModelTensor } from "./tensors.ts";

export const MIB = 1024 * 1024;

export const FRAMEWORKS = ["transformers", "vllm", "llama.cpp", "ollama", "lightllm", "fastllm"] as const;
export type Framework = (typeof FRAMEWORKS)[number];

export const KV_CACHE_TYPES = ["f16", "q8_0", "q4_0"] as const;
export type KvCacheType = (typeof KV_CACHE_TYPES)[number];

/**
 * What a process pays for using CUDA at all: the context, cuBLAS and the kernels it loads. nvidia-smi shows a
 * few hundred MiB for a PyTorch process that has only run one matmul (kernels load lazily since CUDA 11.7,
 * CUDA_MODULE_LOADING=LAZY, PyTorch's default since 1.13); 400 MiB is taken for every CUDA framework.
 */
export const CUDA_CONTEXT_BYTES = 400 * MIB;

/**
 * vLLM captures CUDA graphs after it has sized the KV cache, so their memory lies outside
 * gpu_memory_utilization's budget (vLLM logs "Graph capturing finished ... took X GiB"; a few hundred MiB
 * for a 7B-14B model with the default capture sizes). 256 MiB is assumed.
 */
export const VLLM_CUDA_GRAPH_BYTES = 256 * MIB;
/** vLLM's default gpu_memory_utilization (vllm/engine/arg_utils.py). */
export const VLLM_DEFAULT_UTILIZATION = 0.9;
/** vLLM's paged KV cache allocates whole blocks of 16 tokens per sequence (--block-size default 16). */
export const VLLM_BLOCK_TOKENS = 16;
/** Tokens in vLLM's memory-profiling forward pass: max_num_batched_tokens (SchedulerConfig's 2048 default with chunked prefill). */
export const VLLM_PROFILE_TOKENS = 2048;
/** Sequences the profile run samples from (max_num_seqs default 256): their last-position logits in fp32. */
export const VLLM_PROFILE_SEQUENCES = 256;
/** LightLLM's --mem_fraction default (docs/EN/source/tutorial/api_server_args.rst): the share of GPU memory it takes. */
export const LIGHTLLM_MEM_FRACTION = 0.85;
/** llama.cpp's physical batch (n_ubatch default 512): its compute buffers are sized for this many tokens. */
export const LLAMA_CPP_UBATCH = 512;
/** transformers' default LoRA rank is PEFT's r=8; the lab uses 16, a common choice for LLM fine-tuning. */
export const DEFAULT_LORA_RANK = 16;

export interface InferenceOptions {
  precision: Precision;
  framework: Framework;
  /** Tokens per sequence; 0 gives the footprint right after loading. */
  context: number;
  /** Sequences at once. */
  batch: number;
  gpu: GpuPreset;
  /** llama.cpp/ollama: layers offloaded to the GPU (n_gpu_layers); n_layer + 1 also offloads the output layer. */
  gpuLayers?: number;
  kvCache?: KvCacheType;
  /** vLLM only. */
  gpuMemoryUtilization?: number;
}

export type Components = Record<string, number>;

export interface MemoryEstimate {
  params: number;
  /** weights, kv_cache, activations, overhead (and gradients, optimizer when training), in bytes. */
  components: Components;
  totalBytes: number;
  gpuBytes: number;
  cpuBytes: number;
  fits: boolean;
  /** "fits", "does not fit" or "fits with n_gpu_layers = k". */
  verdict: string;
  /** llama.cpp/ollama: the layers on the GPU this estimate assumed. */
  gpuLayers?: number;
  /** vLLM/LightLLM: how many sequences of `context` tokens the KV cache then holds. */
  maxSequences?: number;
  /** What this estimate assumes, one line each. */
  assumptions: string[];
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new MemoryInputError(`${name} must be an integer >= ${min}, got ${v}`);
}

/** Bytes of one cached K or V element: fp16, or ggml's q8_0/q4_0 blocks (from the format registry). */
export function kvElementBytes(type: KvCacheType): number {
  if (type === "f16") return 2;
  const f = getFormat(type);
  return f.blockBytes / f.blockWeights;
}

/** layers x 2 (K and V) x kv_heads x head_dim x tokens x sequences x bytes per element. */
export function kvCacheBytes(config: ModelConfig, tokens: number, sequences: number, elementBytes: number, layers = config.numLayers): number {
  return layers * 2 * config.numKvHeads * config.headDim * tokens * sequences * elementBytes;
}

/**
 * Activations of one layer's forward pass over `tokens` tokens at inference (no autograd graph kept): the
 * residual and normed hidden states (2h), q, k, v and the attention output (2q + 2kv; SDPA/flash attention
 * keeps no tokens x tokens matrix), and the MLP's gate, up and their product (3 x ff per active expert).
 */
export function layerActivationBytes(config: ModelConfig, tokens: number, elementBytes: number): number {
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const ff = config.intermediateSize * config.expertsPerToken;
  return tokens * (2 * config.hiddenSize + 2 * q + 2 * kv + 3 * ff) * elementBytes;
}

const largest = (xs: readonly number[]) => xs.reduce((m, x) => Math.max(m, x), 0);

function verdictFor(fits: boolean): string {
  return fits ? "fits" : "does not fit";
}

function finish(params: number, components: Components, gpuBytes: number, cpuBytes: number, gpu: GpuPreset, extra: Partial<MemoryEstimate>, assumptions: string[]): MemoryEstimate {
  const totalBytes = Object.values(components).reduce((a, b) => a + b, 0);
  const fits = extra.fits ?? gpuBytes <= gpu.usableBytes;
  return { params, components, totalBytes, gpuBytes, cpuBytes, fits, verdict: extra.verdict ?? verdictFor(fits), ...extra, assumptions };
}

/** The inference estimate for one framework. */
export function estimateInference(config: ModelConfig, options: InferenceOptions): MemoryEstimate {
  checkCount("context", options.context, 0);
  checkCount("batch", options.batch, 1);
  if (options.gpuLayers !== undefined) checkCount("gpu layers", options.gpuLayers, 0);
  const tensors = modelTensors(config);
  switch (options.framework) {
    case "transformers":
      return transformers(config, tensors, options);
    case "vllm":
      return pagedServer(config, tensors, options, "vllm");
    case "lightllm":
      return pagedServer(config, tensors, options, "lightllm");
    case "llama.cpp":
    case "ollama":
      return llamaCpp(config, tensors, options);
    case "fastllm":
      return fastllm(config, tensors, options);
  }
}

function requireTorchPrecision(p: Precision, framework: Framework): void {
  if (p.kind === "gguf") {
    throw new MemoryInputError(`${framework} does not load GGUF ${p.id} weights as they are; use --framework llama.cpp or ollama, or a precision such as fp16, int8, nf4, awq-int4`);
  }
}

/**
 * transformers (PyTorch, from_pretrained on one GPU). Static: the weights, the CUDA context and the caching
 * allocator's slack from loading (the checkpoint is read and cast tensor by tensor; the freed staging copy of
 * the largest tensor stays reserved, so nvidia-smi shows one more copy of it). Peak on a long input: the
 * prefill's activations (one layer at a time; generate() keeps only the last position's logits, in fp32,
 * since transformers 4.45) and a DynamicCache of context x batch tokens in the model dtype. Quantized kernels
 * add a workspace: bitsandbytes 4-bit, GPTQ and AWQ dequantize one weight to fp16 for long inputs; LLM.int8
 * holds the int8 copy of the input and the int32 product of its matmul.
 */
function transformers(config: ModelConfig, tensors: ModelTensor[], o: InferenceOptions): MemoryEstimate {
  requireTorchPrecision(o.precision, "transformers");
  const bytes = tensorBytes(config, tensors, o.precision);
  const weights = bytes.reduce((a, b) => a + b, 0);
  const dtype = o.precision.kind === "dense" ? o.precision.bytes : 2;
  const tokens = o.context * o.batch;
  const kv = kvCacheBytes(config, o.context, o.batch, dtype);
  let workspace = 0;
  if (tokens > 0 && o.precision.kind === "linear") {
    const linear = tensors.filter(isLinear);
    if (o.precision.id === "int8") {
      workspace = tokens * (largest(linear.map((t) => t.cols)) + 4 * largest(linear.map((t) => t.rows)));
    } else {
      workspace = largest(linear.map((t) => (t.params / t.experts) * 2));
    }
  }
  const logits = o.batch * config.vocabSize * 4;
  const activations = tokens > 0 ? Math.max(layerActivationBytes(config, tokens, dtype), logits) + workspace : 0;
  const overhead = CUDA_CONTEXT_BYTES + largest(bytes);
  const components = { weights, kv_cache: kv, activations, overhead };
  const gpuBytes = weights + kv + activations + overhead;
  return finish(totalParams(tensors), components, gpuBytes, 0, o.gpu, {}, [
    "transformers on one GPU: weights + CUDA context (400 MiB) + the caching allocator's copy of the largest tensor from loading",
    "prefill peak: one layer's activations with SDPA attention, last-position logits only (transformers >= 4.45)",
    `KV cache: DynamicCache in ${dtype === 4 ? "fp32" : "fp16/bf16"}`,
  ]);
}

/**
 * vLLM and LightLLM reserve memory up front. vLLM: gpu_memory_utilization x total GPU memory is the budget
 * for weights, the activation peak of its profiling run, and a paged KV cache that takes all the rest (vLLM
 * logs "the current vLLM instance can use total_gpu_memory x gpu_memory_utilization ... the rest of the memory
 * reserved for KV Cache"); KV blocks hold 16 tokens, so a sequence takes whole blocks. LightLLM: mem_fraction
 * of GPU memory, and a token-granular KV pool (TokenAttention: no rounding to blocks).
 */
function pagedServer(config: ModelConfig, tensors: ModelTensor[], o: InferenceOptions, kind: "vllm" | "lightllm"): MemoryEstimate {
  requireTorchPrecision(o.precision, kind);
  const utilization = kind === "vllm" ? (o.gpuMemoryUtilization ?? VLLM_DEFAULT_UTILIZATION) : LIGHTLLM_MEM_FRACTION;
  if (!(utilization > 0 && utilization <= 1)) throw new MemoryInputError(`gpu memory utilization must be in (0, 1], got ${utilization}`);
  const weights = tensorBytes(config, tensors, o.precision).reduce((a, b) => a + b, 0);
  const dtype = o.precision.kind === "dense" ? o.precision.bytes : 2;
  const budget = Math.floor(utilization * o.gpu.bytes);
  const activations = layerActivationBytes(config, VLLM_PROFILE_TOKENS, dtype) + VLLM_PROFILE_SEQUENCES * config.vocabSize * 4;
  const kvPool = Math.max(0, budget - weights - activations);
  const perToken = kvCacheBytes(config, 1, 1, dtype);
  const tokensPerSequence = kind === "vllm" ? Math.ceil(Math.max(o.context, 1) / VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS : Math.max(o.context, 1);
  const poolTokens = Math.floor(kvPool / perToken);
  const maxSequences = Math.floor(poolTokens / tokensPerSequence);
  const overhead = kind === "vllm" ? VLLM_CUDA_GRAPH_BYTES + CUDA_CONTEXT_BYTES : CUDA_CONTEXT_BYTES;
  const components = { weights, kv_cache: kvPool, activations, overhead };
  const gpuBytes = Math.max(budget, weights + activations) + overhead;
  const fits = kvPool > 0 && maxSequences >= o.batch && gpuBytes <= o.gpu.usableBytes;
  const name = kind === "vllm" ? "vLLM" : "LightLLM";
  return finish(totalParams(tensors), components, gpuBytes, 0, o.gpu, { fits, maxSequences }, [
    `${name} reserves ${utilization} x ${Math.round(o.gpu.bytes / MIB)} MiB up front; the KV cache takes what weights and the profiled activations leave`,
    kind === "vllm"
      ? `paged KV cache in blocks of ${VLLM_BLOCK_TOKENS} tokens: ${poolTokens} tokens, ${maxSequences} sequences of ${o.context} tokens`
      : `token-granular KV pool: ${poolTokens} tokens, ${maxSequences} sequences of ${o.context} tokens`,
    kind === "vllm" ? "outside the budget: CUDA context (400 MiB) and CUDA graphs (256 MiB)" : "outside the budget: CUDA context (400 MiB)",
  ]);
}

/**
 * llama.cpp (and Ollama, which runs it): GGUF tensors as llama-quantize typed them. n_gpu_layers offloads the
 * last n layers (llama_model_load: i_gpu_start = n_layer - n_gpu_layers) and, at n_layer + 1, the output
 * layer; token_embd stays on the CPU (its rows are looked up, not multiplied). Each layer's KV cache lives on
 * its layer's device (offload_kqv, the default). Compute buffers are sized for one ubatch of 512 tokens:
 * its logits (f32), the attention scores against the whole cache (f32, without flash attention) and the
 * layer's widest activations. Ollama picks n_gpu_layers itself as the most that fit, and a model that is
 * not loaded (after keep_alive, 5 minutes by default) holds no GPU memory at all.
 */
function llamaCpp(config: ModelConfig, tensors: ModelTensor[], o: InferenceOptions): MemoryEstimate {
  const ftype = ggufFileTypeOf(o.precision);
  if (!ftype) {
    throw new MemoryInputError(`${o.framework} loads GGUF files; "${o.precision.id}" is not a GGUF type (use f16, q8_0, q4_K_M, ...)`);
  }
  const gguf = resolvePrecision(ftype);
  const bytes = tensorBytes(config, tensors, gguf);
  const n = config.numLayers;
  const kvType = o.kvCache ?? "f16";
  const elem = kvElementBytes(kvType);
  const totalTokens = o.context * o.batch;

  const at = (gpuLayers: number) => {
    const firstGpuLayer = Math.max(n - gpuLayers, 0);
    const outputOnGpu = gpuLayers > n;
    let gpuWeights = 0;
    let cpuWeights = 0;
    tensors.forEach((t, i) => {
      const onGpu = t.layer !== undefined ? t.layer >= firstGpuLayer : outputOnGpu && t.role !== "token_embd";
      if (onGpu) gpuWeights += bytes[i]!;
      else cpuWeights += bytes[i]!;
    });
    const gpuLayerCount = n - firstGpuLayer;
    const gpuKv = kvCacheBytes(config, o.context, o.batch, elem, gpuLayerCount);
    const cpuKv = kvCacheBytes(config, o.context, o.batch, elem, n - gpuLayerCount);
    const ubatch = Math.min(LLAMA_CPP_UBATCH, Math.max(totalTokens, 1));
    const compute =
      totalTokens === 0 ? 0 : ubatch * (config.vocabSize * 4 + config.numHeads * totalTokens * 4 + (config.hiddenSize * 3 + config.intermediateSize * 2) * 4);
    const gpuCompute = gpuLayerCount > 0 ? compute : 0;
    const cpuCompute = gpuLayerCount > 0 ? Math.min(compute, ubatch * config.hiddenSize * 4 * 2) : compute;
    const overhead = gpuLayerCount > 0 && !o.gpu.unified ? CUDA_CONTEXT_BYTES : 0;
    const gpu = gpuWeights + gpuKv + gpuCompute + overhead;
    const cpu = cpuWeights + cpuKv + cpuCompute;
    return { gpu, cpu, components: { weights: gpuWeights + cpuWeights, kv_cache: gpuKv + cpuKv, activations: gpuCompute + cpuCompute, overhead } };
  };

  const all = n + 1;
  const chosen = o.gpuLayers !== undefined ? Math.min(o.gpuLayers, all) : all;
  const r = at(chosen);
  const params = totalParams(tensors);
  const assumptions = [
    `GGUF ${ftype} tensors (llama-quantize's per-tensor mix); token_embd on the CPU`,
    `KV cache ${kvType}, ${o.context} x ${o.batch} tokens, on each layer's device; compute buffers for a ubatch of ${LLAMA_CPP_UBATCH}`,
  ];
  if (o.framework === "ollama") assumptions.push("Ollama: llama.cpp underneath; it picks n_gpu_layers itself; an unloaded model (after keep_alive) holds no GPU memory");
  if (r.gpu <= o.gpu.usableBytes) {
    const verdict = chosen >= all ? "fits" : `fits with n_gpu_layers = ${chosen}`;
    return finish(params, r.components, r.gpu, r.cpu, o.gpu, { fits: true, verdict, gpuLayers: chosen }, assumptions);
  }
  // The most layers that fit: what to pass as -ngl (and what Ollama picks).
  let k = chosen;
  while (k > 0 && at(k).gpu > o.gpu.usableBytes) k--;
  if (o.gpuLayers !== undefined || o.framework === "llama.cpp") {
    const verdict = k > 0 ? `does not fit; fits with n_gpu_layers = ${k}` : "does not fit (not even one layer on the GPU)";
    return finish(params, r.components, r.gpu, r.cpu, o.gpu, { fits: false, verdict, gpuLayers: chosen }, assumptions);
  }
  const best = at(k);
  const verdict = k > 0 ? `fits with n_gpu_layers = ${k}` : "does not fit (runs on the CPU)";
  return finish(params, best.components, best.gpu, best.cpu, o.gpu, { fits: k > 0, verdict, gpuLayers: k }, assumptions);
}

/**
 * fastllm converts weights on load to its own fp16/int8/int4 tensors with per-channel scales and runs its own
 * C++/CUDA allocator (no PyTorch caching allocator): weights, an fp16 KV cache, one layer's activations and
 * the CUDA context (fastllm README: "int4/int8 quantization ... on load").
 */
function fastllm(config: ModelConfig, tensors: ModelTensor[], o: InferenceOptions): MemoryEstimate {
  requireTorchPrecision(o.precision, "fastllm");
  const weights = tensorBytes(config, tensors, o.precision).reduce((a, b) => a + b, 0);
  const tokens = o.context * o.batch;
  const kv = kvCacheBytes(config, o.context, o.batch, 2);
  const activations = tokens > 0 ? layerActivationBytes(config, tokens, 2) + o.batch * config.vocabSize * 4 : 0;
  const components = { weights, kv_cache: kv, activations, overhead: CUDA_CONTEXT_BYTES };
  const gpuBytes = weights + kv + activations + CUDA_CONTEXT_BYTES;
  return finish(totalParams(tensors), components, gpuBytes, 0, o.gpu, {}, [
    "fastllm: weights converted on load, fp16 KV cache, its own allocator (no caching-allocator slack)",
  ]);
}

// ---------------------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------------------

export const TRAIN_METHODS = ["adamw", "adamw8bit", "sgd", "lora", "qlora"] as const;
export type TrainMethod = (typeof TRAIN_METHODS)[number];
export const RECOMPUTE = ["none", "selective", "full"] as const;
export type Recompute = (typeof RECOMPUTE)[number];

export interface TrainingOptions {
  method: TrainMethod;
  /** Weight precision of the trained (or frozen, for LoRA) model: f32 or fp16/bf16; QLoRA's base is NF4 regardless. */
  precision: Precision;
  /** Gradient precision; defaults to the weights' (fp32 for f32 weights, 2 bytes otherwise). */
  gradBytes?: 2 | 4;
  seq: number;
  batch: number;
  recompute: Recompute;
  loraRank?: number;
  gpu: GpuPreset;
}

/**
 * Activations kept for the backward pass, per layer, after Korthikanti et al., "Reducing Activation
 * Recomputation in Large Transformer Models" (2022), bytes at fp16 without sequence parallelism:
 * none: s*b*h*(34 + 5*a*s/h); selective recomputation (attention's softmax and dropout recomputed):
 * s*b*h*34; full recomputation: only each layer's input, 2*s*b*h, plus one layer recomputed at a time.
 */
export function trainingActivationBytes(config: ModelConfig, seq: number, batch: number, recompute: Recompute): number {
  const sbh = seq * batch * config.hiddenSize;
  const a = config.numHeads;
  const full = sbh * (34 + (5 * a * seq) / config.hiddenSize);
  const L = config.numLayers;
  if (recompute === "none") return L * full;
  if (recompute === "selective") return L * sbh * 34;
  return L * 2 * sbh + full;
}

/** LoRA adapters of rank r on every linear weight of the layers: r x (in + out) parameters each. */
export function loraParams(tensors: readonly ModelTensor[], rank: number): number {
  return tensors.filter(isLinear).reduce((s, t) => s + rank * (t.cols + t.rows) * t.experts, 0);
}

/**
 * Training memory: weights, gradients, optimizer states and activations. Mixed precision keeps an fp32
 * master copy of the weights with the optimizer (4 bytes); AdamW keeps two fp32 moments (8 bytes), 8-bit
 * Adam (bitsandbytes) two 1-byte moments with an f32 absmax per block of 2048, SGD one fp32 momentum.
 * LoRA freezes the base (no gradients or states for it) and trains fp32 adapters (PEFT upcasts adapters to
 * fp32, autocast_adapter_dtype); QLoRA's frozen base is NF4 with double quantization. The loss holds the
 * fp32 logits and their gradient (s x b x vocab x 8 bytes).
 */
export function estimateTraining(config: ModelConfig, o: TrainingOptions): MemoryEstimate {
  checkCount("seq", o.seq, 1);
  checkCount("batch", o.batch, 1);
  const tensors = modelTensors(config);
  const params = totalParams(tensors);
  if (o.precision.kind !== "dense" && o.method !== "qlora") {
    throw new MemoryInputError(`training ${o.method} needs f32, fp16 or bf16 weights, not ${o.precision.id}`);
  }
  const wBytes = o.precision.kind === "dense" ? o.precision.bytes : 2;
  const mixed = wBytes !== 4;
  let weights: number;
  let trainable: number;
  if (o.method === "lora" || o.method === "qlora") {
    const rank = o.loraRank ?? DEFAULT_LORA_RANK;
    checkCount("LoRA rank", rank, 1);
    trainable = loraParams(tensors, rank);
    const base = o.method === "qlora" ? tensorBytes(config, tensors, resolvePrecision("nf4-dq")) : tensors.map((t) => t.params * wBytes);
    weights = base.reduce((a, b) => a + b, 0) + trainable * 4;
  } else {
    trainable = params;
    weights = params * wBytes;
  }
  const adapters = o.method === "lora" || o.method === "qlora";
  const gradBytes = adapters ? 4 : (o.gradBytes ?? wBytes);
  const gradients = trainable * gradBytes;
  const master = !adapters && mixed ? 4 : 0;
  const moments = o.method === "sgd" ? 4 : o.method === "adamw8bit" ? 2 + 2 * (4 / 2048) : 8;
  const optimizer = Math.round(trainable * (master + moments));
  const activations = trainingActivationBytes(config, o.seq, o.batch, o.recompute) + o.seq * o.batch * config.vocabSize * 8;
  const components = { weights, kv_cache: 0, activations, overhead: CUDA_CONTEXT_BYTES, gradients, optimizer };
  const gpuBytes = Object.values(components).reduce((a, b) => a + b, 0);
  return finish(params, components, gpuBytes, 0, o.gpu, {}, [
    `${o.method}: ${trainable} trainable parameters; gradients ${gradBytes} bytes each; optimizer ${master + moments} bytes each`,
    `activations after Korthikanti et al. (2022), recompute = ${o.recompute}, at seq ${o.seq} x batch ${o.batch}`,
  ]);
}
