/**
 * The two 8-bit float formats safetensors stores (F8_E4M3, F8_E5M2), as torch defines them:
 *
 * - F8_E5M2 (torch.float8_e5m2): 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like, with
 *   subnormals, +-inf (x.11111.00) and NaN (x.11111.01..11). Largest finite 57344.
 * - F8_E4M3 (torch.float8_e4m3fn, the "fn" = finite variant): 1 sign, 4 exponent (bias 7), 3 mantissa
 *   bits; subnormals; no infinities; only x.1111.111 (0x7F, 0xFF) is NaN, so x.1111.000..110 are
 *   normal numbers and the largest finite is 448.
 *
 * Encoding is from float32 (the input is rounded to float32 first), round to nearest, ties to even,
 * like torch's casts. What happens past the largest finite value follows torch too:
 * E5M2 rounds to +-inf; E4M3 (no inf) gives NaN for anything that rounds above 448, and for +-inf
 * (torch's fp8e4m3fn_from_fp32_value returns 0x7F/0xFF for |x| >= 480 and rounds (464, 480) up into the
 * NaN code). NaN encodes to 0x7F, or 0xFF with the sign bit, in both formats (as torch).
 */

import { f32Bits } from "./float-bits.ts";

interface MiniFloat {
  expBits: number;
  manBits: number;
  /** true: IEEE-like with inf (E5M2); false: "fn" finite-only with a single NaN code (E4M3). */
  hasInf: boolean;
}

const E4M3: MiniFloat = { expBits: 4, manBits: 3, hasInf: false };
const E5M2: MiniFloat = { expBits: 5, manBits: 2, hasInf: true };

function decodeMini(f: MiniFloat, code: number): number {
  const { expBits, manBits } = f;
  const sign = (code >>> (expBits + manBits)) & 1 ? -1 : 1;
  const expMax = (1 << expBits) - 1;
  const manMax = (1 << manBits) - 1;
  const e = (code >>> manBits) & expMax;
  const m = code & manMax;
  const bias = (1 << (expBits - 1)) - 1;
  if (f.hasInf && e === expMax) return m === 0 ? sign * Infinity : NaN;
  if (!f.hasInf && e === expMax && m === manMax) return NaN;
  if (e === 0) return sign * m * 2 ** (1 - bias - manBits);
  return sign * ((1 << manBits) + m) * 2 ** (e - bias - manBits);
}

/** Round a non-negative finite double to an integer, ties to even. */
function roundHalfEven(m: number): number {
  const f = Math.floor(m);
  const d = m - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function encodeMini(f: MiniFloat, x: number): number {
  const { expBits, manBits } = f;
  const expMax = (1 << expBits) - 1;
  const manMax = (1 << manBits) - 1;
  const bias = (1 << (expBits - 1)) - 1;
  const bits = f32Bits(x); // the float32 the value rounds to; its sign bit also covers -0
  const sign = (bits >>> 31) << (expBits + manBits);
  const nanCode = sign | (expMax << manBits) | manMax; // torch writes 0x7F (sign kept) for NaN in both
  const abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return nanCode;
  if (abs === 0x7f800000) return f.hasInf ? sign | (expMax << manBits) : nanCode;

  // value = a, a float32 >= 0. Express it in units of the target's quantum at its exponent; dividing
  // a float32 by a power of two is exact in double, so the only rounding is the one below.
  const a = Math.abs(Math.fround(x));
  const minNormalExp = 1 - bias;
  const e32 = (abs >>> 23) - 127; // exponent of a when a is a float32 normal (a subnormal is far below minNormalExp)
  let e = Math.max(abs >>> 23 === 0 ? minNormalExp : e32, minNormalExp);
  let r = roundHalfEven(a / 2 ** (e - manBits));
  if (r === 2 << manBits) {
    // rounding carried into the next binade
    r = 1 << manBits;
    e++;
  }
  if (r < 1 << manBits) return sign | r; // subnormal (or zero): exponent field 0
  const expField = e + bias;
  const man = r - (1 << manBits);
  if (f.hasInf) {
    if (expField >= expMax) return sign | (expMax << manBits); // overflow -> inf
  } else if (expField > expMax || (expField === expMax && man === manMax)) {
    return nanCode; // above 448: torch's e4m3fn cast gives NaN
  }
  return sign | (expField << manBits) | man;
}

/** F8_E4M3 (e4m3fn) code -> its exact value. */
export function f8e4m3ToF32(code: number): number {
  return decodeMini(E4M3, code & 0xff);
}
/** F8_E5M2 code -> its exact value. */
export function f8e5m2ToF32(code: number): number {
  return decodeMini(E5M2, code & 0xff);
}
/** float32 -> F8_E4M3 (e4m3fn) code, round to nearest even; above 448 and +-inf -> NaN (as torch). */
export function f32ToF8e4m3(x: number): number {
  return encodeMini(E4M3, x);
}
/** float32 -> F8_E5M2 code, round to nearest even; overflow -> +-inf. */
export function f32ToF8e5m2(x: number): number {
  return encodeMini(E5M2, x);
}
