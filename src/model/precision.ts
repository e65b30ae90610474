/**
 * A model's weights at one precision, ready for the graph builder. A precision is "f32" or any format id
 * (or alias) of the registry (src/quant/registry.ts): every matrix is encoded with that format's CPU
 * reference, or with the fallback its checkRowLength names (llama.cpp's choice) when the rows do not fit;
 * 1-D tensors (norms, biases) stay float32, as llama.cpp keeps them.
 *
 * How the encoded matrix reaches onnxruntime:
 *  - f16: the encoded bytes are the float16 initializer itself (Cast to float32 at run time);
 *  - int4/int8 with groups of 32/64/128 or per channel: repacked, code for code, into com.microsoft
 *    MatMulNBits (the lab's scales and zero points, so the kernel computes the same (u - z) * s);
 *  - everything else: decoded back to float32 and put into the graph, so differences come only from the
 *    quantizer.
 * weightBytes counts each tensor's encoded size once (the tied embedding/head once), i.e. what the model
 * takes stored in that format, not the float copies a graph may also hold.
 */
import { f16BitsToF32 } from "../formats/float-bits.ts";
import { isQuantInputError } from "../quant/errors.ts";
import type { QuantFormat } from "../quant/format.ts";
import { packCode, unpackCode } from "../quant/intq.ts";
import { calibratedBytes, calibratedMethod, calibratedQuantize, methodName, type CalibratedMethod } from "../quant/calibrated.ts";
import { calibrationStats } from "../quant/hessian.ts";
import { getFormat } from "../quant/registry.ts";
import { isQuantizable, ModelInputError } from "./architecture.ts";
import { awqFold, type AwqFolding } from "./awq-fold.ts";
import type { DecoderWeights, NamedTensor } from "./weights.ts";

export const FULL_PRECISION = "f32";

/** A matrix [out, in] the way the graph computes with it. */
export type LinearWeight =
  | { kind: "float"; values: Float32Array }
  | { kind: "float16"; raw: Uint8Array }
  | MatMulNBitsWeight;

/** com.microsoft MatMulNBits operands (onnxruntime contrib op): weight n, block b holds codes of k = b*blockSize.. */
export interface MatMulNBitsWeight {
  kind: "nbits";
  bits: 4 | 8;
  blockSize: number;
  /** [N, kBlocks, blockSize*bits/8]: codes in little-endian bit order (low nibble first). */
  packed: Uint8Array;
  /** [N * kBlocks] float32. */
  scales: Float32Array;
  /** Packed like the codes, [N * ceil(kBlocks*bits/8)]; absent for symmetric formats (zero point 2^(bits-1)). */
  zeroPoints?: Uint8Array;
}

export interface PreparedTensor {
  name: string;
  shape: number[];
  /** The format the tensor was stored in: the requested one, its fallback, or "f32". */
  format: string;
  /** Why the requested format did not take it (the format's checkRowLength reason). */
  fallbackReason?: string;
  /** Encoded size in bytes. */
  bytes: number;
  weight: LinearWeight;
  /** float32 values as the model sees them (decoded), for lookups such as the embedding's Gather. */
  decoded: Float32Array;
}

export interface TensorFallback {
  tensor: string;
  from: string;
  to: string;
  reason: string;
}

export interface PreparedWeights {
  precision: string;
  tensors: Map<string, PreparedTensor>;
  weightBytes: number;
  fallbacks: TensorFallback[];
}

export { calibratedMethod, type CalibratedMethod } from "../quant/calibrated.ts";

/** Throws ModelInputError unless `precision` is f32, a registry format or a calibrated method (gptq4, awq4-g32...). */
export function checkPrecision(precision: string): void {
  if (!calibratedMethod(precision)) precisionFormat(precision);
}

/** The registry format for a precision name, or undefined for f32; unknown names throw ModelInputError. */
export function precisionFormat(precision: string): QuantFormat | undefined {
  if (precision === FULL_PRECISION || precision === "fp32") return undefined;
  try {
    return getFormat(precision === "fp16" ? "f16" : precision);
  } catch (e) {
    throw new ModelInputError(`unknown precision "${precision}": use f32 or a format id (${(e as Error).message.replace(/^.*known formats: /, "")})`);
  }
}

export interface PrepareOptions {
  /** Carry int4/int8 group and per-channel formats as MatMulNBits (default true); false puts their decoded
   *  values into the graph like every other format (the same numbers, for checking the repacking). */
  matMulNBits?: boolean;
  /** Each linear layer's input on a calibration text (collectCalibration), for gptq/awq precisions. */
  calibration?: Map<string, Float32Array>;
  /** gptq/awq precisions: tensors kept float32 as given (what an export leaves unconverted), by name. */
  keepFloat?: ReadonlySet<string>;
  /** AWQ's scales folded into the norms and linear rows before each layer (default true); false divides them
   *  back out of the weights instead (the same function, for checking the folding; see awq-fold.ts). */
  foldAwqScales?: boolean;
}

