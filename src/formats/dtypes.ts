/**
 * The element types safetensors stores, their sizes, and exact decoding to float32 for analysis.
 *
 * Bytes are always little-endian (the safetensors rule), whatever the host's order.
 * Decoding is exact wherever float32 can hold the value:
 *  - F32, F16, BF16, F8_E4M3, F8_E5M2, I16, I8, U8: every value is a float32, bit for bit
 *    (subnormals, +-0, +-inf; NaN stays NaN, its payload is not kept except for F32 and BF16);
 *  - F64, I64, I32: rounded to the nearest float32, ties to even (a float32 cannot hold them all);
 *    I64 is rounded once, from the exact integer, not via a double;
 *  - BOOL: 0 or 1 (any non-zero byte is true).
 * 8- and 16-bit floats decode through lookup tables built once from the scalar conversions.
 */
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "./float-bits.ts";
import { f32ToF8e4m3, f32ToF8e5m2, f8e4m3ToF32, f8e5m2ToF32 } from "./float8.ts";

export const DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8", "BOOL"] as const;
export type DType = (typeof DTYPES)[number];

/**
 * What a tensor's bytes are: a safetensors DType, or the name of a ggml type (src/formats/gguf.ts
 * GGML_TYPES: "Q4_K", "Q8_0", "IQ4_NL", ...) for a tensor of a GGUF file. GGUF's F32, F16, BF16, F64 and
 * I8..I64 have the same names and bytes as the DTypes. src/formats/tensor-data.ts sizes and decodes both.
 */
export type TensorDType = DType | (string & {});

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isDType(s: string): s is DType {
  return Object.hasOwn(DTYPE_BYTES, s);
}

/** Whether typed arrays on this host store their elements little-endian (as every file format here does). */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let f16Table: Float32Array | undefined;
let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

function table(size: number, decode: (code: number) => number): Float32Array {
  const t = new Float32Array(size);
  for (let code = 0; code < size; code++) t[code] = decode(code);
  return t;
}

/**
 * F32 bytes as float32 values without a copy (the values alias the bytes), when the host is
 * little-endian and the bytes are 4-byte aligned; undefined otherwise (use decodeToF32).
 * Streaming readers use it on bytes they own: copying every chunk halves their speed.
 */
