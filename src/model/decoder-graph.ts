/**
 * The ONNX graph of a LLaMA-style decoder (LLaMA, Mistral, Qwen2), built from standard ONNX ops (opset 17)
 * plus com.microsoft MatMulNBits for int4/int8 weights. Batch 1, so the graph reads as the model's maths:
 *
 *   inputs   input_ids int64 [S]; past_key.L / past_value.L float [KV, P, D] (P = 0 on the first call)
 *   outputs  logits float [S, V]; present_key.L / present_value.L [KV, P+S, D]
 *            and, with calibrationOutputs, every linear layer's input under the names of
 *            ../shared/models/stories260K/reference/calib: layers.L.{attn_in,o_proj_in,mlp_in,down_proj_in} [S, in]
 *
 *   x = embed[input_ids]                                              [S, H]
 *   per layer:  a = rmsnorm(x) * w_in            (rmsnorm(x) = x / sqrt(mean(x^2) + eps))
 *               q, k, v = a Wq^T (+bq), a Wk^T (+bk), a Wv^T (+bv)
 *               q, k rotated with rotate_half RoPE at positions P..P+S-1 (theta = rope_theta)
 *               k, v appended to the past -> present
 *               query head h reads kv head floor(h / G), G = H/KV: q is laid out [KV, G*S, D] so one
 *               batched MatMul per kv head covers its G query heads
 *               scores = q k^T / sqrt(D), masked where key position > query position, softmax, times v
 *               x += o_proj(heads concatenated)
 *               m = rmsnorm(x) * w_post;  x += down(silu(gate(m)) * up(m))
 *   logits = rmsnorm(x) * w_final, times the head (lm_head, or the embedding when tied)
 */
import { f32ToF16Bits } from "../formats/float-bits.ts";
import type { DecoderArchitecture } from "./architecture.ts";
import { ONNX_TYPE, type OnnxAttributeValue, type OnnxModel, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from "./onnx-proto.ts";
import type { LinearWeight, PreparedWeights } from "./precision.ts";

/**
 * How fp16 weights (the f16 precision's) reach the graph, by what the execution provider can do:
 *  - "cast": float16 initializers, each Cast to float32 where it is used: fp16 weights, fp32 compute
 *    (onnxruntime's wasm provider);
 *  - "compute": the whole graph computes in float16 (weights, norms, attention, activations), with Casts
 *    at its float32 inputs and outputs (past and present keys and values, logits, calibration outputs), for
 *    providers that compute in fp16 (WebGPU with shader-f16);
 *  - "float32": the fp16 values as float32 initializers, for providers that cannot hold a float16 tensor at
 *    all (WebGPU without shader-f16): the same numbers, fp32 weights in memory.
 */
export type Float16Mode = "cast" | "compute" | "float32";

export interface DecoderGraphOptions {
  /** Also output the input of every linear layer (GPTQ/AWQ calibration activations). */
  calibrationOutputs?: boolean;
  /** "cast" by default (see Float16Mode). */
  float16?: Float16Mode;
}

/** The calibration outputs of one layer, in the order of the linear layers they feed. */
export const CALIBRATION_POINTS = ["attn_in", "o_proj_in", "mlp_in", "down_proj_in"] as const;

export function calibrationOutputName(layer: number, point: (typeof CALIBRATION_POINTS)[number]): string {
  return `layers.${layer}.${point}`;
}

/** The most negative float32, what transformers puts in masked attention scores (float16's in fp16). */
const MASKED_SCORE = -3.4028234663852886e38;
const MASKED_SCORE_F16 = -65504;

class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private counter = 0;
  private constants = new Map<string, string>();

  /** half: the graph computes in float16, so float constants and initializers are stored as float16. */
  constructor(readonly half: boolean) {}

  /** The element type the graph computes in. */
  get computeType(): number {
    return this.half ? ONNX_TYPE.float16 : ONNX_TYPE.float;
  }

  /** `value` as a float32 graph output `name` (a Cast when the graph computes in float16). */
  output(value: string, name: string): void {
    if (this.half) this.opTo("Cast", [value], [name], { to: ONNX_TYPE.float });
    else this.opTo("Identity", [value], [name]);
  }

  /** Adds a node and returns its (first) output name. */
  op(opType: string, inputs: readonly string[], attributes?: Record<string, OnnxAttributeValue>, domain?: string): string {
    const output = `${opType.toLowerCase()}_${this.counter++}`;
    this.opTo(opType, inputs, [output], attributes, domain);
    return output;
  }

  opTo(opType: string, inputs: readonly string[], outputs: string[], attributes?: Record<string, OnnxAttributeValue>, domain?: string): void {
    const node: OnnxNode = { opType, inputs, outputs, name: `${outputs[0]}_node` };
    if (attributes) (node as { attributes?: Record<string, OnnxAttributeValue> }).attributes = attributes;
    if (domain) (node as { domain?: string }).domain = domain;
    this.nodes.push(node);
  }

  initializer(name: string, dataType: OnnxTensor["dataType"], dims: number[], raw: Uint8Array): string {
    this.initializers.push({ name, dataType, dims, raw });
    return name;
  }

  /** A float initializer in the compute type; a second call with the same name reuses the first (the tied embedding/head). */
  floats(name: string, dims: number[], values: Float32Array): string {
    if (this.initializers.some((t) => t.name === name)) return name;
    if (this.half) return this.initializer(name, ONNX_TYPE.float16, dims, new Uint8Array(Uint16Array.from(values, f32ToF16Bits).buffer));
    return this.initializer(name, ONNX_TYPE.float, dims, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }

  /** An int64 constant (shapes, axes), shared by value. */
  ints(values: readonly number[], scalar = false): string {
    const key = `i${scalar ? "s" : ""}:${values.join(",")}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      const raw = new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer);
      this.initializer(name, ONNX_TYPE.int64, scalar ? [] : [values.length], raw);
      this.constants.set(key, name);
    }
    return name;
  }

  /** A float scalar constant in the compute type, shared by value. */
  scalar(value: number): string {
    const key = `f:${value}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      this.floats(name, [], new Float32Array([value]));
      this.constants.set(key, name);
    }
    return name;
  }
}

