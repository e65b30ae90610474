/**
 * Arithmetic helpers shared by the llama.cpp (ggml) block formats.
 *
 * Bit-exactness with ggml's C code rests on one rule: every float operation must be a float32
 * operation. In JS, Math.fround(a op b) for float32 a, b equals the C float result for + - * / and
 * sqrt (double has more than twice float's precision, so rounding twice is harmless). Every
 * intermediate the C code keeps in a `float` must therefore pass through fround; accumulators C keeps in
 * `float` too.
 */
import { f32Bits, f16BitsToF32, f32ToF16Bits } from "../../formats/float-bits.ts";

export const fr = Math.fround;

/** ggml's nearest_int: round a float32 with |x| <= 4194303 to the nearest integer, ties to even. */
export function nearestInt(x: number): number {
  return (f32Bits(fr(x + 12582912)) & 0x007fffff) - 0x00400000;
}

/** The float32 value that ggml stores as fp16 and reads back: GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x)). */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

export { f32ToF16Bits, f16BitsToF32 };

/** Little-endian fp16 read/write at a byte offset. */
export function writeF16(out: Uint8Array, offset: number, x: number): void {
  const h = f32ToF16Bits(x);
  out[offset] = h & 0xff;
  out[offset + 1] = h >>> 8;
}
export function readF16(q: Uint8Array, offset: number): number {
  return f16BitsToF32(q[offset]! | (q[offset + 1]! << 8));
}
