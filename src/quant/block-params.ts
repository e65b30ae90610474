/**
 * The scale (and minimum) one weight decodes with, read back from the encoded bytes: what the heatmap's
 * hover shows next to a weight ("block 12, d = 0.0031, min = -0.04") and what the scale map draws.
 *
 * Every format decodes a weight as  y = scale * k + min  for an integer code k (min absent where the format
 * stores none: then y = scale * k, the code k already centred), except the bitsandbytes 4-bit formats whose
 * codes index a fixed table (y = table[k] * absmax: `scale` is the block's absmax). For K-quants `scale` and
 * `min` are the sub-block's effective values d*sc_j and -dmin*m_j, and `sub` says which sub-block.
 *
 * The byte offsets read here are the layouts written down next to each format's code (src/quant/ggml/
 * legacy.ts, q2_K.ts .. q6_K.ts, intq.ts, bnb.ts); block-params.test.ts checks every format's decoded values
 * against the scale and min read here, so a layout change that misses this file fails there.
 */
import { f16BitsToF32 } from "../formats/float-bits.ts";
import { DYNAMIC_MAP } from "./bnb.ts";
import { QuantInputError } from "./errors.ts";
import type { MatrixShape, QuantFormat } from "./format.ts";

export interface WeightBlock {
  /** Index of the weight's block in the tensor, in storage order (K-quants: the super-block). */
  index: number;
  /** Weights in that block (K-quants: 256). */
  size: number;
  /** K-quants: the sub-block (0..15 of 16 weights, or 0..7 of 32) that `scale` and `min` belong to. */
  sub?: number;
  /** Weights per sub-block (K-quants). */
  subSize?: number;
  scale: number;
  /** The value code 0 (or the zero point) decodes to, where the format stores one. */
  min?: number;
  /** What `scale` is in this format, for people: "d (fp16)", "absmax", ... */
  scaleName: string;
}

const u16 = (q: Uint8Array, o: number): number => q[o]! | (q[o + 1]! << 8);
const f16 = (q: Uint8Array, o: number): number => f16BitsToF32(u16(q, o));
const f32 = (q: Uint8Array, o: number): number => new DataView(q.buffer, q.byteOffset + o, 4).getFloat32(0, true);
const i8 = (v: number): number => (v << 24) >> 24;

type Reader = (q: Uint8Array, shape: MatrixShape, row: number, col: number) => WeightBlock;

/** Row-wise block formats: the block's first byte and index. */
function rowBlock(shape: MatrixShape, row: number, col: number, size: number, bytes: number) {
  const perRow = shape.cols / size;
  const index = row * perRow + Math.floor(col / size);
  return { index, at: index * bytes, within: col % size };
}

/** Legacy 32-weight blocks: d fp16 @0, then m fp16 @2 for the _1 types (legacy.ts layouts). */
function legacy(bytes: number, withMin: boolean): Reader {
  return (q, shape, row, col) => {
    const { index, at } = rowBlock(shape, row, col, 32, bytes);
    const block: WeightBlock = { index, size: 32, scale: f16(q, at), scaleName: "d (fp16 block scale)" };
    if (withMin) block.min = f16(q, at + 2);
    return block;
  };
}

/** q8_K: d f32 @0, 256 weights in 292 bytes. */
const q8K: Reader = (q, shape, row, col) => {
  const { index, at } = rowBlock(shape, row, col, 256, 292);
  return { index, size: 256, scale: f32(q, at), scaleName: "d (f32 block scale)" };
};

/** K-quants: super-block d (and dmin) times the sub-block's scale (and min); offsets from q2_K.ts .. q6_K.ts. */
function kquant(bytes: number, subSize: number, read: (q: Uint8Array, at: number, j: number) => { scale: number; min?: number }): Reader {
  return (q, shape, row, col) => {
    const { index, at, within } = rowBlock(shape, row, col, 256, bytes);
    const sub = Math.floor(within / subSize);
    return { index, size: 256, sub, subSize, ...read(q, at, sub), scaleName: "d·scale of the sub-block" };
  };
}

/** get_scale_min_k4 (q4_K, q5_K): sub-block j's 6-bit scale and min in the 12 bytes at `sc`. */
function scaleMinK4(q: Uint8Array, sc: number, j: number): [number, number] {
  if (j < 4) return [q[sc + j]! & 63, q[sc + j + 4]! & 63];
  return [(q[sc + j + 4]! & 0xf) | ((q[sc + j - 4]! >> 6) << 4), (q[sc + j + 4]! >> 4) | ((q[sc + j]! >> 6) << 4)];
}

