/**
 * Element-wise casts: "f16", "bf16", "fp8-e4m3", "fp8-e5m2". Every weight is rounded on its own, to nearest
 * with ties to even, from its float32 value; no scales. The conversions themselves live in
 * src/formats/float-bits.ts (fp16, bf16) and src/formats/float8.ts (fp8): this file only applies them.
 *
 * Overflow, per format:
 *   f16       IEEE: |x| >= 65520 rounds to +-inf (torch's .half()).
 *   bf16      float32's exponent range: only |x| rounding above the largest bf16 (3.39e38) becomes +-inf.
 *   fp8-e4m3  e4m3fn has no inf: SATURATING (OCP "saturation mode", NVIDIA __NV_SATFINITE): |x| > 448 -> +-448.
 *             (torch's .to(torch.float8_e4m3fn) instead gives NaN from 464 up; the two agree everywhere below.)
 *   fp8-e5m2  IEEE-like with inf: NOT saturating, as torch's .to(torch.float8_e5m2): |x| >= 61440 (the
 *             midpoint of 57344 and 65536) rounds to +-inf.
 * NaN/Inf inputs are rejected (QuantInputError) before any of this.
 *
 * Layout: the codes, row-major, little-endian: 2 bytes per weight (fp16 / bf16 bit patterns) or 1 byte
 * (fp8, sign | exponent | mantissa from the high bit down). 16 or 8 bits per weight exactly.
 */
import { decodeOutput, encodeOutput, type EncodeOptions, type MatrixShape, type QuantFormat, type RowLengthCheck } from "./format.ts";
import { assertFinite, assertShape, QuantInputError } from "./errors.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../formats/float-bits.ts";
import { f32ToF8e4m3, f32ToF8e5m2, f8e4m3ToF32, f8e5m2ToF32 } from "../formats/float8.ts";

/** Largest finite e4m3fn value. */
export const E4M3_MAX = 448;

/** float32 -> e4m3fn code, round to nearest even, saturating at +-448 (x must not be NaN). */
export function f32ToE4m3Sat(x: number): number {
  const v = x > E4M3_MAX ? E4M3_MAX : x < -E4M3_MAX ? -E4M3_MAX : x;
  return f32ToF8e4m3(v);
}

export interface CastSpec {
  id: string;
  bytes: 1 | 2;
  /** GGML type id (ggml.h) for the casts GGUF stores: F16 = 1, BF16 = 30. */
  ggmlType?: number;
  description: string;
  toBits(x: number): number;
  fromBits(b: number): number;
}

const CAST_SPECS: CastSpec[] = [
  {
    id: "f16",
    bytes: 2,
    ggmlType: 1,
    description: "IEEE float16 (binary16), round to nearest even; overflow to inf",
    toBits: f32ToF16Bits,
    fromBits: f16BitsToF32,
  },
  {
    id: "bf16",
    bytes: 2,
    ggmlType: 30,
    description: "bfloat16 (the top half of a float32), round to nearest even",
    toBits: f32ToBf16Bits,
    fromBits: bf16BitsToF32,
  },
  {
    id: "fp8-e4m3",
    bytes: 1,
    description: "fp8 E4M3 (e4m3fn: max 448, no inf), round to nearest even, saturating at +-448",
    toBits: f32ToE4m3Sat,
    fromBits: f8e4m3ToF32,
  },
  {
    id: "fp8-e5m2",
    bytes: 1,
    description: "fp8 E5M2 (IEEE-like, max 57344), round to nearest even; overflow to inf as torch casts",
    toBits: f32ToF8e5m2,
    fromBits: f8e5m2ToF32,
  },
];

/** Encode x[xo, xo+n) element by element into out (little-endian codes of `bytes` bytes) from byte oo. */
export function encodeCastRun(spec: CastSpec, x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number): void {
  for (let i = 0; i < n; i++) {
    const b = spec.toBits(x[xo + i]!);
    if (spec.bytes === 1) out[oo + i] = b;
    else {
      out[oo + 2 * i] = b & 0xff;
      out[oo + 2 * i + 1] = b >>> 8;
    }
  }
}

function makeCastFormat(spec: CastSpec): QuantFormat {
  const encodedBytes = ({ rows, cols }: MatrixShape) => rows * cols * spec.bytes;
  // Decoding is a lookup in the value of every code (256 or 65536 entries, filled by spec.fromBits on first use).
  let table: Float32Array | undefined;
  const decodeTable = (): Float32Array => {
    if (!table) {
      table = new Float32Array(1 << (8 * spec.bytes));
      for (let c = 0; c < table.length; c++) table[c] = spec.fromBits(c);
    }
    return table;
  };
  return {
    id: spec.id,
    family: "cast",
    description: spec.description,
    blockWeights: 1,
    blockBytes: spec.bytes,
    ...(spec.ggmlType === undefined ? {} : { ggmlType: spec.ggmlType }),
    checkRowLength: (): RowLengthCheck => ({ ok: true }),
    encodedBytes,
    encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Uint8Array {
      const tensor = opts?.tensorName;
      assertShape(x, shape, tensor);
      assertFinite(x, shape, tensor);
      const out = encodeOutput(opts?.out, encodedBytes(shape), false, tensor);
      encodeCastRun(spec, x, 0, x.length, out, 0);
      return out;
    },
    decode(q: Uint8Array, shape: MatrixShape, out?: Float32Array): Float32Array {
      const expected = encodedBytes(shape);
      if (q.length !== expected) {
        throw new QuantInputError(
          "shape",
          `${q.length} bytes do not hold a ${shape.rows}x${shape.cols} ${spec.id} tensor (${expected} bytes)`,
        );
      }
      const n = shape.rows * shape.cols;
      const y = decodeOutput(out, n);
      const t = decodeTable();
      if (spec.bytes === 1) for (let i = 0; i < n; i++) y[i] = t[q[i]!]!;
      else for (let i = 0; i < n; i++) y[i] = t[q[2 * i]! | (q[2 * i + 1]! << 8)]!;
      return y;
    },
  };
}

export const CAST_FORMATS: QuantFormat[] = CAST_SPECS.map(makeCastFormat);
