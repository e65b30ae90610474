/**
 * WGSL kernels of the plain integer formats (shaders/intq.wgsl): int8/4/3/2, symmetric and asymmetric, per
 * tensor, per channel and per group of 32/64/128, giving the bytes and float32 bits of the CPU reference
 * src/quant/intq.ts on any WebGPU device (the shader's header says why: integer ranges, exact scale search,
 * an integer-only 1 / scale, round() of one product, exact decoding).
 *
 * Encoding streams the tensor in chunks of whole rows through two passes (segment parameters, then one
 * invocation per output word). Per-tensor formats need the whole tensor's range before any code: the first
 * pass runs over every chunk and returns each row's range, the CPU merges them (min and max: exact in any
 * order) and derives the one scale with intq.ts's own intGroupParams, then the second pass runs over every
 * chunk again.
 *
 * NaN and +-Inf weights, and scales past the fp16 range, raise flags; encode then throws the CPU's error.
 */
import intqWgsl from "../../shaders/intq.wgsl?raw";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { INT_BITS, INT_GRANULARITIES, intFormatId, intGroupParams, PLAIN_FORMATS, type IntSpec } from "../quant/intq.ts";
import { f16BitsToF32, f32Bits } from "../formats/float-bits.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { EncoderFlags, familyShader, forEachChunk, allSettled, keepOnSuccess, unitsPerChunk, withBuffers, workgroupsFor, zeroPadded, type ChunkOptions } from "./kernel-chunks.ts";
import { registerGpuQuantizers, type DeviceWeights, type GpuQuantizer, type RoundTrip, type RoundTripOptions } from "./quantizer.ts";
import { checkDecodeInput, checkEncodeInput } from "./validate.ts";

const SHADER = familyShader(intqWgsl, "intq.wgsl");
/** WORKGROUP_SIZE in intq.wgsl. */
const WORKGROUP_SIZE = 64;
/** Words of the shader's Segment struct. */
const SEGMENT_WORDS = 4;

/** Every plain format's spec, by id. */
const SPECS = new Map<string, IntSpec>(
  INT_BITS.flatMap((bits) =>
    [false, true].flatMap((asym) =>
      INT_GRANULARITIES.map((granularity): [string, IntSpec] => [intFormatId({ bits, asym, granularity }), { bits, asym, granularity }]),
    ),
  ),
);

/** The uniform Params of intq.wgsl, in field order. */
interface KernelParams {
  count: number;
  segWeights: number;
  segBytes: number;
  head: number;
  oneScale: boolean;
  /** Per-tensor decode: scale fp16 bits | zero point << 16. */
  tensorScale?: number;
}

/** fround(1 / s) for every finite fp16 scale s >= 0, by its bits (intq.ts intGroupParams' inv); 0 for 0. */
function reciprocalTable(): Float32Array {
  const table = new Float32Array(0x7c00);
  for (let h = 1; h < table.length; h++) table[h] = 1 / f16BitsToF32(h);
  return table;
}

const reciprocalBuffers = new WeakMap<GPUDevice, GPUBuffer>();

/** The reciprocal table on a device, uploaded once (124 KB). */
function reciprocalsOn(device: GPUDevice): GPUBuffer {
  let buffer = reciprocalBuffers.get(device);
  if (!buffer) reciprocalBuffers.set(device, (buffer = uploadStorage(device, reciprocalTable(), "intq fp16 reciprocals")));
  return buffer;
}

/** Segments per encoder invocation: the fewest whose bytes fill whole u32 words (1, 2 or 4). */
function unitSegments(segBytes: number): number {
  return segBytes % 4 === 0 ? 1 : segBytes % 2 === 0 ? 2 : 4;
}