/** Encodes every tensor of `weights` at `precision` (see the module comment). */
export function prepareWeights(weights: DecoderWeights, precision: string, options: PrepareOptions = {}): PreparedWeights {
  const calibrated = calibratedMethod(precision);
  if (calibrated) return prepareCalibrated(weights, precision, calibrated, options.calibration, options.keepFloat, options.foldAwqScales ?? true);
  const nbits = options.matMulNBits ?? true;
  const requested = precisionFormat(precision);
  const tensors = new Map<string, PreparedTensor>();
  const fallbacks: TensorFallback[] = [];
  let weightBytes = 0;
  for (const t of weights.values()) {
    const prepared = requested && isQuantizable(t.shape) ? encodeTensor(t, requested, fallbacks, nbits) : floatTensor(t);
    tensors.set(t.name, prepared);
    weightBytes += prepared.bytes;
  }
  return { precision: requested?.id ?? FULL_PRECISION, tensors, weightBytes, fallbacks };
}

/**
 * Every matrix in its own format, as a mixed file stores them (a GGUF export plan's per-tensor types, fallbacks
 * already chosen): `formats` maps tensor names to registry ids or "f32"; 1-D tensors and unlisted ones stay
 * float32. `label` names the mix (e.g. "Q4_K_M").
 */
export function prepareMixedWeights(weights: DecoderWeights, formats: ReadonlyMap<string, string>, label: string, options: Pick<PrepareOptions, "matMulNBits"> = {}): PreparedWeights {
  const tensors = new Map<string, PreparedTensor>();
  const fallbacks: TensorFallback[] = [];
  let weightBytes = 0;
  for (const t of weights.values()) {
    const id = formats.get(t.name);
    const prepared = id && id !== FULL_PRECISION && isQuantizable(t.shape) ? encodeTensor(t, getFormat(id), fallbacks, options.matMulNBits ?? true) : floatTensor(t);
    tensors.set(t.name, prepared);
    weightBytes += prepared.bytes;
  }
  return { precision: label, tensors, weightBytes, fallbacks };
}

function floatTensor(t: NamedTensor): PreparedTensor {
  return { name: t.name, shape: t.shape, format: FULL_PRECISION, bytes: t.values.length * 4, weight: { kind: "float", values: t.values }, decoded: t.values };
}

function encodeTensor(t: NamedTensor, requested: QuantFormat, fallbacks: TensorFallback[], nbits: boolean): PreparedTensor {
  const [rows, cols] = t.shape as [number, number];
  let format = requested;
  let reason: string | undefined;
  const check = format.checkRowLength(cols);
  if (!check.ok) {
    if (!check.fallback) throw new ModelInputError(`tensor "${t.name}": ${check.reason}`);
    reason = check.reason;
    format = getFormat(check.fallback);
    fallbacks.push({ tensor: t.name, from: requested.id, to: format.id, reason });
  }
  const shape = { rows, cols };
  let encoded: Uint8Array;
  try {
    encoded = format.encode(t.values, shape, { tensorName: t.name });
  } catch (e) {
    if (isQuantInputError(e)) throw new ModelInputError(e.message);
    throw e;
  }
  const decoded = format.decode(encoded, shape);
  const weight: LinearWeight =
    format.id === "f16" ? { kind: "float16", raw: encoded } : ((nbits ? matMulNBitsWeight(format.id, encoded, rows, cols) : undefined) ?? { kind: "float", values: decoded });
  const out: PreparedTensor = { name: t.name, shape: t.shape, format: format.id, bytes: encoded.length, weight, decoded };
  if (reason !== undefined) out.fallbackReason = reason;
  return out;
}

const NBITS_ID = /^int(4|8)(-asym)?-(g32|g64|g128|channel)$/;

/**
 * The lab's int{4,8}[-asym]-{g32,g64,g128,channel} bytes (layout in src/quant/intq.ts) as MatMulNBits
 * operands, or undefined for formats MatMulNBits cannot carry exactly. Per-channel rows become one block of
 * the next power of two >= cols (MatMulNBits' block sizes are powers of two >= 16), padded with the zero
 * point so the padding decodes to 0.
 */
export function matMulNBitsWeight(formatId: string, encoded: Uint8Array, rows: number, cols: number): MatMulNBitsWeight | undefined {
  const m = NBITS_ID.exec(formatId);
  if (!m) return undefined;
  const bits = Number(m[1]) as 4 | 8;
  const asym = m[2] !== undefined;
  const group = m[3] === "channel" ? undefined : Number(m[3]!.slice(1));
  const blockSize = group ?? Math.max(16, 2 ** Math.ceil(Math.log2(cols)));
  const groupLength = group ?? cols;
  const kBlocks = Math.ceil(cols / blockSize);
  const blob = (blockSize * bits) / 8;
  const head = asym ? 3 : 2;
  const codeBytes = Math.ceil((groupLength * bits) / 8);
  const labBlockBytes = head + codeBytes;
  const packed = new Uint8Array(rows * kBlocks * blob);
  const scales = new Float32Array(rows * kBlocks);
  const zpBytesPerRow = Math.ceil((kBlocks * bits) / 8);
  const zeroPoints = asym ? new Uint8Array(rows * zpBytesPerRow) : undefined;
  const labGroupsPerRow = cols / groupLength;
  const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < labGroupsPerRow; g++) {
      const lo = (r * labGroupsPerRow + g) * labBlockBytes;
      const block = r * kBlocks + g;
      scales[block] = f16BitsToF32(view.getUint16(lo, true));
      const zero = asym ? encoded[lo + 2]! : 1 << (bits - 1);
      if (zeroPoints) packCode(zeroPoints, r * zpBytesPerRow, g, bits, zero);
      const dst = block * blob;
      for (let i = 0; i < blockSize; i++) {
        const code = i < groupLength ? unpackCode(encoded, lo + head, i, bits) : zero;
        packCode(packed, dst, i, bits, code);
      }
    }
  }
  const weight: MatMulNBitsWeight = { kind: "nbits", bits, blockSize, packed, scales };
  if (zeroPoints) weight.zeroPoints = zeroPoints;
  return weight;
}

