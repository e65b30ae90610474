/**
 * Plain round-to-nearest integer formats: int8, int4, int3, int2, symmetric or asymmetric (zero point), with
 * one scale per tensor, per output channel (row), or per group of 32/64/128 consecutive weights of a row.
 *
 * Ids: `int{bits}[-asym]-{tensor|channel|g32|g64|g128}`, e.g. "int4-g128", "int4-asym-g32", "int8-channel";
 * FORMAT_ALIASES maps the short names ("int8" = "int8-channel").
 *
 * ## Arithmetic (float32 throughout; every step is one correctly rounded float32 operation, so a WGSL port
 *    reproduces it bit for bit)
 *
 * Let b = bits, L = 2^b - 1 (largest code), Q = 2^(b-1) - 1, and for a group (or row, or tensor):
 *   hi = max(max x, 0), lo = min(min x, 0)            (the range always holds 0, as GPTQ does)
 *
 * Symmetric: q in [-Q, Q] (the restricted range: -2^(b-1) is left unused so the grid is symmetric and
 *   +absmax and -absmax are both representable; torch's symmetric qint8, TensorRT and bitsandbytes' LLM.int8
 *   all use +-127 for int8). The stored code is u = q + 2^(b-1) in [1, L], i.e. a fixed zero point of
 *   2^(b-1), as GPTQ's symmetric checkpoints store it.
 *     scale s = smallest fp16 value with s * Q >= max(hi, -lo)
 * Asymmetric: u in [0, L] with a zero point z stored as an integer (as GPTQ/AWQ do):
 *     scale s = smallest fp16 value with s * L >= fround(hi - lo)
 *     z = clamp(round(-lo * inv), 0, L)
 * Both:
 *     inv = fround(1 / s)  (0 when s = 0, i.e. an all-zero group)
 *     u = clamp(round(fround(x * inv)) + z, umin, L)      umin = 1 symmetric, 0 asymmetric; z = 2^(b-1) symmetric
 *     decoded x' = fround((u - z) * s)                     (exact: at most 19 significant bits)
 *   round() is round-half-to-even (torch.round, WGSL round()).
 *
 * Why the scale is rounded UP to fp16 (not to nearest): with s * Q >= absmax no weight lands outside the code
 * range, so nothing is clipped and every weight decodes within s/2 (plus float32 noise below s * 2^-16) of its
 * value; rounding to nearest can make s slightly smaller than absmax / Q and clip the largest weights by up to
 * Q * ulp(s) / 2, which for subnormal fp16 scales (absmax below ~1e-3 for int8) exceeds s/2. The price is a
 * step at most 2^-10 (relative) larger than absmax / Q for normal fp16 scales. s is found exactly: a first guess
 * from fround(absmax / Q) rounded to fp16, then moved one fp16 step at a time while the exact comparison
 * s * Q >= absmax says so (s * Q is exact in float32: an 11-bit significand times an integer below 256).
 * A scale that would exceed the largest fp16 (65504) is an error: such weights (|x| > 65504 * Q) are not
 * model weights; cast the tensor instead.
 *
 * Scales are fp16 (as GPTQ/AWQ/HQQ checkpoints store them) and counted in the bits per weight; zero points take
 * one whole byte each (GPTQ packs them to b bits in qzeros; a byte keeps blocks byte-aligned and costs
 * (8 - b) / groupSize bits per weight more than GPTQ's packing).
 *
 * ## Byte layouts (all little-endian; fp16 = IEEE binary16)
 *
 * Codes are packed into a little-endian bit stream: code i of a group/row occupies bits [i*b, i*b + b) of that
 * group's/row's codes, bit k of the stream being bit (k % 8) of byte k / 8. So for 4 bits code 2j is the low
 * nibble of byte j and code 2j+1 the high nibble; for 2 bits code 4j+t is bits 2t..2t+1 of byte j; for 3 bits
 * codes straddle bytes (code 2 = bits 6,7 of byte 0 and bit 0 of byte 1; 8 codes fill 3 bytes). The last byte of
 * a stream is padded with zero bits.
 *
 *   group g (g = 32, 64, 128; cols must be a multiple of g): each row is cols/g blocks back to back, rows back
 *   to back, no padding. Block (head = 2 symmetric, 3 asymmetric; blockBytes = head + g*b/8):
 *       @0 scale fp16 | @2 zero point u8 (asymmetric only) | @head codes (g*b/8 bytes)
 *     e.g. int4-g128: 66 bytes per 128 weights (4.125 bpw); int4-asym-g32: 19 bytes per 32 (4.75 bpw);
 *     int3-g64: 26 bytes per 64 (3.25 bpw); int2-g64: 18 bytes per 64 (2.25 bpw).
 *   channel: each row is one block: @0 scale fp16 | @2 zero u8 (asymmetric) | @head codes (ceil(cols*b/8) bytes).
 *   tensor: @0 scale fp16 | @2 zero u8 (asymmetric), once; then every row's codes, ceil(cols*b/8) bytes each,
 *     row r at head + r * ceil(cols*b/8).
 *
 * Shape for the GPU port: one function computes a group's parameters from its range (intGroupParams), one
 * encodes and one decodes a group's codes (encodeIntCodes / decodeIntCodes), all over (typed array, offset).
 */
