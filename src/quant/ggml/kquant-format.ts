/**
 * What the five K-quant formats (q2_K..q6_K) share: 256-weight super-blocks, the row driver that
 * validates input and walks the blocks, the preallocated scratch, and the row-length fallback.
 *
 * Encoding follows ggml_quantize_chunk: without an importance matrix, quantize_<fmt> calls
 * quantize_row_<fmt>_ref on all rows (what llama-quantize does without --imatrix); with one it calls
 * quantize_row_<fmt>_impl row by row with quant_weights = the imatrix (the same vector for every row,
 * indexed by column). The _impl functions' own NULL-quant_weights branches (x^2 or av_x + |x| weights;
 * q2_K's _impl asserts non-NULL) are therefore never used by ggml_quantize_chunk, nor here.
 */
import { assertFinite, assertImatrix, assertShape, QuantInputError } from "../errors.ts";
import { bitsView, type BlocksDecoder, decodeInSpans, nearestInt } from "./common.ts";
import { qxLevelsLength, qxScratchLength } from "./kquant-search.ts";
import { decodeOutput, encodeOutput, type EncodeOptions, type MatrixShape, type QuantFormat, type RowLengthCheck } from "../format.ts";

/** QK_K: weights per super-block. */
export const QK_K = 256;

/** Per-call scratch for the block encoders (C keeps these on the stack of each quantize_row_*). */
export class KQuantScratch {
  /** The bits of the tensor being encoded (bitsView(x), for signedAbsMax). */
  readonly xBits: Int32Array;
  /** Levels of one super-block (uint8_t L[QK_K]: q2_K, q4_K, q5_K). */
  readonly L = new Uint8Array(QK_K);
  /** Levels of one super-block (int8_t L[QK_K]: q3_K, q6_K). */
  readonly L8 = new Int8Array(QK_K);
  /** make_qkx*_quants: one candidate's levels, and x - min of the sub-block. */
  readonly Laux = new Uint8Array(32);
  readonly xm = new Float32Array(32);
  /** make_qx_quants' scratch (groups of 16): its candidates' levels, and x, w, w*x and sums as doubles. */
  readonly levels = new Float64Array(qxLevelsLength(16));
  readonly xw = new Float64Array(qxScratchLength(16));
  /** Weights of one sub-block. */
  readonly weights = new Float32Array(32);
  /** Sub-block scales, mins and weight sums (16 sub-blocks of 16 or 8 of 32). */
  readonly scales = new Float32Array(16);
  readonly scalesBits = bitsView(this.scales);
  readonly mins = new Float32Array(16);
  readonly sw = new Float32Array(16);
  /** Quantized sub-block scales and mins (imatrix paths). */
  readonly Ls = new Uint8Array(16);
  readonly Lm = new Uint8Array(16);
  readonly Ls8 = new Int8Array(16);

  constructor(x: Float32Array) {
    this.xBits = bitsView(x);
  }
}

/**
 * Encodes the super-block at x[xo..xo+256) into out[oo..oo+blockBytes). `qw` is the importance matrix
 * (imatrix encoders only) and qwo the column of the block's first weight.
 */
export type KBlockEncoder = (
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qwo: number,
  out: Uint8Array,
  oo: number,
  s: KQuantScratch,
) => void;


export interface KQuantSpec {
  id: string;
  ggmlType: number;
  blockBytes: number;
  description: string;
  /**
   * What llama.cpp quantizes a tensor to when its rows are not a multiple of 256 (src/llama-quant.cpp,
   * tensor_type_fallback); F16 when the row is not a multiple of 32 either.
   */
  fallback: string;
  encodeRef: KBlockEncoder;
  encodeImatrix: KBlockEncoder;
  /**
   * The loop over blocks is inside each decoder, so the per-block code is inlined into it (a call per block
   * through this shared type would be megamorphic).
   */
  decode: BlocksDecoder;
}

/**
 * The K-quants' last step for one sub-block: requantize its weights x[xo..xo+n) against the scale d and min m
 * the block stores, L[lo + i] = clamp(nearest_int((x + m) / d), lmin, lmax) - lmin. Formats without mins pass
 * m = 0 (x + 0 is x, or +0 for x = -0, which gives the same level). ggml skips a sub-block whose d is 0,
 * keeping the levels of the search, and so does this.
 */