/** Builds the decoder graph for prepared weights (see the module comment for inputs and outputs). */
export function buildDecoderGraph(arch: DecoderArchitecture, weights: PreparedWeights, options: DecoderGraphOptions = {}): OnnxModel {
  const float16 = options.float16 ?? "cast";
  const g = new GraphBuilder(float16 === "compute");
  const { hiddenSize: H, numHeads, numKvHeads: KV, headDim: D, numLayers, vocabSize: V } = arch;
  const group = numHeads / KV;
  const tensor = (name: string) => {
    const t = weights.tensors.get(name);
    if (!t) throw new Error(`prepared weights have no "${name}"`);
    return t;
  };
  const vector = (name: string) => g.floats(name, [tensor(name).shape[0]!], tensor(name).decoded as Float32Array);
  const linear = (x: string, name: string): string => {
    const t = tensor(name);
    const weight: LinearWeight = t.weight.kind === "float16" && float16 === "float32" ? { kind: "float", values: t.decoded } : t.weight;
    return applyLinear(g, x, name, weight, t.shape[0]!, t.shape[1]!);
  };
  const withBias = (y: string, name: string) => (weights.tensors.has(name) ? g.op("Add", [y, vector(name)]) : y);
  const rmsNorm = (x: string, weightName: string): string => {
    const meanSquare = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 });
    const rms = g.op("Sqrt", [g.op("Add", [meanSquare, g.scalar(arch.rmsNormEps)])]);
    return g.op("Mul", [g.op("Div", [x, rms]), vector(weightName)]);
  };

  // Past keys and values enter as float32 (in the compute type from here on); presents leave as float32.
  const pastOf = (name: string) => (g.half ? g.op("Cast", [name], { to: ONNX_TYPE.float16 }) : name);
  const presentTo = (past: string, added: string, name: string): string => {
    if (!g.half) {
      g.opTo("Concat", [past, added], [name], { axis: 1 });
      return name;
    }
    const present = g.op("Concat", [pastOf(past), added], { axis: 1 });
    g.output(present, name);
    return present;
  };

  const inputs: OnnxValueInfo[] = [{ name: "input_ids", elemType: ONNX_TYPE.int64, dims: ["sequence"] }];
  const outputs: OnnxValueInfo[] = [{ name: "logits", elemType: ONNX_TYPE.float, dims: ["sequence", V] }];
  for (let l = 0; l < numLayers; l++) {
    for (const kind of ["key", "value"]) {
      inputs.push({ name: `past_${kind}.${l}`, elemType: ONNX_TYPE.float, dims: [KV, "past_sequence", D] });
      outputs.push({ name: `present_${kind}.${l}`, elemType: ONNX_TYPE.float, dims: [KV, "total_sequence", D] });
    }
  }

  // Positions: past length P (from past_key.0), new length S, query positions P..T-1, key positions 0..T-1.
  const past = g.op("Shape", ["past_key.0"], { start: 1, end: 2 });
  const seq = g.op("Shape", ["input_ids"]);
  const total = g.op("Add", [past, seq]);
  const toScalar = (v: string) => g.op("Squeeze", [v, g.ints([0])]);
  const queryPos = g.op("Range", [toScalar(past), toScalar(total), g.ints([1], true)]);
  const keyPos = g.op("Range", [g.ints([0], true), toScalar(total), g.ints([1], true)]);
  // Masked where the key comes after the query; rows tiled G times to match q's [KV, G*S, D] layout.
  const queryRows = g.op("Tile", [queryPos, g.ints([group])]);
  const masked = g.op("Greater", [g.op("Unsqueeze", [keyPos, g.ints([0])]), g.op("Unsqueeze", [queryRows, g.ints([1])])]);

  // RoPE tables for the new positions: angle[s, i] = pos_s * theta^(-2i/D), duplicated for rotate_half.
  const invFreq = new Float32Array(D / 2);
  for (let i = 0; i < D / 2; i++) invFreq[i] = Math.pow(arch.ropeTheta, (-2 * i) / D);
  const angles = g.op("Mul", [g.op("Unsqueeze", [g.op("Cast", [queryPos], { to: g.computeType }), g.ints([1])]), g.floats("rope_inv_freq", [1, D / 2], invFreq)]);
  const fullAngles = g.op("Unsqueeze", [g.op("Concat", [angles, angles], { axis: -1 }), g.ints([1])]); // [S, 1, D]
  const cos = g.op("Cos", [fullAngles]);
  const sin = g.op("Sin", [fullAngles]);
  const halves = g.ints([D / 2, D / 2]);
  const rope = (x: string): string => {
    const first = `${x}_first_half`;
    const second = `${x}_second_half`;
    g.opTo("Split", [x, halves], [first, second], { axis: -1 });
    const rotated = g.op("Concat", [g.op("Neg", [second]), first], { axis: -1 });
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])]);
  };

  const calibration = (layer: number, point: (typeof CALIBRATION_POINTS)[number], value: string, width: number) => {
    if (!options.calibrationOutputs) return;
    const name = calibrationOutputName(layer, point);
    g.output(value, name);
    outputs.push({ name, elemType: ONNX_TYPE.float, dims: ["sequence", width] });
  };

  const embedding = tensor("model.embed_tokens.weight");
  // An fp16 table is looked up in fp16 (the head shares it); other forms look up the decoded floats.
  const halfTable = embedding.weight.kind === "float16" && float16 !== "float32";
  const table = halfTable && embedding.weight.kind === "float16" ? float16Initializer(g, embedding.name, [V, H], embedding.weight.raw) : g.floats(embedding.name, [V, H], embedding.decoded);
  let x = g.op("Gather", [table, "input_ids"], { axis: 0 });
  if (halfTable && !g.half) x = g.op("Cast", [x], { to: ONNX_TYPE.float });
  for (let l = 0; l < numLayers; l++) {
    const p = `model.layers.${l}.`;
    const a = rmsNorm(x, `${p}input_layernorm.weight`);
    calibration(l, "attn_in", a, H);
    const heads = (name: string, count: number) => g.op("Reshape", [withBias(linear(a, `${p}self_attn.${name}.weight`), `${p}self_attn.${name}.bias`), g.ints([-1, count, D])]);
    const q = g.op("Transpose", [rope(heads("q_proj", numHeads))], { perm: [1, 0, 2] }); // [H, S, D]
    const k = g.op("Transpose", [rope(heads("k_proj", KV))], { perm: [1, 0, 2] }); // [KV, S, D]
    const v = g.op("Transpose", [heads("v_proj", KV)], { perm: [1, 0, 2] });
    const keys = presentTo(`past_key.${l}`, k, `present_key.${l}`);
    const values = presentTo(`past_value.${l}`, v, `present_value.${l}`);
    const grouped = g.op("Reshape", [q, g.ints([KV, -1, D])]); // [KV, G*S, D]
    const scores = g.op("Mul", [g.op("MatMul", [grouped, g.op("Transpose", [keys], { perm: [0, 2, 1] })]), g.scalar(1 / Math.sqrt(D))]);
    const probs = g.op("Softmax", [g.op("Where", [masked, g.scalar(g.half ? MASKED_SCORE_F16 : MASKED_SCORE), scores])], { axis: -1 });
    const context = g.op("Reshape", [g.op("MatMul", [probs, values]), g.ints([numHeads, -1, D])]); // [H, S, D]
    const attended = g.op("Reshape", [g.op("Transpose", [context], { perm: [1, 0, 2] }), g.ints([-1, numHeads * D])]);
    calibration(l, "o_proj_in", attended, numHeads * D);
    x = g.op("Add", [x, linear(attended, `${p}self_attn.o_proj.weight`)]);

    const m = rmsNorm(x, `${p}post_attention_layernorm.weight`);
    calibration(l, "mlp_in", m, H);
    const gate = linear(m, `${p}mlp.gate_proj.weight`);
    const hidden = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), linear(m, `${p}mlp.up_proj.weight`)]);
    calibration(l, "down_proj_in", hidden, arch.intermediateSize);
    x = g.op("Add", [x, linear(hidden, `${p}mlp.down_proj.weight`)]);
  }
  const final = rmsNorm(x, "model.norm.weight");
  const head = arch.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  g.output(linear(final, head), "logits");

  return {
    opsets: [
      { domain: "", version: 17 },
      { domain: "com.microsoft", version: 1 },
    ],
    graph: { name: `${arch.name} ${weights.precision}`, nodes: g.nodes, initializers: g.initializers, inputs, outputs },
  };
}