import { decodeOutput, encodeOutput, type EncodeOptions, type MatrixShape, type QuantFormat, type RowLengthCheck } from "./format.ts";
import { assertFinite, assertShape, QuantInputError } from "./errors.ts";
import { f16BitsToF32, f32ToF16Bits } from "../formats/float-bits.ts";
import { nearestInt } from "./ggml/common.ts";

const fr = Math.fround;

export type IntBits = 2 | 3 | 4 | 8;
export type IntGranularity = "tensor" | "channel" | 32 | 64 | 128;

export interface IntSpec {
  bits: IntBits;
  asym: boolean;
  granularity: IntGranularity;
}

export const INT_BITS: readonly IntBits[] = [8, 4, 3, 2];
export const INT_GRANULARITIES: readonly IntGranularity[] = ["tensor", "channel", 32, 64, 128];

/** The id of an integer format: `int{bits}[-asym]-{tensor|channel|g32|g64|g128}`. */
export function intFormatId(spec: IntSpec): string {
  const g = typeof spec.granularity === "number" ? `g${spec.granularity}` : spec.granularity;
  return `int${spec.bits}${spec.asym ? "-asym" : ""}-${g}`;
}

/** Short names accepted for formats (alias -> format id). */
export const FORMAT_ALIASES: Readonly<Record<string, string>> = Object.freeze({ int8: "int8-channel" });

// ---------------------------------------------------------------------------------------------------------
// Per-group arithmetic

/** Largest fp16 bit pattern below +inf. */
const F16_MAX_BITS = 0x7bff;

/**
 * The fp16 bits of the smallest fp16 value s >= 0 with s * k >= range (range >= 0 a float32, k a positive
 * integer below 256). 0 for range 0. Throws RangeError past the fp16 range.
 */
export function scaleF16Ceil(range: number, k: number): number {
  if (range === 0) return 0;
  let h = f32ToF16Bits(fr(range / k));
  if (h > F16_MAX_BITS) h = F16_MAX_BITS;
  // s * k is exact in float32 (11-bit significand times an 8-bit integer), so these comparisons are exact.
  while (h <= F16_MAX_BITS && f16BitsToF32(h) * k < range) h++;
  while (h > 0 && f16BitsToF32(h - 1) * k >= range) h--;
  if (h > F16_MAX_BITS) {
    throw new RangeError(
      `a quantization step of ${range / k} is beyond the fp16 range (65504): weights this large need a cast format`,
    );
  }
  return h;
}

/** A group's stored parameters, and the float32 values derived from them. */
export interface IntGroupParams {
  /** fp16 bits of the scale as stored. */
  scaleBits: number;
  /** The scale's value. */
  scale: number;
  /** fround(1 / scale), 0 for a zero scale. */
  inv: number;
  /** Zero point: stored (asymmetric) or 2^(b-1) (symmetric). */
  zero: number;
}

/**
 * Parameters of a group whose values lie in [lo, hi] with lo <= 0 <= hi (float32 values).
 */
export function intGroupParams(lo: number, hi: number, bits: IntBits, asym: boolean): IntGroupParams {
  const L = (1 << bits) - 1;
  if (asym) {
    const scaleBits = scaleF16Ceil(fr(hi - lo), L);
    const scale = f16BitsToF32(scaleBits);
    const inv = scale === 0 ? 0 : fr(1 / scale);
    let zero = nearestInt(fr(-lo * inv));
    if (zero < 0) zero = 0;
    if (zero > L) zero = L;
    return { scaleBits, scale, inv, zero };
  }
  const Q = (1 << (bits - 1)) - 1;
  const amax = hi > -lo ? hi : -lo;
  const scaleBits = scaleF16Ceil(amax, Q);
  const scale = f16BitsToF32(scaleBits);
  const inv = scale === 0 ? 0 : fr(1 / scale);
  return { scaleBits, scale, inv, zero: 1 << (bits - 1) };
}

