/**
 * AWQ on a LLaMA-style decoder with its scales folded into the operation before each linear layer, as
 * AutoAWQ applies them to a block (x W^T = (x / s)(W s)^T):
 *   input_layernorm -> q_proj, k_proj, v_proj   one s for the three, searched on their rows together
 *   v_proj -> o_proj                             1/s into v's rows (and bias); only when v's rows are
 *                                                o's columns (no grouped-query attention), as AutoAWQ
 *   post_attention_layernorm -> gate_proj, up_proj   one s for the two
 *   up_proj -> down_proj                         1/s into up's rows (silu(gate) * up is linear in up)
 * The layers whose 1/s goes into another linear layer (o, down) are searched first and their 1/s divided
 * into that layer's rows before it is searched and quantized, so every layer is quantized as the folded
 * graph computes with it. The graph then holds the quantized W*s, the norm weights divided by s, and no
 * other trace of AWQ. An o_proj that cannot fold (grouped-query attention) keeps qScaled / s, its
 * dequantized weight, as AutoAWQ leaves it unscaled.
 *
 * `unfolded` gives the same function with every scale divided back out of the weights (qScaled / s on
 * the columns, times the next layer's s on the rows) and the norms untouched: what the folding is checked
 * against.
 */
import { awqQuantize } from "../quant/awq.ts";
import { calibrationStats } from "../quant/hessian.ts";
import type { DecoderWeights } from "./weights.ts";

const fr = Math.fround;

export interface AwqFoldSettings {
  bits: number;
  /** Columns per group; rows it does not divide are quantized per channel. */
  group: number;
  /** AWQ's clip search (default true). */
  clip?: boolean;
  /** Symmetric, no zero point (default false: AutoAWQ's asymmetric grid). */
  sym?: boolean;
}

export interface AwqFoldedLinear {
  /** The weight as the folded graph computes with it, [rows, cols]. */
  folded: Float32Array;
  /** The same layer with the scales divided back out (the norms untouched). */
  unfolded: Float32Array;
  /** False when the group did not divide the rows (quantized per channel). */
  grouped: boolean;
}

export interface AwqFolding {
  linear: Map<string, AwqFoldedLinear>;
  /** The 1-D tensors scales were folded into (norm weights, v's bias): their folded values. */
  vectors: Map<string, Float32Array>;
}

interface Quantized {
  qScaled: Float32Array;
  scales: Float32Array;
  grouped: boolean;
}

function quantize(values: Float32Array, rows: number, cols: number, activations: Float32Array, settings: AwqFoldSettings): Quantized {
  const grouped = cols % settings.group === 0;
  const stats = calibrationStats(activations, cols, { clipSample: true });
  const r = awqQuantize(values, { rows, cols }, stats, { bits: settings.bits, group: grouped ? settings.group : -1, clip: settings.clip ?? true, zeroPoint: !settings.sym });
  return { qScaled: r.qScaled, scales: r.scales, grouped };
}

/** values [rows, cols] with column c divided by colScale[c] and row r multiplied by rowScale[r]. */
function rescale(values: Float32Array, cols: number, colDivisor?: Float32Array, rowFactor?: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const r = Math.floor(i / cols);
    let v = values[i]!;
    if (colDivisor) v = fr(v / colDivisor[i % cols]!);
    if (rowFactor) v = fr(v * rowFactor[r]!);
    out[i] = v;
  }
  return out;
}

/** Row r divided by divisor[r] (a vector when cols is 1). */
function divideRows(values: Float32Array, cols: number, divisor: Float32Array): Float32Array {
  return values.map((v, i) => fr(v / divisor[Math.floor(i / cols)]!));
}

function concatRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * AWQ of every decoder layer of `weights` with folded scales (see the module comment). `calibration` holds
 * each linear layer's input on a calibration text, keyed by its weight name (evaluate.ts collectCalibration).
 */