export function f32View(bytes: Uint8Array): Float32Array | undefined {
  if (!LITTLE_ENDIAN_HOST || bytes.byteOffset % 4 !== 0 || bytes.byteLength % 4 !== 0) return undefined;
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/**
 * The bytes as a typed array of host-order elements without copying when alignment and byte order
 * allow it; otherwise an aligned copy (byte-swapped on a big-endian host).
 */
function hostView<T>(bytes: Uint8Array, elementBytes: number, make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => T): T {
  const n = bytes.byteLength / elementBytes;
  if (LITTLE_ENDIAN_HOST && bytes.byteOffset % elementBytes === 0) return make(bytes.buffer, bytes.byteOffset, n);
  const copy = bytes.slice();
  if (!LITTLE_ENDIAN_HOST) swapBytes(copy, elementBytes);
  return make(copy.buffer, 0, n);
}

function swapBytes(bytes: Uint8Array, elementBytes: number): void {
  if (elementBytes === 1) return;
  for (let i = 0; i < bytes.length; i += elementBytes) bytes.subarray(i, i + elementBytes).reverse();
}

/** 2^32, to assemble 64-bit integers from two 32-bit halves. */
const TWO_POW_32 = 4294967296;

/** The float32 nearest to the signed 64-bit integer hi * 2^32 + lo (lo unsigned), ties to even. */
function i64ToF32(hi: number, lo: number): number {
  // |value| < 2^53: the double is exact, so one rounding to float32.
  if (hi >= -0x200000 && hi < 0x200000) return Math.fround(hi * TWO_POW_32 + lo);
  // Otherwise round to 53 bits "to odd" (truncate, set the last bit if anything was dropped):
  // a later round-to-nearest to 24 bits then equals a direct one.
  let v = (BigInt(hi) << 32n) | BigInt(lo);
  const negative = v < 0n;
  if (negative) v = -v;
  const drop = BigInt(v.toString(2).length - 53);
  let m = v >> drop;
  if (m << drop !== v) m |= 1n;
  const d = Number(m) * 2 ** Number(drop);
  return Math.fround(negative ? -d : d);
}

/**
 * Decode `bytes` (a whole number of `dtype` elements, little-endian) to float32.
 * Writes into `out` when given (it must be long enough) and returns the filled part.
 */
export function decodeToF32(dtype: DType, bytes: Uint8Array): Float32Array<ArrayBuffer>;
export function decodeToF32<B extends ArrayBufferLike>(dtype: DType, bytes: Uint8Array, out: Float32Array<B>): Float32Array<B>;
export function decodeToF32(dtype: DType, bytes: Uint8Array, out?: Float32Array): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes are not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  const n = bytes.byteLength / size;
  if (out && out.length < n) throw new RangeError(`output holds ${out.length} values, ${n} needed`);
  const dst = out ? out.subarray(0, n) : new Float32Array(n);
  switch (dtype) {
    case "F32":
      if (LITTLE_ENDIAN_HOST) new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(bytes);
      else dst.set(hostView(bytes, 4, (b, o, l) => new Float32Array(b, o, l)));
      break;
    case "F64":
      dst.set(hostView(bytes, 8, (b, o, l) => new Float64Array(b, o, l))); // set() rounds to nearest even
      break;
    case "F16": {
      const lut = (f16Table ??= table(65536, f16BitsToF32));
      const codes = hostView(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      for (let i = 0; i < n; i++) dst[i] = lut[codes[i]!]!;
      break;
    }
    case "BF16": {
      // bf16 is the top half of a float32: place the bits, which keeps NaN payloads too.
      const codes = hostView(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = codes[i]! << 16;
      break;
    }
    case "F8_E4M3": {
      const lut = (e4m3Table ??= table(256, f8e4m3ToF32));
      for (let i = 0; i < n; i++) dst[i] = lut[bytes[i]!]!;
      break;
    }
    case "F8_E5M2": {
      const lut = (e5m2Table ??= table(256, f8e5m2ToF32));
      for (let i = 0; i < n; i++) dst[i] = lut[bytes[i]!]!;
      break;
    }
    case "I64": {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) dst[i] = i64ToF32(view.getInt32(8 * i + 4, true), view.getUint32(8 * i, true));
      break;
    }
    case "I32":
      dst.set(hostView(bytes, 4, (b, o, l) => new Int32Array(b, o, l))); // exact int -> nearest float32
      break;
    case "I16":
      dst.set(hostView(bytes, 2, (b, o, l) => new Int16Array(b, o, l)));
      break;
    case "I8":
      dst.set(new Int8Array(bytes.buffer, bytes.byteOffset, n));
      break;
    case "U8":
      dst.set(bytes);
      break;
    case "BOOL":
      for (let i = 0; i < n; i++) dst[i] = bytes[i] ? 1 : 0;
      break;
  }
  return dst;
}

/** Round to an integer, ties to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  I64: [-(2 ** 63), 2 ** 63 - 1],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-32768, 32767],
  I8: [-128, 127],
  U8: [0, 255],
};

function toInteger(dtype: DType, v: number, index: number): number {
  const r = Number.isFinite(v) ? roundHalfEven(v) : v;
  const [lo, hi] = INT_RANGE[dtype]!;
  // For I64, 2^63 - 1 is 2^63 as a double: accept only values strictly below 2^63.
  if (!(r >= lo && (dtype === "I64" ? r < 2 ** 63 : r <= hi))) {
    throw new RangeError(`value ${v} at index ${index} does not fit ${dtype}`);
  }
  return r;
}

/** Host-order elements -> little-endian bytes (a no-op view on little-endian hosts). */
function littleEndianBytes(elements: ArrayBufferView<ArrayBuffer>, elementBytes: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(elements.buffer, elements.byteOffset, elements.byteLength);
  if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, elementBytes);
  return bytes;
}

/**
 * Encode numbers as `dtype` little-endian bytes (the safetensors writer and the tests use it).
 * Floats: each value is rounded to float32 first (F64 keeps the double as is), then to the target
 * with round to nearest, ties to even; F16/BF16/E5M2 overflow to +-inf, F8_E4M3 gives NaN above 448
 * (torch's float8_e4m3fn cast). Integers: rounded to nearest (ties to even); a value outside the
 * type's range, or NaN/inf, throws a RangeError rather than wrapping. BOOL: non-zero (and NaN) -> 1.
 */
export function encodeFromF32(dtype: DType, values: ArrayLike<number>): Uint8Array<ArrayBuffer> {
  const n = values.length;
  switch (dtype) {
    case "F64":
      return littleEndianBytes(Float64Array.from(values), 8);
    case "F32":
      return littleEndianBytes(Float32Array.from(values), 4);
    case "F16": {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(values[i]!);
      return littleEndianBytes(out, 2);
    }
    case "BF16": {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToBf16Bits(values[i]!);
      return littleEndianBytes(out, 2);
    }
    case "F8_E4M3": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToF8e4m3(values[i]!);
      return out;
    }
    case "F8_E5M2": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToF8e5m2(values[i]!);
      return out;
    }
    case "I64": {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(toInteger(dtype, values[i]!, i));
      return littleEndianBytes(out, 8);
    }
    case "I32": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = toInteger(dtype, values[i]!, i);
      return littleEndianBytes(out, 4);
    }
    case "I16": {
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = toInteger(dtype, values[i]!, i);
      return littleEndianBytes(out, 2);
    }
    case "I8": {
      const out = new Int8Array(n);
      for (let i = 0; i < n; i++) out[i] = toInteger(dtype, values[i]!, i);
      return littleEndianBytes(out, 1);
    }
    case "U8": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = toInteger(dtype, values[i]!, i);
      return out;
    }
    case "BOOL": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = values[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}