/** [lo, hi] of x[off, off+n) widened to hold 0: lo = min(min x, 0), hi = max(max x, 0). Written to out[0..1]. */
export function intGroupRange(x: Float32Array, off: number, n: number, out: Float64Array): void {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < n; i++) {
    const v = x[off + i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  out[0] = lo;
  out[1] = hi;
}

/** Write `code` (b bits) as code number i of the little-endian bit stream starting at byte off (zeroed). */
export function packCode(out: Uint8Array, off: number, i: number, bits: number, code: number): void {
  const bit = i * bits;
  const byte = off + (bit >>> 3);
  const shift = bit & 7;
  out[byte] = out[byte]! | ((code << shift) & 0xff);
  if (shift + bits > 8) out[byte + 1] = out[byte + 1]! | (code >>> (8 - shift));
}

/** Read code number i (b bits) of the little-endian bit stream starting at byte off. */
export function unpackCode(q: Uint8Array, off: number, i: number, bits: number): number {
  const bit = i * bits;
  const byte = off + (bit >>> 3);
  const shift = bit & 7;
  let v = q[byte]! >>> shift;
  if (shift + bits > 8) v |= q[byte + 1]! << (8 - shift);
  return v & ((1 << bits) - 1);
}

/** Quantize x[xo, xo+n) with params p into the (zeroed) bit stream at out[oo...]. */
export function encodeIntCodes(
  x: Float32Array,
  xo: number,
  n: number,
  p: IntGroupParams,
  bits: IntBits,
  asym: boolean,
  out: Uint8Array,
  oo: number,
): void {
  const L = (1 << bits) - 1;
  const umin = asym ? 0 : 1;
  for (let i = 0; i < n; i++) {
    let u = nearestInt(fr(x[xo + i]! * p.inv)) + p.zero;
    if (u < umin) u = umin;
    if (u > L) u = L;
    packCode(out, oo, i, bits, u);
  }
}

/** Dequantize n codes of the bit stream at q[qo...] into y[yo, yo+n). */
export function decodeIntCodes(
  q: Uint8Array,
  qo: number,
  n: number,
  scale: number,
  zero: number,
  bits: IntBits,
  y: Float32Array,
  yo: number,
): void {
  for (let i = 0; i < n; i++) y[yo + i] = fr((unpackCode(q, qo, i, bits) - zero) * scale);
}

// ---------------------------------------------------------------------------------------------------------
// Header (scale fp16 @0, zero point u8 @2 when asymmetric)

function writeHeader(out: Uint8Array, off: number, p: IntGroupParams, asym: boolean): void {
  out[off] = p.scaleBits & 0xff;
  out[off + 1] = p.scaleBits >>> 8;
  if (asym) out[off + 2] = p.zero;
}

function readScale(q: Uint8Array, off: number): number {
  return f16BitsToF32(q[off]! | (q[off + 1]! << 8));
}

// ---------------------------------------------------------------------------------------------------------
// The format records

function granularityText(g: IntGranularity): string {
  if (g === "tensor") return "one fp16 scale for the whole tensor";
  if (g === "channel") return "one fp16 scale per row (output channel)";
  return `groups of ${g} along the row with an fp16 scale each`;
}

function makeIntFormat(spec: IntSpec): QuantFormat {
  const { bits, asym, granularity } = spec;
  const id = intFormatId(spec);
  const head = asym ? 3 : 2;
  const group = typeof granularity === "number" ? granularity : 0;
  const blockBytes = group ? head + (group * bits) / 8 : 0;
  const description =
    `${bits}-bit ${asym ? "asymmetric" : "symmetric"} round-to-nearest integers, ${granularityText(granularity)}` +
    (asym ? (granularity === "tensor" ? " and a u8 zero point" : " and a u8 zero point each") : "");
  const codeBytes = (cols: number) => Math.ceil((cols * bits) / 8);

  const checkRowLength = (cols: number): RowLengthCheck => {
    if (!group || cols % group === 0) return { ok: true };
    return {
      ok: false,
      reason:
        `rows of ${cols} weights are not a multiple of the group size ${group} ` +
        `(GPTQ/AWQ-style group checkpoints require whole groups); use a per-channel format instead`,
      fallback: intFormatId({ bits, asym, granularity: "channel" }),
    };
  };

  const encodedBytes = ({ rows, cols }: MatrixShape): number => {
    if (group) return rows * (cols / group) * blockBytes;
    if (granularity === "channel") return rows * (head + codeBytes(cols));
    return head + rows * codeBytes(cols);
  };

  const encode = (x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Uint8Array => {
    const tensor = opts?.tensorName;
    assertShape(x, shape, tensor);
    const check = checkRowLength(shape.cols);
    if (!check.ok) throw new QuantInputError("row-length", check.reason, { tensor, fallback: check.fallback });
    assertFinite(x, shape, tensor);
    const { rows, cols } = shape;
    // encodeIntCodes ORs codes into a zeroed bit stream.
    const out = encodeOutput(opts?.out, encodedBytes(shape), true, tensor);
    const range = new Float64Array(2);
    if (group) {
      const nb = cols / group;
      for (let b = 0; b < rows * nb; b++) {
        const xo = b * group;
        const oo = b * blockBytes;
        intGroupRange(x, xo, group, range);
        const p = intGroupParams(range[0]!, range[1]!, bits, asym);
        writeHeader(out, oo, p, asym);
        encodeIntCodes(x, xo, group, p, bits, asym, out, oo + head);
      }
    } else if (granularity === "channel") {
      const rowBytes = head + codeBytes(cols);
      for (let r = 0; r < rows; r++) {
        intGroupRange(x, r * cols, cols, range);
        const p = intGroupParams(range[0]!, range[1]!, bits, asym);
        writeHeader(out, r * rowBytes, p, asym);
        encodeIntCodes(x, r * cols, cols, p, bits, asym, out, r * rowBytes + head);
      }
    } else {
      // Two passes: the whole tensor's range, then every row with the one scale.
      intGroupRange(x, 0, rows * cols, range);
      const p = intGroupParams(range[0]!, range[1]!, bits, asym);
      writeHeader(out, 0, p, asym);
      const rowBytes = codeBytes(cols);
      for (let r = 0; r < rows; r++) encodeIntCodes(x, r * cols, cols, p, bits, asym, out, head + r * rowBytes);
    }
    return out;
  };

  const decode = (q: Uint8Array, shape: MatrixShape, out?: Float32Array): Float32Array => {
    const check = checkRowLength(shape.cols);
    if (!check.ok) throw new QuantInputError("row-length", check.reason, { fallback: check.fallback });
    const expected = encodedBytes(shape);
    if (q.length !== expected) {
      throw new QuantInputError(
        "shape",
        `${q.length} bytes do not hold a ${shape.rows}x${shape.cols} ${id} tensor (${expected} bytes)`,
      );
    }
    const { rows, cols } = shape;
    const y = decodeOutput(out, rows * cols);
    const zeroOf = (off: number) => (asym ? q[off + 2]! : 1 << (bits - 1));
    if (group) {
      const total = rows * (cols / group);
      for (let b = 0; b < total; b++) {
        const qo = b * blockBytes;
        decodeIntCodes(q, qo + head, group, readScale(q, qo), zeroOf(qo), bits, y, b * group);
      }
    } else if (granularity === "channel") {
      const rowBytes = head + codeBytes(cols);
      for (let r = 0; r < rows; r++) {
        const qo = r * rowBytes;
        decodeIntCodes(q, qo + head, cols, readScale(q, qo), zeroOf(qo), bits, y, r * cols);
      }
    } else {
      const scale = readScale(q, 0);
      const zero = zeroOf(0);
      const rowBytes = codeBytes(cols);
      for (let r = 0; r < rows; r++) decodeIntCodes(q, head + r * rowBytes, cols, scale, zero, bits, y, r * cols);
    }
    return y;
  };

  return {
    id,
    family: "int",
    description,
    // Per-channel and per-tensor formats have no fixed block: 0 here, encodedBytes(shape) gives the size.
    blockWeights: group,
    blockBytes,
    checkRowLength,
    encodedBytes,
    encode,
    decode,
  };
}

/** Every plain integer format: bits 8/4/3/2 x symmetric/asymmetric x tensor/channel/g32/g64/g128. */
export const PLAIN_FORMATS: QuantFormat[] = INT_BITS.flatMap((bits) =>
  [false, true].flatMap((asym) => INT_GRANULARITIES.map((granularity) => makeIntFormat({ bits, asym, granularity }))),
);

/** The format for a spec (the same record PLAIN_FORMATS holds). */
export function intFormat(spec: IntSpec): QuantFormat {
  const id = intFormatId(spec);
  return PLAIN_FORMATS.find((f) => f.id === id)!;
}
