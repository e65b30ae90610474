/**
 * Quantized linear layers in the layouts the GPTQ and AWQ checkpoints use (what transformers, vLLM,
 * AutoGPTQ / GPTQModel and AutoAWQ load), packed from a quantizer's integer codes, scales and zero points.
 * Pure: typed arrays in, typed arrays out. A layer computes W[o, i] = scale[g, o] * (code[o, i] - zero[g, o]).
 *
 * GPTQ, checkpoint_format "gptq" (AutoGPTQ's QuantLinear.pack, the "v1" format), bits 2, 4 or 8 (p = 32/bits
 * codes per int32 word):
 *   qweight int32 [in * bits / 32, out]   word (r, o) holds codes (o, i = r*p + k) for k = 0..p-1,
 *                                         code k in bits [k*bits, (k+1)*bits): input rows packed, low bits first;
 *   qzeros  int32 [groups, out * bits / 32] word (g, c) holds (zero(g, o = c*p + k) - 1) in bits [k*bits, ...):
 *                                         the v1 "zero minus one" convention (loaders add 1 back), so a zero
 *                                         point of 0 cannot be stored (see gptqZeroProblem);
 *   scales  float16 [groups, out];
 *   g_idx   int32 [in]: the group of each input column (i / group_size, or act-order's grouping).
 *
 * AWQ, AutoAWQ's WQLinear_GEMM (version "gemm"), 4 bits only:
 *   qweight int32 [in, out / 8]           word (i, c) holds codes (o = c*8 + AWQ_ORDER[k], i) in bits [4k, 4k+4):
 *                                         output columns packed in the interleaved order 0,2,4,6,1,3,5,7
 *                                         (loaders undo it with the reverse order 0,4,1,5,2,6,3,7);
 *   qzeros  int32 [groups, out / 8]       the zero points, packed in the same interleaved order, stored as is;
 *   scales  float16 [groups, out];        groups = in / group_size (the group must divide the row).
 */
import { encodeFromF32 } from "./dtypes.ts";

/** AutoAWQ's pack order: nibble k of a word holds output column AWQ_ORDER[k] of its 8. */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

/** One quantized linear layer as the quantizers give it. */
export interface QuantizedLinear {
  /** Output features (rows of W). */
  rows: number;
  /** Input features (columns of W). */
  cols: number;
  bits: number;
  /** Codes in [0, 2^bits - 1], [rows, cols] row-major. */
  codes: Uint8Array;
  /** Per (row, group), [rows, groups] row-major. */
  scales: Float32Array;
  zeros: Float32Array;
  /** The group of each column [cols]. */
  gIdx: Int32Array;
}

export interface PackedGptq {
  qweight: Int32Array;
  qzeros: Int32Array;
  /** float16 bytes, [groups, out]. */
  scales: Uint8Array;
  gIdx: Int32Array;
  groups: number;
}

export interface PackedAwq {
  qweight: Int32Array;
  qzeros: Int32Array;
  /** float16 bytes, [groups, out]. */
  scales: Uint8Array;
  groups: number;
}

/** Why the GPTQ layout cannot hold a layer of this shape at these bits, or undefined when it can. */
export function gptqShapeProblem(rows: number, cols: number, bits: number): string | undefined {
  if (bits !== 2 && bits !== 4 && bits !== 8) return `the GPTQ export packs 2, 4 or 8 bits, not ${bits}`;
  const p = 32 / bits;
  if (cols % p !== 0) return `${cols} input features do not fill whole int32 words of ${p} ${bits}-bit codes`;
  if (rows % p !== 0) return `${rows} output features do not fill whole int32 words of ${p} ${bits}-bit zero points`;
  return undefined;
}

/** Why AutoAWQ's GEMM layout cannot hold a layer of this shape, or undefined when it can. */
export function awqShapeProblem(rows: number, cols: number, bits: number, group: number): string | undefined {
  if (bits !== 4) return `the AWQ (GEMM) layout holds 4-bit codes only, not ${bits}`;
  if (rows % 8 !== 0) return `${rows} output features are not a multiple of 8 (one int32 word holds 8 output columns)`;
  if (cols % group !== 0) return `${cols} input features are not a multiple of the group size ${group}`;
  return undefined;
}

