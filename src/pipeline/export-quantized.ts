/**
 * A decoder quantized with GPTQ or AWQ as the checkpoint the ecosystem loads: the tensors of model.safetensors
 * (packed as src/formats/gptq-awq-pack.ts describes), config.json with its quantization_config and, for GPTQ,
 * AutoGPTQ's quantize_config.json. The caller gives the linear layers' inputs on a calibration text (the model
 * run's calibration outputs, as the lab's gptq/awq precisions use them) and writes the files.
 *
 * GPTQ: every linear layer alone, with the lab's settings (src/quant/calibrated.ts groupFor): rows the
 * group does not divide are quantized per channel, stored as groups that repeat the row's scale and zero.
 *
 * AWQ, as AutoAWQ does for llama-like decoders: one scale vector s per set of layers sharing an input, folded
 * into the operation before them so the checkpoint computes the same function (src/model/awq-fold.ts, which the
 * lab's awq precision runs too); a set whose layers the layout cannot all take gets s = 1.
 *
 * Layers the layout cannot take (shapes, see gptqShapeProblem / awqShapeProblem) stay unquantized in their
 * dtype and are listed in modules_to_not_convert, with the reason.
 */
import { encodeFromF32, type DType } from "../formats/dtypes.ts";
import { f16BitsToF32 } from "../formats/float-bits.ts";
import {
  awqShapeProblem,
  gptqShapeProblem,
  gptqZeroProblem,
  packAwq,
  packGptq,
  type QuantizedLinear,
} from "../formats/gptq-awq-pack.ts";
import { safetensorsHeader, type TensorToWrite } from "../formats/safetensors.ts";
import { gptqQuantize } from "../quant/gptq.ts";
import { calibrationStats, type CalibrationStats } from "../quant/hessian.ts";
import type { DecoderArchitecture } from "../model/architecture.ts";
import { awqDecoder } from "../model/awq-fold.ts";
import { groupFor } from "../quant/calibrated.ts";
import type { DecoderWeights, NamedTensor } from "../model/weights.ts";

export interface QuantizedExportSettings {
  method: "gptq" | "awq";
  bits: number;
  /** Columns per group, or -1 (GPTQ: one group per row). */
  group: number;
  sym?: boolean;
  /** GPTQ act-order (desc_act). */
  actOrder?: boolean;
  /** GPTQ dampening (damp_percent), 0.01 by default. */
  damp?: number;
}

export interface QuantizedExportInput {
  arch: DecoderArchitecture;
  weights: DecoderWeights;
  /** config.json as parsed (copied with quantization_config added). */
  config: Record<string, unknown>;
  /** Each linear layer's input on the calibration text, by weight name ([tokens, in] float32). */
  calibration: Map<string, Float32Array>;
}

/** One packed layer, with what our quantizer produced (for checking the packing). */
export interface ExportedLayer {
  /** Module name, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  quantized: QuantizedLinear;
  /** The dequantized weights the quantizer gave ([out, in], float32 scales); for AWQ of W*s (the stored domain). */
  dequantized: Float32Array;
}

export interface QuantizedExport {
  tensors: TensorToWrite[];
  /** Named file -> JSON content: config.json, and quantize_config.json for GPTQ. */
  jsonFiles: Map<string, unknown>;
  layers: ExportedLayer[];
  unconverted: { module: string; reason: string }[];
  /** AWQ: the scales folded into each operation (by that operation's weight name). */
  awqScales: Map<string, Float32Array>;
  warnings: string[];
}

const LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/** The checkpoint of `input` quantized with `settings` (module comment); throws RangeError on impossible settings. */
export function quantizeForExport(input: QuantizedExportInput, settings: QuantizedExportSettings): QuantizedExport {
  const { arch } = input;
  if (settings.method === "gptq" && ![2, 4, 8].includes(settings.bits)) throw new RangeError(`the GPTQ export packs 2, 4 or 8 bits, not ${settings.bits}`);
  if (settings.method === "awq" && settings.bits !== 4) throw new RangeError(`the AWQ (GEMM) export packs 4 bits only, not ${settings.bits}`);
  if (settings.method === "awq" && settings.group === -1) throw new RangeError("the AWQ export needs a group size (32, 64 or 128)");
  const out: QuantizedExport = { tensors: [], jsonFiles: new Map(), layers: [], unconverted: [], awqScales: new Map(), warnings: [] };
  // Weights as they will be written: AWQ rescales some (folded scales) before the layers are quantized.
  const final = new Map<string, Float32Array>([...input.weights].map(([k, t]) => [k, t.values]));
  const packed = new Map<string, TensorToWrite[]>();
  const statsCache = new Map<Float32Array, CalibrationStats>();
  const statsOf = (weightName: string, cols: number) => {
    const x = input.calibration.get(weightName);
    if (!x) throw new RangeError(`no calibration activations for ${weightName}`);
    let s = statsCache.get(x);
    if (!s) statsCache.set(x, (s = calibrationStats(x, cols)));
    return s;
  };

  if (settings.method === "gptq") {
    for (let l = 0; l < arch.numLayers; l++) {
      for (const linear of LINEARS) {
        const module = `model.layers.${l}.${linear}`;
        const t = input.weights.get(`${module}.weight`)!;
        const [rows, cols] = t.shape as [number, number];
        const problem = gptqShapeProblem(rows, cols, settings.bits);
        if (problem) {
          out.unconverted.push({ module, reason: problem });
          continue;
        }
        const group = groupFor(settings, cols);
        const r = gptqQuantize(t.values, { rows, cols }, statsOf(t.name, cols), {
          bits: settings.bits,
          group,
          sym: settings.sym ?? false,
          actOrder: settings.actOrder ?? false,
          percDamp: settings.damp ?? 0.01,
        });
        out.warnings.push(...r.warnings.map((w) => `${module}: ${w}`));
        const q = checkpointGroups({ rows, cols, bits: settings.bits, codes: r.codes, scales: r.scales, zeros: r.zeros, gIdx: r.gIdx }, settings.group);
        const zeroProblem = gptqZeroProblem(q.zeros);
        if (zeroProblem) {
          out.unconverted.push({ module, reason: zeroProblem });
          continue;
        }
        const p = packGptq(q);
        out.layers.push({ module, quantized: q, dequantized: r.q });
        packed.set(`${module}.weight`, [
          { name: `${module}.qweight`, dtype: "I32", shape: [cols / (32 / settings.bits), rows], data: bytesOf(p.qweight) },
          { name: `${module}.qzeros`, dtype: "I32", shape: [p.groups, rows / (32 / settings.bits)], data: bytesOf(p.qzeros) },
          { name: `${module}.scales`, dtype: "F16", shape: [p.groups, rows], data: p.scales },
          { name: `${module}.g_idx`, dtype: "I32", shape: [cols], data: bytesOf(p.gIdx) },
        ]);
      }
    }
  } else {
    exportAwq(input, settings, final, packed, out);
  }

  // model.safetensors: every tensor in the model's order; packed layers in place of their weight.
  for (const t of input.weights.values()) {
    const replaced = packed.get(t.name);
    if (replaced) out.tensors.push(...replaced);
    else out.tensors.push(floatTensor(t, final.get(t.name)!));
  }
  const notConverted = out.unconverted.map((u) => u.module);
  const quantizationConfig: Record<string, unknown> =
    settings.method === "gptq"
      ? {
          quant_method: "gptq",
          bits: settings.bits,
          group_size: settings.group,
          desc_act: settings.actOrder ?? false,
          sym: settings.sym ?? false,
          damp_percent: settings.damp ?? 0.01,
          static_groups: false,
          true_sequential: false,
          checkpoint_format: "gptq",
        }
      : { quant_method: "awq", bits: 4, group_size: settings.group, zero_point: true, version: "gemm" };
  if (notConverted.length > 0) {
    quantizationConfig["modules_to_not_convert"] = notConverted;
    if (settings.method === "gptq") {
      // optimum/transformers read this list of the block's quantized modules (the same in every block here).
      const inBlock = [...new Set(out.layers.map((q) => q.module.replace(/^model\.layers\.\d+\./, "")))];
      quantizationConfig["modules_in_block_to_quantize"] = [inBlock];
    }
  }
  out.jsonFiles.set("config.json", { ...input.config, quantization_config: quantizationConfig });
  if (settings.method === "gptq") {
    const { quant_method, bits, group_size, desc_act, sym, damp_percent, static_groups, true_sequential, checkpoint_format } = quantizationConfig;
    out.jsonFiles.set("quantize_config.json", { bits, group_size, damp_percent, desc_act, static_groups, sym, true_sequential, model_file_base_name: "model", quant_method, checkpoint_format });
  }
  return out;
}