class IntGpuQuantizer implements GpuQuantizer {
  private readonly head: number;

  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly spec: IntSpec,
    private readonly options: ChunkOptions,
  ) {
    this.head = spec.asym ? 3 : 2;
  }

  private params(device: GPUDevice, p: KernelParams): GPUBuffer {
    const { bits, asym } = this.spec;
    const words = [p.count, p.segWeights, p.segBytes, p.head, bits, asym ? 1 : 0, p.oneScale ? 1 : 0, p.tensorScale ?? 0, unitSegments(p.segBytes)];
    return uniformU32(device, words, "intq params");
  }

  /** Bytes of one row's codes (without any header). */
  private codeBytes(cols: number): number {
    return Math.ceil((cols * this.spec.bits) / 8);
  }

  /** Segments of a chunk: weights per segment, and encoded bytes per segment (header included). */
  private segmentShape(cols: number): { segWeights: number; segBytes: number; head: number } {
    const g = this.spec.granularity;
    if (typeof g === "number") return { segWeights: g, segBytes: this.format.blockBytes, head: this.head };
    if (g === "channel") return { segWeights: cols, segBytes: this.head + this.codeBytes(cols), head: this.head };
    return { segWeights: cols, segBytes: this.codeBytes(cols), head: 0 };
  }

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, "intq.wgsl");
  }

  private rowsPerChunk(cols: number): number {
    return unitsPerChunk(this.dev, this.options, cols * 4);
  }

  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (shape.rows * shape.cols === 0) return out;
    const flags = new EncoderFlags(this.dev.device);
    try {
      if (this.spec.granularity === "tensor") await this.encodeTensor(x, shape, flags, out, opts);
      else await this.encodeSegments(x, shape, flags, out, opts?.signal);
      await flags.check(this.format, x, shape, opts);
    } finally {
      flags.destroy();
    }
    return out;
  }

  /**
   * Runs `body` on every chunk of whole rows: the chunk's weights uploaded, with its uniform params (freed
   * after the body).
   */
  private async forEachChunk(
    x: Float32Array,
    { rows, cols }: MatrixShape,
    oneScale: boolean,
    signal: AbortSignal | undefined,
    body: (r0: number, n: number, params: GPUBuffer, weights: GPUBuffer) => Promise<void>,
  ): Promise<void> {
    const { device } = this.dev;
    const seg = this.segmentShape(cols);
    await forEachChunk(rows, this.rowsPerChunk(cols), signal, async (r0, n) => {
      const params = this.params(device, { count: n * cols, ...seg, oneScale });
      const weights = uploadStorage(device, zeroPadded(x.subarray(r0 * cols, (r0 + n) * cols), 4), "intq weights");
      await withBuffers([params, weights], () => body(r0, n, params, weights));
    });
  }

  /**
   * Queues a chunk's encode (encode_segments): each segment's parameters from its own range, or per tensor
   * the one Segment in `tensorSegment`. Returns the buffer of its `bytes` bytes (whole units of words).
   */
  private async dispatchPack(
    params: GPUBuffer,
    weights: GPUBuffer,
    tensorSegment: GPUBuffer,
    flags: EncoderFlags,
    segments: number,
    bytes: number,
  ): Promise<GPUBuffer> {
    const { device } = this.dev;
    const segBytes = bytes / segments;
    const unit = unitSegments(segBytes);
    const units = Math.ceil(segments / unit);
    const pipeline = await this.pipeline("encode_segments");
    // Whole units of words: a short last unit still ends on a word.
    const encoded = outputStorage(device, units * unit * segBytes, "intq encoded");
    const buffers = [params, weights, tensorSegment, flags.buffer, encoded, weights, reciprocalsOn(device)];
    dispatch(device, pipeline, buffers, workgroupsFor(units, WORKGROUP_SIZE), "intq encode");
    return encoded;
  }

  /** dispatchPack, then the bytes copied into `out` at `at`. */
  private async encodeChunk(
    params: GPUBuffer,
    weights: GPUBuffer,
    tensorSegment: GPUBuffer,
    flags: EncoderFlags,
    segments: number,
    bytes: number,
    out: Uint8Array,
    at: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const encoded = await this.dispatchPack(params, weights, tensorSegment, flags, segments, bytes);
    await withBuffers([encoded], async () => out.set(await readBack(this.dev.device, encoded, bytes, signal), at));
  }

  /** Groups and channels: one pass per chunk; each segment's parameters never leave the GPU. */
  private async encodeSegments(x: Float32Array, shape: MatrixShape, flags: EncoderFlags, out: Uint8Array, signal?: AbortSignal): Promise<void> {
    const { device } = this.dev;
    const { cols } = shape;
    const { segWeights } = this.segmentShape(cols);
    const rowBytes = this.format.encodedBytes({ rows: 1, cols });
    // encode_segments binds a tensor Segment even where it reads none.
    const unused = outputStorage(device, SEGMENT_WORDS * 4, "intq no tensor segment");
    try {
      await this.forEachChunk(x, shape, false, signal, (r0, n, params, weights) =>
        this.encodeChunk(params, weights, unused, flags, (n * cols) / segWeights, n * rowBytes, out, r0 * rowBytes, signal),
      );
    } finally {
      unused.destroy();
    }
  }

  /**
   * Per tensor: every row's range first (merged on the CPU into the one scale), then every row's codes. A
   * tensor that fits one chunk is uploaded once for both passes.
   */
  private async encodeTensor(
    x: Float32Array,
    shape: MatrixShape,
    flags: EncoderFlags,
    out: Uint8Array,
    opts?: EncodeOptions & { signal?: AbortSignal },
  ): Promise<void> {
    const { device } = this.dev;
    const signal = opts?.signal;
    let lo = 0;
    let hi = 0;
    const widenRange = async (n: number, params: GPUBuffer, weights: GPUBuffer) => {
      const range = await this.rowRanges(params, weights, n, flags, signal);
      lo = Math.min(lo, range.lo);
      hi = Math.max(hi, range.hi);
    };
    /** The tensor's one scale from its range, written to the header; the Segment the packer reads. */
    const tensorSegment = async (): Promise<GPUBuffer> => {
      // NaN/Inf first, as the CPU checks them before it looks at the range.
      await flags.check(this.format, x, shape, opts);
      return this.tensorScale(lo, hi, out).segment;
    };
    const rowBytes = this.codeBytes(shape.cols);
    const packChunk = (r0: number, n: number, params: GPUBuffer, weights: GPUBuffer, segment: GPUBuffer) =>
      this.encodeChunk(params, weights, segment, flags, n, n * rowBytes, out, this.head + r0 * rowBytes, signal);

    if (shape.rows <= this.rowsPerChunk(shape.cols)) {
      await this.forEachChunk(x, shape, true, signal, async (r0, n, params, weights) => {
        await widenRange(n, params, weights);
        const segment = await tensorSegment();
        try {
          await packChunk(r0, n, params, weights, segment);
        } finally {
          segment.destroy();
        }
      });
      return;
    }
    await this.forEachChunk(x, shape, true, signal, (_r0, n, params, weights) => widenRange(n, params, weights));
    const segment = await tensorSegment();
    try {
      await this.forEachChunk(x, shape, true, signal, (r0, n, params, weights) => packChunk(r0, n, params, weights, segment));
    } finally {
      segment.destroy();
    }
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    const { rows, cols } = shape;
    const { device } = this.dev;
    const decoded = outputStorage(device, rows * cols * 4, "intq decoded");
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (rows * cols === 0) return { decoded, ...(opts?.bytes ? { bytes: out } : {}) };
    return keepOnSuccess(decoded, async () => {
      const perTensor = this.spec.granularity === "tensor";
      const seg = this.segmentShape(cols);
      const flags = new EncoderFlags(device);
      const unused = outputStorage(device, SEGMENT_WORDS * 4, "intq no tensor segment");
      const scratch: (GPUBuffer | undefined)[] = [flags.buffer, unused];
      return withBuffers(scratch, async () => {
        let encoded: GPUBuffer;
        let decodeParams: GPUBuffer;
        let codesAt = 0;
        if (perTensor) {
          // The whole tensor is this piece: its range (row_ranges), the one scale, then the codes.
          const params = this.params(device, { count: rows * cols, ...seg, oneScale: true });
          scratch.push(params);
          const { lo, hi } = await this.rowRanges(params, x.buffer, rows, flags, opts?.signal);
          await flags.check(this.format, x.values, shape, opts); // NaN/Inf first, as the CPU checks them before the range
          const { segment, tensorScale } = this.tensorScale(lo, hi, out);
          scratch.push(segment);
          codesAt = this.head;
          encoded = await this.dispatchPack(params, x.buffer, segment, flags, rows, rows * this.codeBytes(cols));
          decodeParams = this.params(device, { count: rows * cols, ...seg, oneScale: true, tensorScale });
        } else {
          decodeParams = this.params(device, { count: rows * cols, ...seg, oneScale: false });
          encoded = await this.dispatchPack(decodeParams, x.buffer, unused, flags, (rows * cols) / seg.segWeights, out.length);
        }
        scratch.push(encoded, decodeParams);
        const decodePipeline = await this.pipeline("decode_codes");
        dispatch(device, decodePipeline, [decodeParams, encoded, decoded], workgroupsFor(rows * cols, WORKGROUP_SIZE), "intq decode");
        const [codes] = await allSettled([
          opts?.bytes ? readBack(device, encoded, out.length - codesAt, opts.signal) : undefined,
          flags.check(this.format, x.values, shape, opts),
        ]);
        if (!codes) return { decoded };
        out.set(codes, codesAt);
        return { decoded, bytes: out };
      });
    });
  }

  /**
   * A per-tensor format's one scale from the tensor's range: written to the header of `out` (scale fp16 @0,
   * zero point @2 when asymmetric, as intq.ts lays it out); the Segment the packer reads; and the decoder's
   * tensorScale word (scale bits | zero point << 16, as decode() reads it from the header).
   */
  private tensorScale(lo: number, hi: number, out: Uint8Array): { segment: GPUBuffer; tensorScale: number } {
    const p = intGroupParams(lo, hi, this.spec.bits, this.spec.asym);
    out[0] = p.scaleBits & 0xff;
    out[1] = p.scaleBits >>> 8;
    if (this.spec.asym) out[2] = p.zero;
    const words = new Uint32Array([f32Bits(lo), f32Bits(hi), p.scaleBits | (p.zero << 16), f32Bits(p.inv)]);
    const tensorScale = p.scaleBits | ((this.spec.asym ? p.zero : 1 << (this.spec.bits - 1)) << 16);
    return { segment: uploadStorage(this.dev.device, words, "intq tensor scale"), tensorScale };
  }

  /** Every row's range (row_ranges) merged: the min and max of the weights (exact in any order). */
  private async rowRanges(params: GPUBuffer, weights: GPUBuffer, n: number, flags: EncoderFlags, signal?: AbortSignal): Promise<{ lo: number; hi: number }> {
    const { device } = this.dev;
    const rangePipeline = await this.pipeline("row_ranges");
    const ranges = outputStorage(device, n * SEGMENT_WORDS * 4, "intq row ranges");
    try {
      const bindings = { 0: params, 1: weights, 2: ranges, 3: flags.buffer, 5: weights };
      dispatch(device, rangePipeline, bindings, workgroupsFor(n, WORKGROUP_SIZE), "intq row ranges");
      const words = new Float32Array((await readBack(device, ranges, n * SEGMENT_WORDS * 4, signal)).buffer);
      let lo = 0;
      let hi = 0;
      for (let r = 0; r < n; r++) {
        lo = Math.min(lo, words[r * SEGMENT_WORDS]!);
        hi = Math.max(hi, words[r * SEGMENT_WORDS + 1]!);
      }
      return { lo, hi };
    } finally {
      ranges.destroy();
    }
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    const { rows, cols } = shape;
    const y = new Float32Array(rows * cols);
    if (y.length === 0) return y;
    const { device } = this.dev;
    const pipeline = await this.pipeline("decode_codes");
    const seg = this.segmentShape(cols);
    const perTensor = this.spec.granularity === "tensor";
    // Per tensor, the header is read here and handed to the kernel; the chunks hold codes only.
    const tensorScale = perTensor ? q[0]! | (q[1]! << 8) | ((this.spec.asym ? q[2]! : 1 << (this.spec.bits - 1)) << 16) : 0;
    const start = perTensor ? this.head : 0;
    const rowBytes = perTensor ? this.codeBytes(cols) : this.format.encodedBytes({ rows: 1, cols });
    await forEachChunk(rows, this.rowsPerChunk(cols), opts?.signal, async (r0, n) => {
      const params = this.params(device, { count: n * cols, ...seg, oneScale: perTensor, tensorScale });
      const encoded = uploadStorage(device, q.subarray(start + r0 * rowBytes, start + (r0 + n) * rowBytes), "intq encoded");
      const decoded = outputStorage(device, n * cols * 4, "intq decoded");
      await withBuffers([params, encoded, decoded], async () => {
        dispatch(device, pipeline, [params, encoded, decoded], workgroupsFor(n * cols, WORKGROUP_SIZE), "intq decode");
        y.set(new Float32Array((await readBack(device, decoded, n * cols * 4, opts?.signal)).buffer), r0 * cols);
      });
    });
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

/** The GPU quantizer of a plain integer format, or undefined for other formats. */
export function intGpuQuantizer(dev: LabDevice, format: QuantFormat, options: ChunkOptions = {}): GpuQuantizer | undefined {
  const spec = SPECS.get(format.id);
  if (!spec || !PLAIN_FORMATS.includes(format)) return undefined;
  return new IntGpuQuantizer(dev, format, spec, options);
}

registerGpuQuantizers((dev, format) => intGpuQuantizer(dev, format));
