import { describe, expect, it } from "vitest";
import { decodeToF32 } from "../formats/dtypes.ts";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import { SYNTHETIC_LLAMA_DEFAULTS, syntheticLlamaShard, syntheticOutliers } from "./synthetic.ts";

async function parse(bytes: Uint8Array<ArrayBuffer>): Promise<SafetensorsFile> {
  return readSafetensors(new BlobSource(new Blob([bytes]), "synthetic.safetensors"));
}

async function values(file: SafetensorsFile, name: string): Promise<{ shape: number[]; data: Float32Array }> {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`missing ${name}`);
  return { shape: t.shape, data: decodeToF32(t.dtype, await t.source.read(t.offset, t.bytes)) };
}

function moments(xs: ArrayLike<number>): { mean: number; std: number; kurtosis: number } {
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i]!;
  const mean = sum / xs.length;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < xs.length; i++) {
    const d = xs[i]! - mean;
    m2 += d * d;
    m4 += d * d * d * d;
  }
  m2 /= xs.length;
  m4 /= xs.length;
  return { mean, std: Math.sqrt(m2), kurtosis: m4 / (m2 * m2) };
}

/** Root mean square of every column of a row-major [rows, cols] matrix. */
function columnRms(data: Float32Array, rows: number, cols: number): number[] {
  const sums = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) sums[c]! += data[r * cols + c]! ** 2;
  return [...sums].map((s) => Math.sqrt(s / rows));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const bytes = syntheticLlamaShard();
const file = await parse(bytes);
const { hiddenSize: h, intermediateSize: ffn, layers, vocabSize: vocab, heads, kvHeads } = SYNTHETIC_LLAMA_DEFAULTS;
const kvDim = (h / heads) * kvHeads;

describe("syntheticLlamaShard", () => {
  it("is a valid safetensors file with the tensors and shapes of a small LLaMA", () => {
    const shapes = new Map(file.tensors.map((t) => [t.name, t.shape]));
    expect(file.tensors).toHaveLength(1 + 9 * layers + 1);
    expect(shapes.get("model.embed_tokens.weight")).toEqual([vocab, h]);
    expect(shapes.get("model.norm.weight")).toEqual([h]);
    expect(shapes.has("lm_head.weight")).toBe(false); // tied head
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}`;
      expect(shapes.get(`${p}.input_layernorm.weight`)).toEqual([h]);
      expect(shapes.get(`${p}.post_attention_layernorm.weight`)).toEqual([h]);
      expect(shapes.get(`${p}.self_attn.q_proj.weight`)).toEqual([h, h]);
      expect(shapes.get(`${p}.self_attn.k_proj.weight`)).toEqual([kvDim, h]);
      expect(shapes.get(`${p}.self_attn.v_proj.weight`)).toEqual([kvDim, h]);
      expect(shapes.get(`${p}.self_attn.o_proj.weight`)).toEqual([h, h]);
      expect(shapes.get(`${p}.mlp.gate_proj.weight`)).toEqual([ffn, h]);
      expect(shapes.get(`${p}.mlp.up_proj.weight`)).toEqual([ffn, h]);
      expect(shapes.get(`${p}.mlp.down_proj.weight`)).toEqual([h, ffn]);
    }
    const params = file.tensors.reduce((s, t) => s + t.params, 0);
    expect(params).toBe(vocab * h + layers * (2 * h + 2 * h * h + 2 * kvDim * h + 3 * h * ffn) + h);
    expect(file.tensors.find((t) => t.name === "model.embed_tokens.weight")?.dtype).toBe("BF16");
    expect(new Set(file.tensors.filter((t) => t.name !== "model.embed_tokens.weight").map((t) => t.dtype))).toEqual(
      new Set(["F32"]),
    );
  });

  it("says it is synthetic in its metadata, and which channels are outliers", () => {
    expect(file.metadata["synthetic"]).toBe("true");
    expect(file.metadata["description"]).toMatch(/synthetic/i);
    expect(JSON.parse(file.metadata["outlier_input_channels"]!)).toEqual(syntheticOutliers());
  });

  it("is deterministic in its seed", () => {
    // Compared by hand: a deep toEqual over 12 MB of bytes takes minutes.
    expect(sameBytes(syntheticLlamaShard(), bytes)).toBe(true);
    expect(sameBytes(syntheticLlamaShard({ seed: 7 }), bytes)).toBe(false);
  });

  it("has heavy-tailed linear weights scaled like 1/sqrt(fan_in)", async () => {
    const outliers = syntheticOutliers();
    for (const [name, outlierCols] of [
      ["model.layers.0.self_attn.q_proj.weight", outliers.hidden],
      ["model.layers.3.mlp.down_proj.weight", outliers.intermediate],
    ] as const) {
      const { shape, data } = await values(file, name);
      const [rows, cols] = shape as [number, number];
      const skip = new Set<number>(outlierCols);
      const bulk: number[] = [];
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (!skip.has(c)) bulk.push(data[r * cols + c]!);
      const m = moments(bulk);
      expect(m.kurtosis, name).toBeGreaterThan(3.5); // a Gaussian has 3
      expect(Math.abs(m.mean)).toBeLessThan(0.05 * m.std);
      expect(m.std * Math.sqrt(cols)).toBeGreaterThan(0.9);
      expect(m.std * Math.sqrt(cols)).toBeLessThan(1.1);
    }
  });

  it("has outlier input channels: the same columns stand out in every layer", async () => {
    const outliers = syntheticOutliers();
    expect(outliers.hidden.length).toBe(SYNTHETIC_LLAMA_DEFAULTS.outlierChannels);
    for (let l = 0; l < layers; l++) {
      for (const [proj, cols, outlierCols] of [
        ["self_attn.k_proj", h, outliers.hidden],
        ["mlp.up_proj", h, outliers.hidden],
        ["mlp.down_proj", ffn, outliers.intermediate],
      ] as const) {
        const { shape, data } = await values(file, `model.layers.${l}.${proj}.weight`);
        const rms = columnRms(data, shape[0]!, cols);
        const typical = median(rms);
        const largest = rms
          .map((v, c) => [v, c] as const)
          .sort((a, b) => b[0] - a[0])
          .slice(0, outlierCols.length)
          .map(([, c]) => c)
          .sort((a, b) => a - b);
        expect(largest).toEqual(outlierCols);
        for (const c of outlierCols) expect(rms[c]! / typical).toBeGreaterThan(5);
      }
    }
  });

  it("has RMSNorm weights around 1 with some spread", async () => {
    const { data } = await values(file, "model.layers.1.input_layernorm.weight");
    const m = moments(data);
    expect(Math.abs(m.mean - 1)).toBeLessThan(0.05);
    expect(m.std).toBeGreaterThan(0.03);
    expect(m.std).toBeLessThan(0.3);
  });
});
