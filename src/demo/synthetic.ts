/**
 * The lab's built-in demo: a safetensors shard with the tensor names and shapes of a small LLaMA and
 * weight statistics that look like a trained one, generated on the spot so a newcomer sees a table
 * without downloading anything. It is NOT a real model; its metadata says so and the UI labels it.
 *
 * What makes the numbers realistic enough to be worth quantizing:
 * - linear weights are Student-t (6 degrees of freedom: kurtosis 6, i.e. heavier tails than a
 *   Gaussian), scaled so their standard deviation is 1/sqrt(fan_in) like a trained network;
 * - a few input channels (columns) of every linear layer are many times larger than the rest, at the
 *   same hidden dimensions in every layer, the "outlier features" that make naive int8/int4 fail;
 * - RMSNorm weights sit around 1 with some spread;
 * - the token embedding is stored in BF16, so the demo shows more than one dtype.
 * Everything comes from a seeded PRNG: the same options always give the same bytes.
 *
 * Pure module: no DOM, no Node APIs.
 */
import { encodeFromF32, type DType } from "../formats/dtypes.ts";
import { writeSafetensors, type TensorToWrite } from "../formats/safetensors.ts";

export interface SyntheticLlamaOptions {
  hiddenSize?: number;
  intermediateSize?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  vocabSize?: number;
  /** Seed of the PRNG; the same seed gives the same bytes. */
  seed?: number;
  /** How many input channels of each linear layer are outliers. */
  outlierChannels?: number;
  /** How much larger (in standard deviations) the outlier channels are. */
  outlierScale?: number;
}

export type SyntheticLlamaConfig = Required<SyntheticLlamaOptions>;

export const SYNTHETIC_LLAMA_DEFAULTS: SyntheticLlamaConfig = {
  hiddenSize: 256,
  intermediateSize: 688,
  layers: 4,
  heads: 8,
  kvHeads: 4,
  vocabSize: 2048,
  seed: 20240229,
  outlierChannels: 4,
  outlierScale: 12,
};

/** Student-t degrees of freedom of the linear weights (kurtosis 3 + 6/(nu-4) = 6). */
const STUDENT_T_NU = 6;
const EMBEDDING_DTYPE: DType = "BF16";

export const SYNTHETIC_DESCRIPTION =
  "Synthetic demo shard generated in your browser: small-LLaMA shapes, Student-t weights with outlier input channels. Not a real model.";

/** The input channels that carry outliers: hidden dims (q/k/v/o/gate/up) and intermediate dims (down). */
export interface SyntheticOutliers {
  hidden: number[];
  intermediate: number[];
}

export function syntheticLlamaConfig(opts: SyntheticLlamaOptions = {}): SyntheticLlamaConfig {
  const config = { ...SYNTHETIC_LLAMA_DEFAULTS, ...opts };
  if (config.hiddenSize % config.heads !== 0) throw new Error("hiddenSize must be a multiple of heads");
  if (config.heads % config.kvHeads !== 0) throw new Error("heads must be a multiple of kvHeads");
  return config;
}

/** Which channels are outliers for a configuration (deterministic in the seed). */
export function syntheticOutliers(opts: SyntheticLlamaOptions = {}): SyntheticOutliers {
  const config = syntheticLlamaConfig(opts);
  // A PRNG of its own, so the choice does not depend on how many weights are drawn before it.
  const rng = new Prng(config.seed ^ 0x5bd1e995);
  return {
    hidden: distinctChannels(rng, config.hiddenSize, config.outlierChannels),
    intermediate: distinctChannels(rng, config.intermediateSize, config.outlierChannels),
  };
}

/** Tensor names and shapes, in the order they are written (sorted by name, as safetensors does). */
export function syntheticLlamaShapes(opts: SyntheticLlamaOptions = {}): { name: string; shape: number[] }[] {
  const c = syntheticLlamaConfig(opts);
  const headDim = c.hiddenSize / c.heads;
  const kvDim = c.kvHeads * headDim;
  const shapes: { name: string; shape: number[] }[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, c.hiddenSize] }];
  for (let layer = 0; layer < c.layers; layer++) {
    const p = `model.layers.${layer}`;
    shapes.push(
      { name: `${p}.input_layernorm.weight`, shape: [c.hiddenSize] },
      { name: `${p}.mlp.down_proj.weight`, shape: [c.hiddenSize, c.intermediateSize] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [c.intermediateSize, c.hiddenSize] },
      { name: `${p}.mlp.up_proj.weight`, shape: [c.intermediateSize, c.hiddenSize] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [c.hiddenSize] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvDim, c.hiddenSize] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [c.hiddenSize, c.hiddenSize] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [c.hiddenSize, c.hiddenSize] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvDim, c.hiddenSize] },
    );
  }
  shapes.push({ name: "model.norm.weight", shape: [c.hiddenSize] });
  return shapes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Builds the demo shard: safetensors bytes, deterministic in the options. */