/** Why a layer's zero points do not fit GPTQ v1 ("zero minus one" needs zero >= 1), or undefined. */
export function gptqZeroProblem(zeros: Float32Array): string | undefined {
  const i = zeros.findIndex((z) => z < 1);
  return i < 0 ? undefined : `a group has zero point ${zeros[i]}, which the GPTQ v1 format (zero minus one) cannot store`;
}

function groupsOf(q: QuantizedLinear): number {
  const groups = q.scales.length / q.rows;
  if (!Number.isInteger(groups) || q.zeros.length !== q.scales.length) throw new RangeError("scales and zeros must be [rows, groups]");
  if (q.codes.length !== q.rows * q.cols || q.gIdx.length !== q.cols) throw new RangeError("codes must be [rows, cols] and gIdx [cols]");
  return groups;
}

/** [groups, out] float16 from the quantizer's [out, groups] float32. */
function transposedF16(values: Float32Array, rows: number, groups: number): Uint8Array {
  const t = new Float32Array(values.length);
  for (let o = 0; o < rows; o++) for (let g = 0; g < groups; g++) t[g * rows + o] = values[o * groups + g]!;
  return encodeFromF32("F16", t);
}

/** The GPTQ v1 layout of a layer (module comment). Throws RangeError where gptqShapeProblem / gptqZeroProblem say it cannot. */
export function packGptq(q: QuantizedLinear): PackedGptq {
  const { rows, cols, bits, codes } = q;
  const problem = gptqShapeProblem(rows, cols, bits) ?? gptqZeroProblem(q.zeros);
  if (problem) throw new RangeError(problem);
  const groups = groupsOf(q);
  const p = 32 / bits;
  const mask = (1 << bits) - 1;
  const qweight = new Int32Array((cols / p) * rows);
  for (let r = 0; r < cols / p; r++) {
    for (let o = 0; o < rows; o++) {
      let word = 0;
      for (let k = 0; k < p; k++) word |= (codes[o * cols + r * p + k]! & mask) << (k * bits);
      qweight[r * rows + o] = word;
    }
  }
  const zeroWords = rows / p;
  const qzeros = new Int32Array(groups * zeroWords);
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < zeroWords; c++) {
      let word = 0;
      for (let k = 0; k < p; k++) word |= ((q.zeros[(c * p + k) * groups + g]! - 1) & mask) << (k * bits);
      qzeros[g * zeroWords + c] = word;
    }
  }
  return { qweight, qzeros, scales: transposedF16(q.scales, rows, groups), gIdx: Int32Array.from(q.gIdx), groups };
}

/** AutoAWQ's GEMM layout of a layer (module comment); its groups must be natural (gIdx[i] = i / group). */
export function packAwq(q: QuantizedLinear): PackedAwq {
  const { rows, cols, bits, codes } = q;
  const groups = groupsOf(q);
  const group = cols / groups;
  const problem = awqShapeProblem(rows, cols, bits, group);
  if (problem) throw new RangeError(problem);
  if (q.gIdx.some((g, i) => g !== Math.floor(i / group))) throw new RangeError("the AWQ layout has no g_idx: its groups must be consecutive columns");
  const words = rows / 8;
  const qweight = new Int32Array(cols * words);
  for (let i = 0; i < cols; i++) {
    for (let c = 0; c < words; c++) {
      let word = 0;
      for (let k = 0; k < 8; k++) word |= (codes[(c * 8 + AWQ_ORDER[k]!) * cols + i]! & 0xf) << (4 * k);
      qweight[i * words + c] = word;
    }
  }
  const qzeros = new Int32Array(groups * words);
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < words; c++) {
      let word = 0;
      for (let k = 0; k < 8; k++) word |= (q.zeros[(c * 8 + AWQ_ORDER[k]!) * groups + g]! & 0xf) << (4 * k);
      qzeros[g * words + c] = word;
    }
  }
  return { qweight, qzeros, scales: transposedF16(q.scales, rows, groups), groups };
}
