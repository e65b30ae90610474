/**
 * bitsandbytes-style formats: LLM.int8 (row-wise absmax int8), NF4 and FP4 (4-bit codes in blocks of 64 with an
 * absmax per block), and their double-quantized variants (bitsandbytes' compress_statistics=True).
 *
 * Ports of bitsandbytes' CUDA reference (csrc kernels: kQuantizeBlockwise with dQuantizeNF4 / dQuantizeFP4 /
 * dQuantize, kDequantizeBlockwise with dDequantizeNF4 / dDequantizeFP4Tree, and the default backend's
 * int8_vectorwise_quant / int8_vectorwise_dequant). Every C float operation is one Math.fround-rounded float32
 * operation in the same order, and the decision-tree constants are the float32 values of bitsandbytes' literals.
 *
 * ## NF4 / FP4 (ids "nf4", "fp4"), blocks of 64
 * As bitsandbytes does, the blocks run over the FLATTENED tensor (row-major): block k holds elements
 * [64k, 64k + 64), so when cols is not a multiple of 64 a block spans two rows; the last block may be short.
 *   absmax = max |x| over the block (float32)
 *   inv    = fround(1 / absmax)                     (the only division per block; 0 for an all-zero block)
 *   code   = dQuantizeNF4(fround(x * inv)) or dQuantizeFP4(fround(x * inv))   (decision trees below)
 *   x'     = fround(CODE[code] * absmax)
 * Deviation: for an all-zero block bitsandbytes computes 1/0 = inf and 0 * inf = NaN, which falls through its
 * trees to code 0b0000 (NF4 -1.0, dequantized to -0); we use inv = 0 and write the code of 0.0 (NF4 0b0111,
 * FP4 0b0000). The values are the same zeros; the bytes of such blocks differ.
 *
 * Packing (as bitsandbytes packs them): element e of the flattened tensor is in byte e >> 1, the HIGH nibble
 * for even e, the low nibble for odd e; an odd element count leaves the last low nibble 0.
 *
 * Layout of "nf4" / "fp4" (little-endian), nb = ceil(n / 64), n = rows * cols:
 *   @0            absmax  f32[nb]          (bitsandbytes' quant_state.absmax)
 *   @4*nb         codes   u8[ceil(n / 2)]  (bitsandbytes' packed weight)
 *   -> 4 + 32/64 = 4.5 bits per weight when 64 divides n.
 *
 * ## Double quantization ("nf4-dq", "fp4-dq"): bitsandbytes' compress_statistics
 * After the 4-bit pass (the codes are chosen with the exact absmax), the absmax values are compressed:
 *   offset  = mean of absmax                     (fixed order, see absmaxMean)
 *   c[k]    = fround(absmax[k] - offset)
 *   blocks of 256 c values (quantize_blockwise(blocksize=256) with the signed dynamic map DYNAMIC_MAP):
 *     absmax2 = max |c| over the block; inv2 = fround(1 / absmax2) (0 for an all-zero block)
 *     qabs[k] = dQuantize(DYNAMIC_MAP, fround(c[k] * inv2))       (u8)
 * and dequantized as bitsandbytes does: absmax'[k] = fround(fround(DYNAMIC_MAP[qabs[k]] * absmax2) + offset),
 * then x' = fround(CODE[code] * absmax'[k]).
 * Layout (little-endian), nb2 = ceil(nb / 256):
 *   @0                 offset   f32
 *   @4                 absmax2  f32[nb2]
 *   @4 + 4*nb2         qabs     u8[nb]
 *   @4 + 4*nb2 + nb    codes    u8[ceil(n / 2)]
 *   -> 4 + 8/64 + 32/(64*256) + 32/n bits per weight when 64*256 divides n (4.12695... + 32/n).
 * Not stored (and not counted): the 16-entry NF4/FP4 table and the 256-entry dynamic map, constants of the
 * format (bitsandbytes serializes them next to each tensor, as quant_map and nested_quant_map, along with a
 * JSON quant_state).
 *
 * ## LLM.int8 ("llm-int8")
 * Row-wise absmax int8 as bitsandbytes' Int8Params / int8_vectorwise_quant store weights:
 *   SCB = max |x| over the row (f32); q = round(fround(x * fround(127 / SCB))) in [-127, 127] (0 for a zero row:
 *   bitsandbytes would compute 127/0); x' = fround(fround(q * SCB) * fround(1/127)) (int8_vectorwise_dequant).
 * Layout: @0 SCB f32[rows] | @4*rows q i8[rows*cols] (two's complement, row-major) -> 8 + 32/cols bits per weight.
 * (LLM.int8's outlier threshold applies to activations at matmul time; the stored weights are all int8.)
 */
