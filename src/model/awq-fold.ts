/**
 * AWQ on a LLaMA-style decoder as AutoAWQ applies it to each block: one scale vector s per set of layers
 * reading the same input, folded into the operation before them (x W^T = (x / s)(W s)^T):
 *   input_layernorm -> q_proj, k_proj, v_proj       norm weight / s
 *   v_proj -> o_proj                                v's rows (and bias) / s; only when v's rows are o's
 *                                                   columns (no grouped-query attention), else o keeps s = 1
 *   post_attention_layernorm -> gate_proj, up_proj  norm weight / s
 *   up_proj -> down_proj                            up's rows / s (silu(gate) * up is linear in up)
 * As AutoAWQ, every set's scale search runs on the block's original weights (one search over the set's rows
 * together: their summed output error on the shared input), then the scales are applied and each layer is
 * clipped and quantized as the folded model holds it: rows divided by the next set's s, columns times its own.
 *
 * This is the one implementation of the folding: the lab's awq precision (awqFold, its folded graph and the
 * same function with the scales divided back out) and the AutoAWQ checkpoint export
 * (src/pipeline/export-quantized.ts, which passes the packing layout's shape rules as `layerProblem`) read it.
 */
import { awqFinish, awqSearch, type AwqResult, type AwqSearch } from "../quant/awq.ts";
import { calibrationStats, type CalibrationStats } from "../quant/hessian.ts";
import { groupFor } from "../quant/calibrated.ts";
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

export interface AwqDecoderSettings extends AwqFoldSettings {
  /**
   * Why a layer of rows x cols cannot be quantized (a checkpoint layout's shape rules), or undefined. Such a
   * layer stays float (still rescaled by the folding); a set with any such member keeps s = 1. By default
   * every layer can (rows the group does not divide are quantized per channel).
   */
  layerProblem?: (rows: number, cols: number) => string | undefined;
}

export interface AwqDecoderLayer {
  rows: number;
  cols: number;
  /** The group it was quantized with: the requested one, or -1 (per channel) where that does not divide its rows. */
  group: number;
  /** Its set's s, multiplied into its columns; undefined for s = 1. */
  colScale?: Float32Array;
  /** The next set's s, divided out of its rows (folded into this layer); undefined when none. */
  rowDivisor?: Float32Array;
  /** The quantization of the folded weights (qScaled: what a checkpoint stores); undefined with `problem`. */
  result?: AwqResult;
  problem?: string;
  /** With `problem`: the float weights as the folded model holds them. */
  float?: Float32Array;
}

export interface AwqDecoder {
  /** Every decoder linear layer, by weight name. */
  layers: Map<string, AwqDecoderLayer>;
  /** The 1-D tensors scales were folded into (norm weights, biases of rows that carry 1/s): their folded values. */
  vectors: Map<string, Float32Array>;
  /** Each folded s, by the weight name of the operation it is folded into. */
  scales: Map<string, Float32Array>;
  warnings: string[];
}

interface ScaleSet {
  /** The operation s is folded into: a norm weight or a linear layer's weight (its rows); undefined keeps s = 1. */
  prev: string | undefined;
  linears: string[];
}

function scaleSets(weights: DecoderWeights, l: number): ScaleSet[] {
  const p = `model.layers.${l}.`;
  const attn = (n: string) => `${p}self_attn.${n}.weight`;
  const mlp = (n: string) => `${p}mlp.${n}.weight`;
  const vFeedsO = weights.get(attn("v_proj"))!.shape[0] === weights.get(attn("o_proj"))!.shape[1];
  return [
    { prev: `${p}input_layernorm.weight`, linears: [attn("q_proj"), attn("k_proj"), attn("v_proj")] },
    { prev: vFeedsO ? attn("v_proj") : undefined, linears: [attn("o_proj")] },
    { prev: `${p}post_attention_layernorm.weight`, linears: [mlp("gate_proj"), mlp("up_proj")] },
    { prev: mlp("up_proj"), linears: [mlp("down_proj")] },
  ];
}