export function awqFold(weights: DecoderWeights, calibration: Map<string, Float32Array>, settings: AwqFoldSettings): AwqFolding {
  const linear = new Map<string, AwqFoldedLinear>();
  const vectors = new Map<string, Float32Array>();
  for (let l = 0; weights.has(`model.layers.${l}.self_attn.q_proj.weight`); l++) {
    const p = `model.layers.${l}.`;
    const tensor = (name: string) => weights.get(p + name)!;
    const inputs = (name: string) => {
      const a = calibration.get(`${p}${name}.weight`);
      if (!a) throw new Error(`no calibration activations for ${p}${name}.weight`);
      return a;
    };
    const [q, k, v, o] = ["q_proj", "k_proj", "v_proj", "o_proj"].map((n) => tensor(`self_attn.${n}.weight`));
    const [gate, up, down] = ["gate_proj", "up_proj", "down_proj"].map((n) => tensor(`mlp.${n}.weight`));
    const hidden = q!.shape[1]!;
    const inner = down!.shape[1]!;

    const oq = quantize(o!.values, o!.shape[0]!, o!.shape[1]!, inputs("self_attn.o_proj"), settings);
    const dq = quantize(down!.values, down!.shape[0]!, inner, inputs("mlp.down_proj"), settings);
    const foldVO = v!.shape[0] === o!.shape[1];
    const vValues = foldVO ? divideRows(v!.values, hidden, oq.scales) : v!.values;
    const upValues = divideRows(up!.values, hidden, dq.scales);

    const qkvRows = [q!, k!, v!].map((t) => t.shape[0]!);
    const qkv = quantize(concatRows([q!.values, k!.values, vValues]), qkvRows.reduce((a, b) => a + b), hidden, inputs("self_attn.q_proj"), settings);
    const guRows = [gate!, up!].map((t) => t.shape[0]!);
    const gu = quantize(concatRows([gate!.values, upValues]), guRows.reduce((a, b) => a + b), hidden, inputs("mlp.gate_proj"), settings);

    const split = (all: Float32Array, rows: number[]) => {
      let at = 0;
      return rows.map((n) => all.subarray((at += n * hidden) - n * hidden, at));
    };
    const [qF, kF, vF] = split(qkv.qScaled, qkvRows);
    const [gateF, upF] = split(gu.qScaled, guRows);
    const set = (name: string, folded: Float32Array, unfolded: Float32Array, grouped: boolean) => linear.set(p + name, { folded, unfolded, grouped });
    set("self_attn.q_proj.weight", qF!, rescale(qF!, hidden, qkv.scales), qkv.grouped);
    set("self_attn.k_proj.weight", kF!, rescale(kF!, hidden, qkv.scales), qkv.grouped);
    set("self_attn.v_proj.weight", vF!, rescale(vF!, hidden, qkv.scales, foldVO ? oq.scales : undefined), qkv.grouped);
    const oUnfolded = rescale(oq.qScaled, o!.shape[1]!, oq.scales);
    set("self_attn.o_proj.weight", foldVO ? oq.qScaled : oUnfolded, oUnfolded, oq.grouped);
    set("mlp.gate_proj.weight", gateF!, rescale(gateF!, hidden, gu.scales), gu.grouped);
    set("mlp.up_proj.weight", upF!, rescale(upF!, hidden, gu.scales, dq.scales), gu.grouped);
    set("mlp.down_proj.weight", dq.qScaled, rescale(dq.qScaled, inner, dq.scales), dq.grouped);

    vectors.set(`${p}input_layernorm.weight`, divideRows(tensor("input_layernorm.weight").values, 1, qkv.scales));
    vectors.set(`${p}post_attention_layernorm.weight`, divideRows(tensor("post_attention_layernorm.weight").values, 1, gu.scales));
    const vBias = weights.get(`${p}self_attn.v_proj.bias`);
    if (foldVO && vBias) vectors.set(vBias.name, divideRows(vBias.values, 1, oq.scales));
  }
  return { linear, vectors };
}