import { decodeOutput, encodeOutput, type EncodeOptions, type MatrixShape, type QuantFormat, type RowLengthCheck } from "./format.ts";
import { assertFinite, assertShape, QuantInputError } from "./errors.ts";
import { bitsToF32, f32Bits } from "../formats/float-bits.ts";
import { nearestInt } from "./ggml/common.ts";

const fr = Math.fround;

export const BNB_BLOCK = 64;
export const BNB_DQ_BLOCK = 256;

// ---------------------------------------------------------------------------------------------------------
// Code tables

/** bitsandbytes' NF4 table (dDequantizeNF4 / get_4bit_type("nf4")), index = 4-bit code, float32. */
export const NF4_CODE = new Float32Array([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * bitsandbytes' FP4 (e2m1, bias 3, normalized by its absmax 12) as dDequantizeFP4Tree decodes it: bit 3 is the
 * sign, bits 0-2 select |value| from [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 (the float32 literals of the tree).
 */
const FP4_MAGNITUDE = [0.0, 5.208333333e-3, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25];
export const FP4_CODE = new Float32Array(16);
for (let c = 0; c < 16; c++) FP4_CODE[c] = (c & 8 ? -1 : 1) * fr(FP4_MAGNITUDE[c & 7]!);

// The decision-tree pivots of dQuantizeNF4 / dQuantizeFP4, as float32 (C float literals).
const NF4_T = {
  root: fr(0.03979014977812767),
  p1: fr(0.3893125355243683),
  p11: fr(0.6427869200706482),
  p111: fr(0.8614784181118011),
  p110: fr(0.5016634166240692),
  p10: fr(0.2035212516784668),
  p101: fr(0.2920137718319893),
  p100: fr(0.1202552504837513),
  p0: fr(-0.33967943489551544),
  p01: fr(-0.13791173323988914),
  p011: fr(-0.045525018125772476),
  p010: fr(-0.23460740596055984),
  p00: fr(-0.6106329262256622),
  p001: fr(-0.4599952697753906),
  p000: fr(-0.8480964004993439),
};
const FP4_T = {
  root: fr(0.29166667),
  p1: fr(0.583333),
  p11: fr(0.8333333),
  p10: fr(0.4166667),
  p0: fr(0.0859375),
  p01: fr(0.20833333),
  p00: fr(0.00260417),
};

/**
 * dQuantizeNF4: the NF4 code of a float32 x in [-1, 1]. Each pivot is the midpoint of two neighbouring codes
 * (rounded to float32), and every test is a strict `x > pivot`, so a value exactly on a pivot takes the LOWER
 * code; within ~1e-8 of a midpoint the float32 pivot may differ from the exact midpoint.
 */
export function quantizeNf4(x: number): number {
  const t = NF4_T;
  if (x > t.root) {
    if (x > t.p1) {
      if (x > t.p11) return x > t.p111 ? 0b1111 : 0b1110;
      return x > t.p110 ? 0b1101 : 0b1100;
    }
    if (x > t.p10) return x > t.p101 ? 0b1011 : 0b1010;
    return x > t.p100 ? 0b1001 : 0b1000;
  }
  if (x > t.p0) {
    if (x > t.p01) return x > t.p011 ? 0b0111 : 0b0110;
    return x > t.p010 ? 0b0101 : 0b0100;
  }
  if (x > t.p00) return x > t.p001 ? 0b0011 : 0b0010;
  return x > t.p000 ? 0b0001 : 0b0000;
}

/**
 * dQuantizeFP4: sign bit from x < 0, then a tree on |x| with strict `>` tests, so a magnitude exactly on a
 * pivot takes the code of the SMALLER magnitude. Two pivots are not the exact midpoints: 0.583333 (midpoint
 * 0.5833333...) and 0.00260417 (midpoint 0.00260416...), so magnitudes within ~4e-7 of those go the other way.
 */
export function quantizeFp4(x: number): number {
  const t = FP4_T;
  const sign = x < 0 ? 0b1000 : 0;
  const a = Math.abs(x);
  if (a > t.root) {
    if (a > t.p1) return (a > t.p11 ? 0b0011 : 0b0010) + sign;
    return (a > t.p10 ? 0b0101 : 0b0100) + sign;
  }
  if (a > t.p0) return (a > t.p01 ? 0b0111 : 0b0110) + sign;
  return (a > t.p00 ? 0b0001 : 0b0000) + sign;
}

/**
 * bitsandbytes' signed dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)), the
 * code of quantize_blockwise, sorted ascending: for i = 0..6, the midpoints of torch.linspace(0.1, 1, 2^i + 1)
 * (float32) times 10^(i-6) (a float32 product with fround(10^(i-6))) and their negatives, then 0 and 1.
 * linspace is computed as torch's CPU kernel does in its compiled form: step = fround(fround(1 - 0.1) / (steps-1));
 * element i of the first half is start + step*i, of the second half end - step*(steps-1-i), each with ONE
 * rounding to float32 (the compiler fuses the multiply-add). Rounding the product separately gives 42 entries
 * that differ by an ulp from what bitsandbytes uses; this rule reproduces all 256 (checked against a published
 * dump of bitsandbytes' map; spot values in bnb.test.ts).
 */
export const DYNAMIC_MAP: Float32Array = createDynamicMap();

function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const s = fr(start);
  const e = fr(end);
  const step = fr(fr(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const out = new Float32Array(steps);
  for (let i = 0; i < steps; i++) {
    // step * i is exact in double (24-bit step, i < 128) and so is the sum, so fround rounds once, like an fma.
    out[i] = i < halfway ? fr(s + step * i) : fr(e - step * (steps - i - 1));
  }
  return out;
}

function createDynamicMap(): Float32Array {
  const data: number[] = [];
  const maxExponentBits = 7;
  for (let i = 0; i < maxExponentBits; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = fr(10 ** (i - (maxExponentBits - 1)));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = fr(fr(b[k]! + b[k + 1]!) / 2);
      data.push(fr(scale * mean), -fr(scale * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  return new Float32Array(data);
}

/** dQuantize<0>: the code (index into the sorted 256-entry map) nearest to x, as bitsandbytes' binary search picks it. */
export function quantizeDynamic(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[255]!;
  if (lowerPivot === 0) lower = code[0]!;
  if (x > val) {
    const midpoint = fr(fr(upper + val) * 0.5);
    return x > midpoint ? upperPivot : pivot;
  }
  const midpoint = fr(fr(lower + val) * 0.5);
  return x < midpoint ? lowerPivot : pivot;
}

// ---------------------------------------------------------------------------------------------------------
// Little-endian f32 at any byte offset

function writeF32(out: Uint8Array, off: number, v: number): void {
  const u = f32Bits(v);
  out[off] = u & 0xff;
  out[off + 1] = (u >>> 8) & 0xff;
  out[off + 2] = (u >>> 16) & 0xff;
  out[off + 3] = u >>> 24;
}
function readF32(q: Uint8Array, off: number): number {
  return bitsToF32((q[off]! | (q[off + 1]! << 8) | (q[off + 2]! << 16) | (q[off + 3]! << 24)) >>> 0);
}

// ---------------------------------------------------------------------------------------------------------
// 4-bit blocks (one block = one call; e0 is the flat index of the block's first element)

export type FourBitType = "nf4" | "fp4";

/** max |x| over x[xo, xo+n). */
export function blockAbsmax(x: Float32Array, xo: number, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(x[xo + i]!);
    if (a > m) m = a;
  }
  return m;
}

/** Quantize the block x[e0, e0+n) with its absmax into the packed codes at codes[co...] (zeroed). */
export function encode4bitBlock(
  type: FourBitType,
  x: Float32Array,
  e0: number,
  n: number,
  absmax: number,
  codes: Uint8Array,
  co: number,
): void {
  const inv = absmax === 0 ? 0 : fr(1 / absmax);
  for (let i = 0; i < n; i++) {
    const e = e0 + i;
    const v = fr(x[e]! * inv);
    const c = type === "nf4" ? quantizeNf4(v) : quantizeFp4(v);
    const byte = co + (e >>> 1);
    codes[byte] = codes[byte]! | ((e & 1) === 0 ? c << 4 : c);
  }
}

/** Dequantize the block [e0, e0+n) of the packed codes at codes[co...] with the (possibly reconstructed) absmax. */
export function decode4bitBlock(
  type: FourBitType,
  codes: Uint8Array,
  co: number,
  e0: number,
  n: number,
  absmax: number,
  y: Float32Array,
): void {
  const table = type === "nf4" ? NF4_CODE : FP4_CODE;
  for (let i = 0; i < n; i++) {
    const e = e0 + i;
    const b = codes[co + (e >>> 1)]!;
    const c = (e & 1) === 0 ? b >>> 4 : b & 0x0f;
    y[e] = fr(table[c]! * absmax);
  }
}

/**
 * The double-quantization offset: the mean of the absmax values in a fixed float32 order (torch's mean is
 * not reproducible to the bit): partial sums over consecutive chunks of 256 values, each summed from first to
 * last, then those partial sums added first to last, then fround(sum / count). 0 for no values.
 */
export function absmaxMean(absmax: Float32Array): number {
  const n = absmax.length;
  if (n === 0) return 0;
  let total = 0;
  for (let c = 0; c < n; c += BNB_DQ_BLOCK) {
    let part = 0;
    const end = Math.min(n, c + BNB_DQ_BLOCK);
    for (let k = c; k < end; k++) part = fr(part + absmax[k]!);
    total = fr(total + part);
  }
  return fr(total / n);
}

/**
 * Compress absmax[k0, k0+m) (m <= 256, one double-quantization block) around `offset`: writes the u8 codes to
 * qabs[qo + (k - k0)] and returns the block's absmax2.
 */
export function encodeAbsmaxBlock(
  absmax: Float32Array,
  k0: number,
  m: number,
  offset: number,
  qabs: Uint8Array,
  qo: number,
): number {
  let absmax2 = 0;
  for (let i = 0; i < m; i++) {
    const a = Math.abs(fr(absmax[k0 + i]! - offset));
    if (a > absmax2) absmax2 = a;
  }
  const inv2 = absmax2 === 0 ? 0 : fr(1 / absmax2);
  for (let i = 0; i < m; i++) {
    const c = fr(absmax[k0 + i]! - offset);
    qabs[qo + i] = quantizeDynamic(DYNAMIC_MAP, fr(c * inv2));
  }
  return absmax2;
}

/** The absmax a double-quantized block decodes with. */
export function decodeAbsmax(qabs: number, absmax2: number, offset: number): number {
  return fr(fr(DYNAMIC_MAP[qabs]! * absmax2) + offset);
}

// ---------------------------------------------------------------------------------------------------------
// Format records

const checkAny = (): RowLengthCheck => ({ ok: true });

function checkedDecodeLength(id: string, q: Uint8Array, shape: MatrixShape, expected: number): void {
  if (q.length !== expected) {
    throw new QuantInputError(
      "shape",
      `${q.length} bytes do not hold a ${shape.rows}x${shape.cols} ${id} tensor (${expected} bytes)`,
    );
  }
}

interface FourBitLayout {
  n: number;
  nb: number;
  nb2: number;
  /** Byte offsets; -1 where the layout has no such part. */
  absmax: number;
  offset: number;
  absmax2: number;
  qabs: number;
  codes: number;
  total: number;
}

function fourBitLayout(shape: MatrixShape, dq: boolean): FourBitLayout {
  const n = shape.rows * shape.cols;
  const nb = Math.ceil(n / BNB_BLOCK);
  const codeBytes = Math.ceil(n / 2);
  if (!dq) return { n, nb, nb2: 0, absmax: 0, offset: -1, absmax2: -1, qabs: -1, codes: 4 * nb, total: 4 * nb + codeBytes };
  const nb2 = Math.ceil(nb / BNB_DQ_BLOCK);
  const qabs = 4 + 4 * nb2;
  return { n, nb, nb2, absmax: -1, offset: 0, absmax2: 4, qabs, codes: qabs + nb, total: qabs + nb + codeBytes };
}

function makeFourBitFormat(type: FourBitType, dq: boolean): QuantFormat {
  const id = dq ? `${type}-dq` : type;
  const name = type === "nf4" ? "NF4 (4-bit NormalFloat)" : "FP4 (bitsandbytes e2m1)";
  const description = dq
    ? `bitsandbytes ${name} codes, blocks of 64 with double-quantized absmax (u8 dynamic code per block, f32 scale per 256 blocks, f32 offset)`
    : `bitsandbytes ${name} codes, blocks of 64 (over the flattened tensor) with an f32 absmax each`;

  const encode = (x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Uint8Array => {
    const tensor = opts?.tensorName;
    assertShape(x, shape, tensor);
    assertFinite(x, shape, tensor);
    const L = fourBitLayout(shape, dq);
    // encode4bitBlock ORs codes into zeroed bytes.
    const out = encodeOutput(opts?.out, L.total, true, tensor);
    const absmax = new Float32Array(L.nb);
    for (let k = 0; k < L.nb; k++) {
      const e0 = k * BNB_BLOCK;
      const m = Math.min(BNB_BLOCK, L.n - e0);
      absmax[k] = blockAbsmax(x, e0, m);
      encode4bitBlock(type, x, e0, m, absmax[k]!, out, L.codes);
    }
    if (!dq) {
      for (let k = 0; k < L.nb; k++) writeF32(out, L.absmax + 4 * k, absmax[k]!);
      return out;
    }
    const offset = absmaxMean(absmax);
    writeF32(out, L.offset, offset);
    for (let j = 0; j < L.nb2; j++) {
      const k0 = j * BNB_DQ_BLOCK;
      const m = Math.min(BNB_DQ_BLOCK, L.nb - k0);
      writeF32(out, L.absmax2 + 4 * j, encodeAbsmaxBlock(absmax, k0, m, offset, out, L.qabs + k0));
    }
    return out;
  };

  const decode = (q: Uint8Array, shape: MatrixShape, out?: Float32Array): Float32Array => {
    const L = fourBitLayout(shape, dq);
    checkedDecodeLength(id, q, shape, L.total);
    const y = decodeOutput(out, L.n);
    const offset = dq ? readF32(q, L.offset) : 0;
    for (let k = 0; k < L.nb; k++) {
      const e0 = k * BNB_BLOCK;
      const m = Math.min(BNB_BLOCK, L.n - e0);
      const a = dq
        ? decodeAbsmax(q[L.qabs + k]!, readF32(q, L.absmax2 + 4 * Math.floor(k / BNB_DQ_BLOCK)), offset)
        : readF32(q, L.absmax + 4 * k);
      decode4bitBlock(type, q, L.codes, e0, m, a, y);
    }
    return y;
  };

  return {
    id,
    family: "bnb",
    description,
    blockWeights: BNB_BLOCK,
    // Per block of 64: 32 code bytes + the f32 absmax, or + the u8 code of the absmax (double quantization;
    // plus 4 bytes per 256 blocks and 4 per tensor, which encodedBytes counts).
    blockBytes: dq ? 33 : 36,
    checkRowLength: checkAny,
    encodedBytes: (shape) => fourBitLayout(shape, dq).total,
    encode,
    decode,
  };
}

/** fround(1/127), bitsandbytes' int8_vectorwise_dequant constant 7.874015718698502e-3. */
const RCP_127 = fr(7.874015718698502e-3);

/** LLM.int8: quantize one row x[xo, xo+n) to int8 codes at out[oo...]; returns the row's absmax (SCB). */
export function encodeInt8Row(x: Float32Array, xo: number, n: number, out: Uint8Array, oo: number): number {
  const scb = blockAbsmax(x, xo, n);
  const scale = scb === 0 ? 0 : fr(127 / scb);
  for (let i = 0; i < n; i++) {
    let q = nearestInt(fr(x[xo + i]! * scale));
    if (q > 127) q = 127;
    if (q < -127) q = -127;
    out[oo + i] = q & 0xff;
  }
  return scb;
}

/** LLM.int8: dequantize one row of int8 codes with its SCB. */
export function decodeInt8Row(q: Uint8Array, qo: number, n: number, scb: number, y: Float32Array, yo: number): void {
  for (let i = 0; i < n; i++) {
    const v = (q[qo + i]! << 24) >> 24; // int8
    y[yo + i] = fr(fr(v * scb) * RCP_127);
  }
}

function makeLlmInt8(): QuantFormat {
  const id = "llm-int8";
  const encodedBytes = ({ rows, cols }: MatrixShape) => rows * (4 + cols);
  return {
    id,
    family: "bnb",
    description: "bitsandbytes LLM.int8 weights: int8 per row with the row's absmax (f32 SCB), round(x * 127 / absmax)",
    // One block per row: no fixed block; encodedBytes(shape) gives the size.
    blockWeights: 0,
    blockBytes: 0,
    checkRowLength: checkAny,
    encodedBytes,
    encode(x, shape, opts) {
      const tensor = opts?.tensorName;
      assertShape(x, shape, tensor);
      assertFinite(x, shape, tensor);
      const { rows, cols } = shape;
      const out = encodeOutput(opts?.out, encodedBytes(shape), false, tensor);
      for (let r = 0; r < rows; r++) writeF32(out, 4 * r, encodeInt8Row(x, r * cols, cols, out, 4 * rows + r * cols));
      return out;
    },
    decode(q, shape, out) {
      checkedDecodeLength(id, q, shape, encodedBytes(shape));
      const { rows, cols } = shape;
      const y = decodeOutput(out, rows * cols);
      for (let r = 0; r < rows; r++) decodeInt8Row(q, 4 * rows + r * cols, cols, readF32(q, 4 * r), y, r * cols);
      return y;
    },
  };
}

export const BNB_FORMATS: QuantFormat[] = [
  makeLlmInt8(),
  makeFourBitFormat("nf4", false),
  makeFourBitFormat("nf4", true),
  makeFourBitFormat("fp4", false),
  makeFourBitFormat("fp4", true),
];