/** y = x W^T for W [out, in] in whichever form the precision stored it. */
function applyLinear(g: GraphBuilder, x: string, name: string, w: LinearWeight, out: number, inFeatures: number): string {
  switch (w.kind) {
    case "float":
      return g.op("Gemm", [x, g.floats(name, [out, inFeatures], w.values)], { transB: 1 });
    case "float16": {
      const half = float16Initializer(g, name, [out, inFeatures], w.raw);
      return g.op("Gemm", [x, g.half ? half : g.op("Cast", [half], { to: ONNX_TYPE.float })], { transB: 1 });
    }
    case "nbits": {
      const kBlocks = Math.ceil(inFeatures / w.blockSize);
      const inputs = [
        x,
        g.initializer(`${name}.packed`, ONNX_TYPE.uint8, [out, kBlocks, (w.blockSize * w.bits) / 8], w.packed),
        g.floats(`${name}.scales`, [out * kBlocks], w.scales),
      ];
      if (w.zeroPoints) inputs.push(g.initializer(`${name}.zero_points`, ONNX_TYPE.uint8, [w.zeroPoints.length], w.zeroPoints));
      return g.op("MatMulNBits", inputs, { K: inFeatures, N: out, bits: w.bits, block_size: w.blockSize }, "com.microsoft");
    }
  }
}

function float16Initializer(g: GraphBuilder, name: string, dims: number[], raw: Uint8Array): string {
  const f16Name = `${name}.f16`;
  if (g.initializers.some((t) => t.name === f16Name)) return f16Name;
  return g.initializer(f16Name, ONNX_TYPE.float16, dims, raw);
}