/** The files a tokenizer brings along; exports copy the ones the model has. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"];

/** One file of an export: its name in the folder and its bytes in order. */
export interface ExportFile {
  name: string;
  parts: Uint8Array[];
}

/** model.safetensors (header, then each tensor's bytes) and the JSON files of a quantized export. */
export function checkpointFiles(result: QuantizedExport): ExportFile[] {
  const header = safetensorsHeader(
    result.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
    { format: "pt", quantized_by: "quantlab" },
  );
  const json = [...result.jsonFiles].map(([name, value]) => ({ name, parts: [new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`)] }));
  return [{ name: "model.safetensors", parts: [header, ...result.tensors.map((t) => t.data)] }, ...json];
}

/**
 * GPTQ's groups as the checkpoint's group size expects them: a layer quantized per channel (its rows not a
 * multiple of the group) gets ceil(in / group) groups that repeat its scale and zero, with g_idx = i / group.
 */
function checkpointGroups(q: QuantizedLinear, group: number): QuantizedLinear {
  const labGroups = q.scales.length / q.rows;
  const groups = group === -1 ? 1 : Math.ceil(q.cols / group);
  if (labGroups === groups) return q;
  const scales = new Float32Array(q.rows * groups);
  const zeros = new Float32Array(q.rows * groups);
  for (let o = 0; o < q.rows; o++) {
    scales.fill(q.scales[o]!, o * groups, (o + 1) * groups);
    zeros.fill(q.zeros[o]!, o * groups, (o + 1) * groups);
  }
  return { ...q, scales, zeros, gIdx: Int32Array.from({ length: q.cols }, (_, i) => Math.floor(i / group)) };
}

function exportAwq(
  input: QuantizedExportInput,
  settings: QuantizedExportSettings,
  final: Map<string, Float32Array>,
  packed: Map<string, TensorToWrite[]>,
  out: QuantizedExport,
): void {
  const decoder = awqDecoder(input.weights, input.calibration, {
    bits: 4,
    group: settings.group,
    sym: settings.sym ?? false,
    layerProblem: (rows, cols) => awqShapeProblem(rows, cols, 4, settings.group),
  });
  for (const [prev, s] of decoder.scales) out.awqScales.set(prev, s);
  for (const [name, values] of decoder.vectors) final.set(name, values);
  out.warnings.push(...decoder.warnings);
  for (const [name, layer] of decoder.layers) {
    const module = name.replace(/\.weight$/, "");
    const { rows, cols, result: r } = layer;
    if (!r) {
      out.unconverted.push({ module, reason: layer.problem! });
      final.set(name, layer.float!);
      continue;
    }
    const q: QuantizedLinear = {
      rows,
      cols,
      bits: 4,
      codes: r.codes,
      scales: r.qscales,
      zeros: r.qzeros,
      gIdx: Int32Array.from({ length: cols }, (_, i) => Math.floor(i / settings.group)),
    };
    const p = packAwq(q);
    out.layers.push({ module, quantized: q, dequantized: r.qScaled });
    packed.set(name, [
      { name: `${module}.qweight`, dtype: "I32", shape: [cols, rows / 8], data: bytesOf(p.qweight) },
      { name: `${module}.qzeros`, dtype: "I32", shape: [p.groups, rows / 8], data: bytesOf(p.qzeros) },
      { name: `${module}.scales`, dtype: "F16", shape: [p.groups, rows], data: p.scales },
    ]);
  }
}

function bytesOf(a: Int32Array): Uint8Array {
  return encodeFromF32("I32", a);
}

/** An unquantized tensor in the dtype the checkpoint had (float32 when unknown). */
function floatTensor(t: NamedTensor, values: Float32Array): TensorToWrite {
  const dtype: DType = t.sourceDtype ?? "F32";
  return { name: t.name, dtype, shape: t.shape, data: encodeFromF32(dtype, values) };
}

/** Float16-rounded, as the checkpoint stores scales. */
export function roundToF16(values: Float32Array): Float32Array {
  const bits = new Uint16Array(encodeFromF32("F16", values).buffer);
  return Float32Array.from(bits, f16BitsToF32);
}
