/**
 * Dequantization of GPTQ and AWQ checkpoint tensors written from the loaders' unpack formulas, independently
 * of the packer (src/formats/gptq-awq-pack.ts), so a test compares two readings of the layouts:
 *  - GPTQ v1 (AutoGPTQ's torch forward): weight[i, o] = (qweight[i / p, o] >> (bits * (i % p))) & mask,
 *    zeros[g, o] = ((qzeros[g, o / p] >> (bits * (o % p))) & mask) + 1, W[o, i] = scales[g, o] * (weight - zeros[g, o])
 *    with g = g_idx[i];
 *  - AWQ GEMM (AutoAWQ's unpack_awq + reverse_awq_order + dequantize_gemm): nibble k of word (i, c) at shift
 *    4k, then columns reordered by [0, 4, 1, 5, 2, 6, 3, 7] within each 8; W[o, i] = (w - z) * scales[i / group, o].
 * Scales are float16; the products are taken in float32 (what a float32 run of the loader computes).
 */
import { decodeToF32 } from "../src/formats/dtypes.ts";

const AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7];

function f16(bytes: Uint8Array): Float32Array {
  return decodeToF32("F16", bytes);
}

/** Dequantized W [out, in] of a GPTQ v1 layer. */
export function unpackGptqV1(
  qweight: Int32Array,
  qzeros: Int32Array,
  scalesF16: Uint8Array,
  gIdx: Int32Array,
  bits: number,
  out: number,
  inFeatures: number,
): Float32Array {
  const p = 32 / bits;
  const mask = 2 ** bits - 1;
  const scales = f16(scalesF16);
  const w = new Float32Array(out * inFeatures);
  for (let i = 0; i < inFeatures; i++) {
    const g = gIdx[i]!;
    for (let o = 0; o < out; o++) {
      const code = (qweight[Math.floor(i / p) * out + o]! >>> (bits * (i % p))) & mask;
      const zero = ((qzeros[g * (out / p) + Math.floor(o / p)]! >>> (bits * (o % p))) & mask) + 1;
      w[o * inFeatures + i] = Math.fround(scales[g * out + o]! * (code - zero));
    }
  }
  return w;
}

/** Dequantized W [out, in] of an AutoAWQ GEMM layer. */
export function unpackAwqGemm(qweight: Int32Array, qzeros: Int32Array, scalesF16: Uint8Array, group: number, out: number, inFeatures: number): Float32Array {
  const scales = f16(scalesF16);
  const words = out / 8;
  // unpack_awq: shifts 0, 4, ..., 28 give 8 values per word, in stored order.
  const unpack = (packed: Int32Array, rows: number) => {
    const v = new Int32Array(rows * out);
    for (let r = 0; r < rows; r++) for (let c = 0; c < words; c++) for (let k = 0; k < 8; k++) v[r * out + c * 8 + k] = (packed[r * words + c]! >>> (4 * k)) & 0xf;
    // reverse_awq_order: column c*8 + j takes unpacked column c*8 + AWQ_REVERSE_ORDER[j].
    const ordered = new Int32Array(v.length);
    for (let r = 0; r < rows; r++) for (let c = 0; c < words; c++) for (let j = 0; j < 8; j++) ordered[r * out + c * 8 + j] = v[r * out + c * 8 + AWQ_REVERSE_ORDER[j]!]!;
    return ordered;
  };
  const iw = unpack(qweight, inFeatures);
  const iz = unpack(qzeros, inFeatures / group);
  const w = new Float32Array(out * inFeatures);
  for (let i = 0; i < inFeatures; i++) {
    const g = Math.floor(i / group);
    for (let o = 0; o < out; o++) w[o * inFeatures + i] = Math.fround((iw[i * out + o]! - iz[g * out + o]!) * scales[g * out + o]!);
  }
  return w;
}