export function requantizeSubBlock(
  x: Float32Array,
  xo: number,
  n: number,
  d: number,
  m: number,
  lmin: number,
  lmax: number,
  L: Uint8Array | Int8Array,
  lo: number,
): void {
  if (d === 0) return;
  const fr = Math.fround;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(fr(fr(x[xo + i]! + m) / d));
    L[lo + i] = (l < lmin ? lmin : l > lmax ? lmax : l) - lmin;
  }
}

/** Every 32-weight block format the K-quants fall back to (q4_0, q5_0, q5_1, q8_0) needs rows of 32. */
const FALLBACK_BLOCK = 32;

export function kRowLengthCheck(spec: KQuantSpec, cols: number): RowLengthCheck {
  if (Number.isInteger(cols) && cols > 0 && cols % QK_K === 0) return { ok: true };
  const fallback = cols > 0 && cols % FALLBACK_BLOCK === 0 ? spec.fallback : "f16";
  return {
    ok: false,
    reason:
      `rows of ${cols} weights are not a multiple of ${QK_K} (the ${spec.id} super-block); ` +
      `llama.cpp quantizes such a tensor as ${fallback}` +
      (fallback === "f16" ? ` (the row is not a multiple of ${FALLBACK_BLOCK} either)` : ""),
    fallback,
  };
}

function requireRowLength(spec: KQuantSpec, cols: number, tensor: string | undefined): void {
  const check = kRowLengthCheck(spec, cols);
  if (!check.ok) throw new QuantInputError("row-length", check.reason, { tensor, fallback: check.fallback });
}

export function makeKQuantFormat(spec: KQuantSpec): QuantFormat {
  const { blockBytes, encodeRef, encodeImatrix, decode: decodeBlocks } = spec;
  return {
    id: spec.id,
    family: "gguf",
    description: spec.description,
    blockWeights: QK_K,
    blockBytes,
    ggmlType: spec.ggmlType,
    checkRowLength: (cols: number) => kRowLengthCheck(spec, cols),
    // Rows of a length checkRowLength rejects are counted as if padded to whole super-blocks.
    encodedBytes: ({ rows, cols }: MatrixShape) => rows * Math.ceil(cols / QK_K) * blockBytes,

    encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Uint8Array {
      const tensor = opts?.tensorName;
      assertShape(x, shape, tensor);
      const { rows, cols } = shape;
      requireRowLength(spec, cols, tensor);
      assertFinite(x, shape, tensor);
      const imatrix = opts?.imatrix;
      if (imatrix) assertImatrix(imatrix, cols, tensor);
      const blocksPerRow = cols / QK_K;
      // Every block encoder stores all of its block's bytes.
      const out = encodeOutput(opts?.out, rows * blocksPerRow * blockBytes, false, tensor);
      const scratch = new KQuantScratch(x);
      const encodeBlock = imatrix ? encodeImatrix : encodeRef;
      const qw = imatrix ?? EMPTY;
      let oo = 0;
      for (let r = 0; r < rows; r++) {
        const rowStart = r * cols;
        for (let b = 0; b < blocksPerRow; b++) {
          encodeBlock(x, rowStart + b * QK_K, qw, b * QK_K, out, oo, scratch);
          oo += blockBytes;
        }
      }
      return out;
    },

    decode(q: Uint8Array, shape: MatrixShape, out?: Float32Array): Float32Array {
      const { rows, cols } = shape;
      requireRowLength(spec, cols, undefined);
      const blocks = rows * (cols / QK_K);
      if (q.length !== blocks * blockBytes) {
        throw new QuantInputError(
          "shape",
          `${q.length} bytes are not ${blocks} ${spec.id} blocks of ${blockBytes} bytes (${rows}x${cols})`,
        );
      }
      const y = decodeOutput(out, rows * cols);
      decodeInSpans(decodeBlocks, q, y, blocks, QK_K, blockBytes);
      return y;
    },
  };
}

const EMPTY = new Float32Array(0);
