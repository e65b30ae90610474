/**
 * What the ONNX builder needs from config.json: the shape numbers the memory estimator already parses
 * (src/memory/config.ts, one parser for both) plus the numerics it does not need: rope_theta and
 * rms_norm_eps. Only decoder families the builder implements are accepted (LLaMA, Mistral without sliding
 * windows, Qwen2 with its q/k/v biases); anything else is refused with a message naming what is wrong.
 */
import { isMemoryInputError, parseConfig, type ModelConfig } from "../memory/config.ts";

export class ModelInputError extends Error {
  override readonly name = "ModelInputError";
}

export function isModelInputError(e: unknown): e is ModelInputError {
  return e instanceof Error && (e as { name?: string }).name === "ModelInputError";
}

export interface DecoderArchitecture extends ModelConfig {
  ropeTheta: number;
  rmsNormEps: number;
}

/** model_type values the graph builder implements. */
export const BUILDABLE_ARCHITECTURES = ["llama", "mistral", "qwen2"] as const;

/** Parses config.json text for the builder; every problem is a ModelInputError naming `name`. */
export function parseDecoderConfig(text: string, name: string): DecoderArchitecture {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelInputError(`${name}: not valid JSON (${(e as Error).message})`);
  }
  let config: ModelConfig;
  try {
    config = parseConfig(json, name);
  } catch (e) {
    if (isMemoryInputError(e)) throw new ModelInputError(e.message);
    throw e;
  }
  const c = json as Record<string, unknown>;
  if (!(BUILDABLE_ARCHITECTURES as readonly string[]).includes(config.architecture)) {
    throw new ModelInputError(
      `${name}: the model builder does not support the "${config.architecture}" architecture (supported: ${BUILDABLE_ARCHITECTURES.join(", ")})`,
    );
  }
  const act = c["hidden_act"];
  if (act !== undefined && act !== "silu") throw new ModelInputError(`${name}: hidden_act "${String(act)}" is not supported (only silu, i.e. SwiGLU)`);
  const scaling = c["rope_scaling"];
  if (scaling !== undefined && scaling !== null) throw new ModelInputError(`${name}: rope_scaling is not supported (only plain RoPE)`);
  if (config.outputBias || config.mlpBias) throw new ModelInputError(`${name}: biases on o_proj or the MLP are not supported`);
  return {
    ...config,
    ropeTheta: positiveNumber(c, "rope_theta", 10000, name),
    rmsNormEps: positiveNumber(c, "rms_norm_eps", 1e-6, name),
  };
}

function positiveNumber(c: Record<string, unknown>, key: string, fallback: number, name: string): number {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) {
    throw new ModelInputError(`${name}: "${key}" must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** The tensors a decoder of this configuration holds, with their shapes (HF names, [out, in] matrices). */
export function expectedTensors(a: DecoderArchitecture): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const h = a.hiddenSize;
  const q = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  m.set("model.embed_tokens.weight", [a.vocabSize, h]);
  for (let l = 0; l < a.numLayers; l++) {
    const p = `model.layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [h]);
    m.set(`${p}self_attn.q_proj.weight`, [q, h]);
    m.set(`${p}self_attn.k_proj.weight`, [kv, h]);
    m.set(`${p}self_attn.v_proj.weight`, [kv, h]);
    if (a.qkvBias) {
      m.set(`${p}self_attn.q_proj.bias`, [q]);
      m.set(`${p}self_attn.k_proj.bias`, [kv]);
      m.set(`${p}self_attn.v_proj.bias`, [kv]);
    }
    m.set(`${p}self_attn.o_proj.weight`, [h, q]);
    m.set(`${p}post_attention_layernorm.weight`, [h]);
    m.set(`${p}mlp.gate_proj.weight`, [a.intermediateSize, h]);
    m.set(`${p}mlp.up_proj.weight`, [a.intermediateSize, h]);
    m.set(`${p}mlp.down_proj.weight`, [h, a.intermediateSize]);
  }
  m.set("model.norm.weight", [h]);
  if (!a.tieWordEmbeddings) m.set("lm_head.weight", [a.vocabSize, h]);
  return m;
}

/** The matrices a quantizer touches: every 2-D tensor (the embedding, doubling as the tied head, included). */
export function isQuantizable(shape: readonly number[]): boolean {
  return shape.length === 2;
}