export function syntheticLlamaShard(opts: SyntheticLlamaOptions = {}): Uint8Array<ArrayBuffer> {
  const config = syntheticLlamaConfig(opts);
  const outliers = syntheticOutliers(config);
  const rng = new Prng(config.seed);
  const tensors: TensorToWrite[] = syntheticLlamaShapes(config).map(({ name, shape }) => {
    const values = tensorValues(name, shape, config, outliers, rng);
    const dtype: DType = name === "model.embed_tokens.weight" ? EMBEDDING_DTYPE : "F32";
    return { name, dtype, shape, data: encodeFromF32(dtype, values) };
  });
  const metadata: Record<string, string> = {
    synthetic: "true",
    description: SYNTHETIC_DESCRIPTION,
    format: "pt",
    config: JSON.stringify({
      hidden_size: config.hiddenSize,
      intermediate_size: config.intermediateSize,
      num_hidden_layers: config.layers,
      num_attention_heads: config.heads,
      num_key_value_heads: config.kvHeads,
      vocab_size: config.vocabSize,
      tie_word_embeddings: true,
      seed: config.seed,
    }),
    outlier_input_channels: JSON.stringify(outliers),
  };
  return writeSafetensors(tensors, metadata);
}

function tensorValues(
  name: string,
  shape: number[],
  config: SyntheticLlamaConfig,
  outliers: SyntheticOutliers,
  rng: Prng,
): Float32Array {
  if (shape.length === 1) return normWeights(shape[0]!, rng);
  const [rows, cols] = shape as [number, number];
  if (name === "model.embed_tokens.weight") return studentTMatrix(rows, cols, 1 / Math.sqrt(cols), [], 1, rng);
  // Linear weights are [out_features, in_features]: outliers are columns (input channels).
  const outlierColumns = name.endsWith("down_proj.weight") ? outliers.intermediate : outliers.hidden;
  return studentTMatrix(rows, cols, 1 / Math.sqrt(cols), outlierColumns, config.outlierScale, rng);
}

/** Student-t weights with standard deviation `std`, outlier columns multiplied by `outlierScale`. */
function studentTMatrix(
  rows: number,
  cols: number,
  std: number,
  outlierColumns: number[],
  outlierScale: number,
  rng: Prng,
): Float32Array {
  const values = new Float32Array(rows * cols);
  const columnScale = new Float32Array(cols).fill(1);
  for (const c of outlierColumns) columnScale[c] = outlierScale;
  // A t(nu) variable has variance nu/(nu-2); divide it out so the bulk has the requested std.
  const unit = std / Math.sqrt(STUDENT_T_NU / (STUDENT_T_NU - 2));
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) values[r * cols + c] = rng.studentT6() * unit * columnScale[c]!;
  }
  return values;
}

/** RMSNorm weights: around 1, spread about 0.1, a rare larger one. */
function normWeights(size: number, rng: Prng): Float32Array {
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = 1 + 0.1 * rng.studentT6();
  return values;
}

function distinctChannels(rng: Prng, size: number, count: number): number[] {
  const picked = new Set<number>();
  while (picked.size < Math.min(count, size)) picked.add(Math.floor(rng.uniform() * size));
  return [...picked].sort((a, b) => a - b);
}

/** sfc32, seeded through splitmix32: small, fast, and the same in every JavaScript engine. */
class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | undefined;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.uniform();
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }

  /** Uniform in (0, 1]: safe under a logarithm. */
  private positive(): number {
    return 1 - this.uniform();
  }

  /** Standard normal (Box-Muller, both outputs used). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const z = this.spareNormal;
      this.spareNormal = undefined;
      return z;
    }
    const radius = Math.sqrt(-2 * Math.log(this.positive()));
    const angle = 2 * Math.PI * this.uniform();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Student-t with 6 degrees of freedom: z / sqrt(chi2_6 / 6), chi2_6 = -2 ln(u1 u2 u3). */
  studentT6(): number {
    const chi2 = -2 * Math.log(this.positive() * this.positive() * this.positive());
    return this.normal() / Math.sqrt(chi2 / STUDENT_T_NU);
  }
}