const K_READERS: Record<string, Reader> = {
  // q2_K: scales u8[16] @0 (low nibble scale, high nibble min), d @80, dmin @82.
  q2_K: kquant(84, 16, (q, at, j) => ({ scale: f16(q, at + 80) * (q[at + j]! & 0xf), min: -(f16(q, at + 82) * (q[at + j]! >> 4)) })),
  // q3_K: 6-bit scales at @96 (see q3_K.ts), d @108; y = d*(sc-32)*q.
  q3_K: kquant(110, 16, (q, at, j) => {
    const sc = at + 96;
    const low = j < 8 ? q[sc + j]! & 0xf : q[sc + j - 8]! >> 4;
    const scale = (low | (((q[sc + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
    return { scale: f16(q, at + 108) * scale };
  }),
  // q4_K / q5_K: d @0, dmin @2, packed 6-bit scales and mins @4.
  q4_K: kquant(144, 32, (q, at, j) => {
    const [s, m] = scaleMinK4(q, at + 4, j);
    return { scale: f16(q, at) * s, min: -(f16(q, at + 2) * m) };
  }),
  q5_K: kquant(176, 32, (q, at, j) => {
    const [s, m] = scaleMinK4(q, at + 4, j);
    return { scale: f16(q, at) * s, min: -(f16(q, at + 2) * m) };
  }),
  // q6_K: scales i8[16] @192, d @208.
  q6_K: kquant(210, 16, (q, at, j) => ({ scale: f16(q, at + 208) * i8(q[at + 192 + j]!) })),
};

const LEGACY_READERS: Record<string, Reader> = {
  q4_0: legacy(18, false),
  q4_1: legacy(20, true),
  q5_0: legacy(22, false),
  q5_1: legacy(24, true),
  q8_0: legacy(34, false),
  q8_K: q8K,
};

/** Plain integers (intq.ts): scale fp16 @0, zero point u8 @2 (asymmetric); per group, per row or once. */
function intReader(format: QuantFormat): Reader {
  const m = /^int(\d)(-asym)?-(tensor|channel|g(\d+))$/.exec(format.id);
  if (!m) throw new Error(`not a plain integer format id: ${format.id}`);
  const bits = Number(m[1]);
  const asym = m[2] !== undefined;
  const head = asym ? 3 : 2;
  const codeBytes = (cols: number) => Math.ceil((cols * bits) / 8);
  const params = (q: Uint8Array, at: number, index: number, size: number): WeightBlock => {
    const scale = f16(q, at);
    const block: WeightBlock = { index, size, scale, scaleName: "scale (fp16)" };
    // Symmetric codes carry the fixed zero point 2^(bits-1): nothing stored, no min.
    if (asym) block.min = Math.fround(-q[at + 2]! * scale);
    return block;
  };
  return (q, shape, row, col) => {
    if (m[3] === "tensor") return params(q, 0, 0, shape.rows * shape.cols);
    if (m[3] === "channel") return params(q, row * (head + codeBytes(shape.cols)), row, shape.cols);
    const group = Number(m[4]);
    const { index, at } = rowBlock(shape, row, col, group, head + (group * bits) / 8);
    return params(q, at, index, group);
  };
}

/** bitsandbytes (bnb.ts): absmax f32[nb] ahead of the codes; -dq: offset, absmax2 f32[nb2], qabs u8[nb]. */
function bnbReader(format: QuantFormat): Reader {
  if (format.id === "llm-int8") {
    return (q, shape, row) => ({ index: row, size: shape.cols, scale: f32(q, 4 * row), scaleName: "SCB (row absmax; y = q·SCB/127)" });
  }
  const dq = format.id.endsWith("-dq");
  return (q, shape, row, col) => {
    const n = shape.rows * shape.cols;
    const flat = row * shape.cols + col;
    const k = Math.floor(flat / 64);
    const size = Math.min(64, n - 64 * k);
    if (!dq) return { index: k, size, scale: f32(q, 4 * k), scaleName: "absmax of the 64-block" };
    const nb = Math.ceil(n / 64);
    const nb2 = Math.ceil(nb / 256);
    const offset = f32(q, 0);
    const absmax2 = f32(q, 4 + 4 * Math.floor(k / 256));
    const code = q[4 + 4 * nb2 + k]!;
    const fr = Math.fround;
    const scale = fr(fr(DYNAMIC_MAP[code]! * absmax2) + offset);
    return { index: k, size, scale, scaleName: "absmax of the 64-block (double-quantized)" };
  };
}

const readers = new Map<string, Reader>();

function readerOf(format: QuantFormat): Reader {
  let reader = readers.get(format.id);
  if (!reader) {
    reader =
      LEGACY_READERS[format.id] ??
      K_READERS[format.id] ??
      (format.family === "int" ? intReader(format) : format.family === "bnb" ? bnbReader(format) : undefined);
    if (!reader) throw new Error(`no block reader for format ${format.id}`);
    readers.set(format.id, reader);
  }
  return reader;
}

/**
 * The block of weight (row, col) of a tensor encoded with `format` (q: the whole tensor's bytes for formats
 * that encode the tensor at once; for row-wise formats any whole rows, `row` counted from the first of them).
 * Undefined for the casts, which have no block.
 */
export function weightBlock(
  format: QuantFormat,
  q: Uint8Array,
  shape: MatrixShape,
  row: number,
  col: number,
): WeightBlock | undefined {
  if (!(row >= 0 && row < shape.rows && col >= 0 && col < shape.cols)) {
    throw new QuantInputError("shape", `weight (${row}, ${col}) is outside the ${shape.rows}x${shape.cols} tensor`);
  }
  if (format.family === "cast") return undefined;
  return readerOf(format)(q, shape, row, col);
}