/** "31 → q5_0, 5 → f16": how many tensors went to which fallback ("—" for none). */
export function fallbackSummary(fallbacks: readonly { to: string }[]): string {
  const counts = new Map<string, number>();
  for (const f of fallbacks) counts.set(f.to, (counts.get(f.to) ?? 0) + 1);
  return [...counts].map(([to, n]) => `${n} → ${to}`).join(", ") || "—";
}

/**
 * GPTQ, AWQ or AWQ+GPTQ (src/quant/calibrated.ts) on every linear layer of the decoder, from its inputs on a
 * calibration text; their dequantized weights go into the graph. AWQ puts its quantized W*s there, with 1/s
 * folded into the norm or linear layer before each layer (awq-fold.ts), unless foldAwq is false or keepFloat
 * holds a tensor the folding changes (then q = (quantized W*s) / s, the same function up to float rounding).
 * Rows the group does not divide are quantized per channel; the embedding (and the tied head), which these
 * methods leave alone, is kept in f16. Memory is what the setting stores (calibratedBytes).
 */
function prepareCalibrated(
  weights: DecoderWeights,
  precision: string,
  m: CalibratedMethod,
  calibration: Map<string, Float32Array> | undefined,
  keepFloat: ReadonlySet<string> = new Set(),
  foldAwq = true,
): PreparedWeights {
  if (!calibration) throw new ModelInputError(`${precision} needs calibration activations (the inputs of every linear layer on a calibration text)`);
  let awq: AwqFolding | undefined;
  try {
    if (m.method === "awq") awq = awqFold(weights, calibration, m);
  } catch (e) {
    if (isQuantInputError(e)) throw new ModelInputError(`${precision}: ${e.message}`);
    throw e;
  }
  // A tensor kept as given cannot take a scale: with any of the folded ones kept, the scales are divided back out.
  const fold = foldAwq && ![...keepFloat].some((n) => awq?.linear.has(n) || awq?.vectors.has(n));
  const tensors = new Map<string, PreparedTensor>();
  const fallbacks: TensorFallback[] = [];
  let weightBytes = 0;
  const channelId = `${m.method}${m.bits}-channel`;
  for (const t of weights.values()) {
    let prepared: PreparedTensor;
    const activations = calibration.get(t.name);
    const folded = awq?.vectors.get(t.name);
    if (folded && fold) prepared = floatTensor({ ...t, values: folded });
    else if (!isQuantizable(t.shape) || keepFloat.has(t.name)) prepared = floatTensor(t);
    else if (!activations) {
      const reason = `${methodName(m.method)} quantizes the decoder's linear layers only`;
      prepared = { ...encodeTensor(t, getFormat("f16"), [], false), fallbackReason: reason };
      fallbacks.push({ tensor: t.name, from: precision, to: "f16", reason });
    } else {
      const [rows, cols] = t.shape as [number, number];
      const shape = { rows, cols };
      const awqLayer = awq?.linear.get(t.name);
      let q: Float32Array;
      let group: number;
      if (awqLayer) {
        q = fold ? awqLayer.folded : awqLayer.unfolded;
        group = awqLayer.group;
      } else {
        const stats = calibrationStats(activations, cols, { clipSample: m.method !== "gptq" });
        try {
          const r = calibratedQuantize(t.values, shape, stats, m);
          q = r.q;
          group = r.group;
        } catch (e) {
          if (isQuantInputError(e)) throw new ModelInputError(`tensor "${t.name}": ${e.message}`);
          throw e;
        }
      }
      const fits = group === m.group;
      if (!fits) fallbacks.push({ tensor: t.name, from: precision, to: channelId, reason: `rows of ${cols} weights are not a multiple of the group size ${m.group}` });
      const bytes = calibratedBytes(m, shape, group);
      prepared = { name: t.name, shape: t.shape, format: fits ? precision : channelId, bytes, weight: { kind: "float", values: q }, decoded: q };
    }
    tensors.set(t.name, prepared);
    weightBytes += prepared.bytes;
  }
  return { precision, tensors, weightBytes, fallbacks };
}