/** AWQ of every decoder layer of `weights` with folded scales (module comment). `calibration`: each linear layer's input, by weight name. */
export function awqDecoder(weights: DecoderWeights, calibration: Map<string, Float32Array>, settings: AwqDecoderSettings): AwqDecoder {
  const out: AwqDecoder = { layers: new Map(), vectors: new Map(), scales: new Map(), warnings: [] };
  const statsCache = new Map<Float32Array, CalibrationStats>();
  const statsOf = (name: string, cols: number) => {
    const x = calibration.get(name);
    if (!x) throw new RangeError(`no calibration activations for ${name}`);
    let s = statsCache.get(x);
    if (!s) statsCache.set(x, (s = calibrationStats(x, cols, { clipSample: true })));
    return s;
  };
  const base = { bits: settings.bits, clip: settings.clip ?? true, zeroPoint: !(settings.sym ?? false) };

  for (let l = 0; weights.has(`model.layers.${l}.self_attn.q_proj.weight`); l++) {
    // 1. Every set's search, on the original weights.
    const found = new Map<string, { search: AwqSearch; rowOffset: number; group: number }>();
    const colScale = new Map<string, Float32Array>();
    const rowDivisor = new Map<string, Float32Array>();
    const problems = new Map<string, string>();
    for (const set of scaleSets(weights, l)) {
      const members = set.linears.map((n) => weights.get(n)!);
      const cols = members[0]!.shape[1]!;
      for (const t of members) {
        const problem = settings.layerProblem?.(t.shape[0]!, cols);
        if (problem) problems.set(t.name, problem);
      }
      if (members.every((t) => problems.has(t.name))) continue;
      const folds = set.prev !== undefined && !members.some((t) => problems.has(t.name));
      const rows = members.reduce((s, t) => s + t.shape[0]!, 0);
      const stacked = new Float32Array(rows * cols);
      let at = 0;
      for (const t of members) {
        stacked.set(t.values, at * cols);
        at += t.shape[0]!;
      }
      const group = groupFor(settings, cols);
      const search = awqSearch(stacked, { rows, cols }, statsOf(set.linears[0]!, cols), { ...base, group, searchScales: folds });
      at = 0;
      for (const t of members) {
        found.set(t.name, { search, rowOffset: at, group });
        at += t.shape[0]!;
      }
      if (!folds) continue;
      const prev = set.prev!;
      out.scales.set(prev, search.scales);
      for (const n of set.linears) colScale.set(n, search.scales);
      const prevTensor = weights.get(prev)!;
      if (prevTensor.shape.length === 2) rowDivisor.set(prev, search.scales);
      else out.vectors.set(prev, divideRows(prevTensor.values, 1, search.scales));
    }

    // 2. Each layer: rows divided by the next set's s, columns times its own set's s, clipped and quantized.
    for (const set of scaleSets(weights, l)) {
      for (const name of set.linears) {
        const t = weights.get(name)!;
        const [rows, cols] = t.shape as [number, number];
        const rs = rowDivisor.get(name);
        const cs = colScale.get(name);
        const rowScaled = rs ? divideRows(t.values, cols, rs) : t.values;
        const biasName = name.replace(/\.weight$/, ".bias");
        const bias = weights.get(biasName);
        if (rs && bias) out.vectors.set(biasName, divideRows(bias.values, 1, rs));
        const layer: AwqDecoderLayer = { rows, cols, group: groupFor(settings, cols), colScale: cs, rowDivisor: rs };
        out.layers.set(name, layer);
        const problem = problems.get(name);
        const f = found.get(name);
        if (problem || !f) {
          layer.problem = problem ?? "not searched";
          layer.float = cs ? rowScaled.map((v, i) => fr(v * cs[i % cols]!)) : rowScaled;
          continue;
        }
        // The clip search ran on the original rows: a row divided by r has its max |w| divided by r too.
        const perRow = f.group === -1 ? 1 : cols / f.group;
        const clip = f.search.clipMax?.slice(f.rowOffset * perRow, (f.rowOffset + rows) * perRow);
        if (clip && rs) for (let g = 0; g < clip.length; g++) clip[g] = fr(clip[g]! / rs[Math.floor(g / perRow)]!);
        layer.result = awqFinish(rowScaled, { rows, cols }, statsOf(name, cols), { ...base, group: f.group }, { ...f.search, clipMax: clip });
        out.warnings.push(...layer.result.warnings.map((w) => `${name}: ${w}`));
      }
    }
  }
  return out;
}

/** Row r divided by divisor[r] (a vector when cols is 1). */
function divideRows(values: Float32Array, cols: number, divisor: Float32Array): Float32Array {
  return values.map((v, i) => fr(v / divisor[Math.floor(i / cols)]!));
}

export interface AwqFoldedLinear {
  /** The weight as the folded graph computes with it, [rows, cols]. */
  folded: Float32Array;
  /** The same layer with the scales divided back out (the norms untouched). */
  unfolded: Float32Array;
  /** The group it was quantized with (-1: per channel). */
  group: number;
}

export interface AwqFolding {
  linear: Map<string, AwqFoldedLinear>;
  /** The 1-D tensors scales were folded into (norm weights, v's bias): their folded values. */
  vectors: Map<string, Float32Array>;
}

/**
 * The lab's awq precision: every linear layer's dequantized weights as the folded graph holds them, and the
 * same function with every scale divided back out (columns / s, rows times the next set's s; the norms
 * untouched), which the folding is checked against.
 */
export function awqFold(weights: DecoderWeights, calibration: Map<string, Float32Array>, settings: AwqFoldSettings): AwqFolding {
  const decoder = awqDecoder(weights, calibration, settings);
  const linear = new Map<string, AwqFoldedLinear>();
  for (const [name, layer] of decoder.layers) {
    const folded = layer.result!.qScaled;
    const { cols, colScale: cs, rowDivisor: rs } = layer;
    const unfolded = folded.map((v, i) => {
      let u = cs ? fr(v / cs[i % cols]!) : v;
      if (rs) u = fr(u * rs[Math.floor(i / cols)]!);
      return u;
    });
    linear.set(name, { folded, unfolded, group: layer.group });
  }
  return { linear, vectors: decoder.vectors };
}
