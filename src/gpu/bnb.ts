/**
 * WGSL kernels of the bitsandbytes-style formats (shaders/bnb.wgsl): nf4, fp4, their double-quantized
 * variants nf4-dq and fp4-dq, and llm-int8, giving the bytes and float32 bits of the CPU reference
 * src/quant/bnb.ts on any WebGPU device.
 *
 * - NF4/FP4: blocks of 64 run over the flattened tensor, so the tensor is streamed in flat chunks of whole
 *   blocks. The kernel writes each block's absmax and codes. The codes' decision trees are uploaded as a
 *   table derived here from bnb.ts's own quantizeNf4 / quantizeFp4 (their pivots found by bisection over
 *   float32 values), so no constant of bnb.ts is copied.
 * - Double quantization: the compression of the absmax values (their fixed-order mean, then blocks of 256 on
 *   bitsandbytes' dynamic map) is a small sequential step over n/64 values: it runs here on the CPU, with
 *   bnb.ts's absmaxMean and encodeAbsmaxBlock, from the GPU's exact absmax values. Decoding reconstructs the
 *   absmax values with bnb.ts's decodeAbsmax the same way, then the GPU decodes the codes.
 * - LLM.int8: one invocation per row finds SCB and the scale and, for rows of a multiple of 16 weights,
 *   packs the row's codes too; other rows are packed after, one invocation per word of 4 codes.
 *
 * Blocks or rows whose arithmetic could meet subnormal floats (a device may flush them; SwiftShader does) are
 * listed by the kernels and computed with bnb.ts's own block and row functions; they need magnitudes below
 * ~2^-100 or ratios past 2^120, which real weights do not have. NaN and +-Inf weights raise a flag and encode
 * throws the CPU's QuantInputError.
 */
import bnbWgsl from "../../shaders/bnb.wgsl?raw";
import {
  absmaxMean,
  BNB_BLOCK,
  BNB_DQ_BLOCK,
  BNB_FORMATS,
  decode4bitBlock,
  decodeAbsmax,
  decodeInt8Row,
  encode4bitBlock,
  encodeAbsmaxBlock,
  encodeInt8Row,
  FP4_CODE,
  NF4_CODE,
  quantizeFp4,
  quantizeNf4,
  type FourBitType,
} from "../quant/bnb.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { bitsToF32, f32Bits } from "../formats/float-bits.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage, writeFloats } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { EncoderFlags, familyShader, allSettled, keepOnSuccess, unitsPerChunk, withBuffers, workgroupsFor, zeroPadded, type ChunkOptions } from "./kernel-chunks.ts";
import { registerGpuQuantizers, type DeviceWeights, type GpuQuantizer, type RoundTrip, type RoundTripOptions } from "./quantizer.ts";
import { checkDecodeInput, checkEncodeInput } from "./validate.ts";

const SHADER = familyShader(bnbWgsl, "bnb.wgsl");
/** WORKGROUP_SIZE in bnb.wgsl. */
const WORKGROUP_SIZE = 64;

// ---------------------------------------------------------------------------------------------------------
// The 4-bit code tables, from bnb.ts's quantizers

/** A float32 bit pattern -> a u32 whose unsigned order is the float order (and back). */
const orderKey = (v: number): number => {
  const b = f32Bits(v);
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
};
const fromOrderKey = (k: number): number => bitsToF32(k & 0x80000000 ? k & 0x7fffffff : ~k >>> 0);

/**
 * The pivots of a monotone step function f over float32 values in [lo, hi]: every p with f(p) < f(next
 * float32 after p), in ascending order (bisection on the float32 order, so each is exact).
 */
function stepPivots(f: (v: number) => number, lo: number, hi: number): number[] {
  const out: number[] = [];
  const search = (kl: number, kh: number, fl: number, fh: number): void => {
    if (fl === fh) return;
    if (kh - kl === 1) {
      out.push(fromOrderKey(kl));
      return;
    }
    const km = kl + Math.floor((kh - kl) / 2);
    const fm = f(fromOrderKey(km));
    search(kl, km, fl, fm);
    search(km, kh, fm, fh);
  };
  search(orderKey(lo), orderKey(hi), f(lo), f(hi));
  return out;
}

/** Cells per unit of the code trees' input (the shader multiplies by 16 to find a value's cell). */
const CELLS_PER_UNIT = 16;
/** No pivot of a cell within this of its edges (far above float32 rounding of (a + offset) * 16). */
const EDGE_MARGIN = 2 ** -16;

/**
 * The shader's Table for a 4-bit type, as 82 words: offset, last cell, each cell's pivot (32), each cell's
 * codes below | above its pivot << 4 (32), code -> value (16). NF4 cells cover [-1, 1] (its inputs: x /
 * absmax), FP4 cells [0, 1] (magnitudes; the shader adds the sign, as bnb.ts's quantizeFp4 does: 8 when
 * v < 0). Everything comes from bnb.ts's quantizers: the pivots by bisection, each cell's codes by
 * quantizing a value inside it.
 */
export function fourBitTable(type: FourBitType): Uint32Array {
  const values = type === "nf4" ? NF4_CODE : FP4_CODE;
  const quantize = type === "nf4" ? quantizeNf4 : quantizeFp4;
  // NF4: over [-2, 2]; FP4: magnitudes over [0, 2] (inputs stay within [-1, 1] up to rounding).
  const offset = type === "nf4" ? 1 : 0;
  const value = type === "nf4" ? (v: number) => values[quantize(v)]! : (v: number) => Math.abs(values[quantize(v)]!);
  const pivots = stepPivots(value, -2 * offset, 2);
  const cells = (1 + offset) * CELLS_PER_UNIT;
  const table = new Uint32Array(2 + 32 + 32 + 16);
  table[0] = f32Bits(offset);
  table[1] = f32Bits(cells - 1);
  const nextUp = (p: number) => fromOrderKey(orderKey(p) + 1);
  for (let j = 0; j < cells; j++) {
    const lo = j / CELLS_PER_UNIT - offset;
    const hi = (j + 1) / CELLS_PER_UNIT - offset;
    // The first and last cells also take what lies beyond [-offset, 1].
    const inside = pivots.filter((p) => (j === 0 || p >= lo) && (j === cells - 1 || p < hi));
    if (inside.length > 1) throw new Error(`${type}: two pivots in one cell [${lo}, ${hi})`);
    const pivot = inside[0];
    if (pivot !== undefined && (pivot - lo < EDGE_MARGIN || hi - pivot < EDGE_MARGIN)) throw new Error(`${type}: pivot ${pivot} at a cell edge`);
    const below = quantize(pivot ?? (j === 0 ? -2 * offset : lo));
    const above = pivot === undefined ? below : quantize(nextUp(pivot));
    table[2 + j] = f32Bits(pivot ?? 3.4e38);
    table[34 + j] = below | (above << 4);
  }
  for (let c = 0; c < 16; c++) table[66 + c] = f32Bits(values[c]!);
  return table;
}

// ---------------------------------------------------------------------------------------------------------
// NF4 / FP4 (and -dq)

/** Where the parts of a 4-bit encoding start (bnb.ts's layout comment): the codes are always the tail. */
function fourBitParts(format: QuantFormat, shape: MatrixShape, dq: boolean) {
  const n = shape.rows * shape.cols;
  const blocks = Math.ceil(n / BNB_BLOCK);
  const codes = format.encodedBytes(shape) - Math.ceil(n / 2);
  // nf4 / fp4: absmax f32[blocks] @0. -dq: offset f32 @0 | absmax2 f32[] @4 | qabs u8[blocks] | codes.
  return { n, blocks, codes, qabs: dq ? codes - blocks : -1 };
}

/** A 4-bit block whose decoded values could be subnormal (absmax below 2^-117) or whose absmax is not finite. */
function exoticAbsmax(a: number): boolean {
  const exponent = (f32Bits(a) >>> 23) & 0xff;
  return exponent < 10 || exponent === 255;
}

class FourBitGpuQuantizer implements GpuQuantizer {
  private readonly table: Uint32Array;

  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly type: FourBitType,
    private readonly dq: boolean,
    private readonly options: ChunkOptions,
  ) {
    this.table = fourBitTable(type);
  }

  /** Weights per dispatch: whole blocks of 64, the input (4 bytes a weight) within the limits. */
  private weightsPerChunk(): number {
    return unitsPerChunk(this.dev, this.options, BNB_BLOCK * 4) * BNB_BLOCK;
  }

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, "bnb.wgsl");
  }

  private params(device: GPUDevice, count: number): GPUBuffer {
    return uniformU32(device, [count, 0, this.type === "fp4" ? 1 : 0, 0], "bnb params");
  }

  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    const out = new Uint8Array(this.format.encodedBytes(shape));
    const parts = fourBitParts(this.format, shape, this.dq);
    const absmaxBytes = new Uint8Array(4 * parts.blocks);
    const absmax = new Float32Array(absmaxBytes.buffer);
    if (parts.n > 0) await this.encodeBlocks(x, shape, parts, out, absmaxBytes, opts);
    this.writeAbsmax(out, parts, absmax);
    return out;
  }

  /** Every block's absmax into the encoding: as stored (nf4, fp4), or double-quantized with bnb.ts's functions (-dq). */
  private writeAbsmax(out: Uint8Array, parts: ReturnType<typeof fourBitParts>, absmax: Float32Array): void {
    if (!this.dq) {
      out.set(new Uint8Array(absmax.buffer, absmax.byteOffset, absmax.byteLength), 0);
      return;
    }
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const offset = absmaxMean(absmax);
    view.setFloat32(0, offset, true);
    for (let j = 0; j * BNB_DQ_BLOCK < parts.blocks; j++) {
      const k0 = j * BNB_DQ_BLOCK;
      const absmax2 = encodeAbsmaxBlock(absmax, k0, Math.min(BNB_DQ_BLOCK, parts.blocks - k0), offset, out, parts.qabs + k0);
      view.setFloat32(4 + 4 * j, absmax2, true);
    }
  }

  /** Every block's absmax as decoding sees it: stored (nf4, fp4) or reconstructed with bnb.ts's decodeAbsmax (-dq). */
  private absmaxOf(q: Uint8Array, parts: ReturnType<typeof fourBitParts>): Float32Array {
    const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
    const absmax = new Float32Array(parts.blocks);
    const offset = this.dq ? view.getFloat32(0, true) : 0;
    for (let k = 0; k < parts.blocks; k++) {
      absmax[k] = this.dq
        ? decodeAbsmax(q[parts.qabs + k]!, view.getFloat32(4 + 4 * Math.floor(k / BNB_DQ_BLOCK), true), offset)
        : view.getFloat32(4 * k, true);
    }
    return absmax;
  }

  /** The codes into `out` and every block's absmax into `absmaxBytes` (little-endian f32), chunk by chunk. */
  private async encodeBlocks(
    x: Float32Array,
    shape: MatrixShape,
    parts: ReturnType<typeof fourBitParts>,
    out: Uint8Array,
    absmaxBytes: Uint8Array,
    opts?: EncodeOptions & { signal?: AbortSignal },
  ): Promise<void> {
    const { device } = this.dev;
    const pipeline = await this.pipeline("encode_4bit");
    const absmax = new Float32Array(absmaxBytes.buffer);
    const perChunk = this.weightsPerChunk();
    const flags = new EncoderFlags(device);
    const table = uploadStorage(device, this.table, "bnb table");
    try {
      for (let e0 = 0; e0 < parts.n; e0 += perChunk) {
        opts?.signal?.throwIfAborted();
        const m = Math.min(perChunk, parts.n - e0);
        const blocks = Math.ceil(m / BNB_BLOCK);
        const codeBytes = Math.ceil(m / 2);
        const params = this.params(device, m);
        const weights = uploadStorage(device, zeroPadded(x.subarray(e0, e0 + m), BNB_BLOCK), "bnb weights");
        // Whole blocks: the kernel writes all 8 words of a block, the short last one too.
        const codes = outputStorage(device, (blocks * BNB_BLOCK) / 2, "bnb codes");
        const blockAbsmax = outputStorage(device, blocks * 4, "bnb absmax");
        const hard = outputStorage(device, 4 * (1 + blocks), "bnb blocks left to the CPU");
        try {
          const bindings = { 0: params, 2: codes, 3: blockAbsmax, 4: flags.buffer, 5: hard, 6: table, 8: weights };
          dispatch(device, pipeline, bindings, workgroupsFor(blocks, WORKGROUP_SIZE), "bnb encode_4bit");
          const [codeData, absmaxData, hardData] = await Promise.all([
            readBack(device, codes, codeBytes, opts?.signal),
            readBack(device, blockAbsmax, blocks * 4, opts?.signal),
            readBack(device, hard, 4 * (1 + blocks), opts?.signal),
          ]);
          out.set(codeData, parts.codes + e0 / 2);
          // An odd count ends in half a byte: its low nibble is the code of a padding zero, which bnb.ts leaves 0.
          if (m % 2 === 1) out[parts.codes + (e0 + m - 1) / 2]! &= 0xf0;
          absmaxBytes.set(absmaxData, (4 * e0) / BNB_BLOCK);
          // The blocks the kernel left to the CPU reference (bnb.ts encode4bitBlock).
          const list = new Uint32Array(hardData.buffer);
          for (let i = 1; i <= list[0]!; i++) {
            const k = e0 / BNB_BLOCK + list[i]!;
            const b0 = k * BNB_BLOCK;
            const size = Math.min(BNB_BLOCK, parts.n - b0);
            out.fill(0, parts.codes + b0 / 2, parts.codes + Math.ceil((b0 + size) / 2));
            encode4bitBlock(this.type, x, b0, size, absmax[k]!, out, parts.codes);
          }
        } finally {
          for (const b of [params, weights, codes, blockAbsmax, hard]) b.destroy();
        }
      }
      await flags.check(this.format, x, shape, opts);
    } finally {
      flags.destroy();
      table.destroy();
    }
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    const parts = fourBitParts(this.format, shape, this.dq);
    const { device } = this.dev;
    const decoded = outputStorage(device, parts.n * 4, "bnb decoded");
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (parts.n === 0) {
      this.writeAbsmax(out, parts, new Float32Array(0));
      return { decoded, ...(opts?.bytes ? { bytes: out } : {}) };
    }
    return keepOnSuccess(decoded, async () => {
      const encodePipeline = await this.pipeline("encode_4bit");
      const decodePipeline = await this.pipeline("decode_4bit");
      const signal = opts?.signal;
      const params = this.params(device, parts.n);
      const codes = outputStorage(device, (parts.blocks * BNB_BLOCK) / 2, "bnb codes");
      const blockAbsmax = outputStorage(device, parts.blocks * 4, "bnb absmax");
      const hard = outputStorage(device, 4 * (1 + parts.blocks), "bnb blocks left to the CPU");
      const table = uploadStorage(device, this.table, "bnb table");
      const flags = new EncoderFlags(device);
      const scratch: GPUBuffer[] = [params, codes, blockAbsmax, hard, table, flags.buffer];
      return withBuffers(scratch, async () => {
        const bindings = { 0: params, 2: codes, 3: blockAbsmax, 4: flags.buffer, 5: hard, 6: table, 8: x.buffer };
        dispatch(device, encodePipeline, bindings, workgroupsFor(parts.blocks, WORKGROUP_SIZE), "bnb encode_4bit");
        const [absmaxData, hardData] = await allSettled([readBack(device, blockAbsmax, parts.blocks * 4, signal), readBack(device, hard, 4 * (1 + parts.blocks), signal)]);
        await flags.check(this.format, x.values, shape, opts);
        const absmax = new Float32Array(absmaxData.buffer);
        this.writeAbsmax(out, parts, absmax);
        // Decoding sees the absmax values the encoding stores (-dq: reconstructed), like decode().
        const decodedAbsmax = this.dq ? this.absmaxOf(out, parts) : absmax;
        const decodeAbsmax = this.dq ? uploadStorage(device, decodedAbsmax, "bnb decoded absmax") : blockAbsmax;
        if (decodeAbsmax !== blockAbsmax) scratch.push(decodeAbsmax);
        dispatch(device, decodePipeline, { 0: params, 1: codes, 2: decodeAbsmax, 3: decoded, 6: table }, workgroupsFor(parts.n, WORKGROUP_SIZE), "bnb decode_4bit");
        // Blocks the CPU reference encodes (the kernel's list) or decodes (exotic absmax): written over the GPU's.
        const list = new Uint32Array(hardData.buffer);
        const hardBlocks = Array.from(list.subarray(1, 1 + list[0]!));
        const cpuBlocks = new Set(hardBlocks);
        for (let k = 0; k < parts.blocks; k++) if (exoticAbsmax(decodedAbsmax[k]!)) cpuBlocks.add(k);
        if (opts?.bytes || hardBlocks.length < cpuBlocks.size) {
          out.set(await readBack(device, codes, Math.ceil(parts.n / 2), signal), parts.codes);
          // An odd count ends in half a byte: its low nibble is the code of a padding zero, which bnb.ts leaves 0.
          if (parts.n % 2 === 1) out[parts.codes + (parts.n - 1) / 2]! &= 0xf0;
        }
        const y = new Float32Array(cpuBlocks.size > 0 ? parts.n : 0);
        for (const k of cpuBlocks) {
          const b0 = k * BNB_BLOCK;
          const size = Math.min(BNB_BLOCK, parts.n - b0);
          if (hardBlocks.includes(k)) {
            out.fill(0, parts.codes + b0 / 2, parts.codes + Math.ceil((b0 + size) / 2));
            encode4bitBlock(this.type, x.values, b0, size, absmax[k]!, out, parts.codes);
          }
          decode4bitBlock(this.type, out, parts.codes, b0, size, decodedAbsmax[k]!, y);
          writeFloats(device, decoded, b0, y.subarray(b0, b0 + size));
        }
        return { decoded, ...(opts?.bytes ? { bytes: out } : {}) };
      });
    });
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    const parts = fourBitParts(this.format, shape, this.dq);
    const y = new Float32Array(parts.n);
    if (parts.n === 0) return y;
    const absmax = this.absmaxOf(q, parts);
    const { device } = this.dev;
    const pipeline = await this.pipeline("decode_4bit");
    const perChunk = this.weightsPerChunk();
    const table = uploadStorage(device, this.table, "bnb table");
    try {
      for (let e0 = 0; e0 < parts.n; e0 += perChunk) {
        opts?.signal?.throwIfAborted();
        const m = Math.min(perChunk, parts.n - e0);
        const params = this.params(device, m);
        const codes = uploadStorage(device, q.subarray(parts.codes + e0 / 2, parts.codes + Math.ceil((e0 + m) / 2)), "bnb codes");
        const blockAbsmax = uploadStorage(device, absmax.subarray(e0 / BNB_BLOCK, Math.ceil((e0 + m) / BNB_BLOCK)), "bnb absmax");
        const decoded = outputStorage(device, m * 4, "bnb decoded");
        try {
          dispatch(device, pipeline, { 0: params, 1: codes, 2: blockAbsmax, 3: decoded, 6: table }, workgroupsFor(m, WORKGROUP_SIZE), "bnb decode_4bit");
          y.set(new Float32Array((await readBack(device, decoded, m * 4, opts?.signal)).buffer), e0);
        } finally {
          for (const b of [params, codes, blockAbsmax, decoded]) b.destroy();
        }
      }
    } finally {
      table.destroy();
    }
    // Blocks whose products could be subnormal: bnb.ts's decode4bitBlock.
    for (let k = 0; k < parts.blocks; k++) {
      if (!exoticAbsmax(absmax[k]!)) continue;
      const e0 = k * BNB_BLOCK;
      decode4bitBlock(this.type, q, parts.codes, e0, Math.min(BNB_BLOCK, parts.n - e0), absmax[k]!, y);
    }
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

// ---------------------------------------------------------------------------------------------------------
// LLM.int8

/** bnb.ts's 1/127 constant, as its decoder applies it (the value of code 1 with SCB 1). */
const RCP_127_BITS = (() => {
  const y = new Float32Array(1);
  decodeInt8Row(new Uint8Array([1]), 0, 1, 1, y, 0);
  return f32Bits(y[0]!);
})();

/** Rows the kernels leave to the CPU (shaders/bnb.wgsl int8_row_scales): SCB below 2^-87 or past 2^120 (NaN too). */
function exoticScb(scb: number): boolean {
  const exponent = (f32Bits(scb) >>> 23) & 0xff;
  return scb !== 0 && (exponent < 40 || exponent > 247);
}

class LlmInt8GpuQuantizer implements GpuQuantizer {
  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly options: ChunkOptions,
  ) {}

  private rowsPerChunk(cols: number): number {
    return unitsPerChunk(this.dev, this.options, cols * 4);
  }

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, "bnb.wgsl");
  }

  /**
   * Queues the encode of `rows` rows: rows of whole 16-weight steps in one pass (encode_int8_rows), others as
   * row scales, then word packing.
   */
  private async dispatchEncode(
    rows: number,
    cols: number,
    b: { params: GPUBuffer; weights: GPUBuffer; codes: GPUBuffer; scales: GPUBuffer; hard: GPUBuffer; flags: GPUBuffer },
  ): Promise<void> {
    const { device } = this.dev;
    if (cols % 16 === 0) {
      const bindings = { 0: b.params, 1: b.weights, 2: b.codes, 3: b.scales, 4: b.flags, 5: b.hard, 8: b.weights };
      dispatch(device, await this.pipeline("encode_int8_rows"), bindings, workgroupsFor(rows, WORKGROUP_SIZE), "bnb encode_int8_rows");
      return;
    }
    const scaleBindings = { 0: b.params, 1: b.weights, 3: b.scales, 4: b.flags, 5: b.hard, 8: b.weights };
    const scalesPipeline = await this.pipeline("int8_row_scales");
    const packPipeline = await this.pipeline("pack_int8");
    dispatch(device, scalesPipeline, scaleBindings, workgroupsFor(rows, WORKGROUP_SIZE), "bnb int8_row_scales");
    const packBindings = { 0: b.params, 1: b.weights, 2: b.codes, 7: b.scales, 8: b.weights };
    dispatch(device, packPipeline, packBindings, workgroupsFor(Math.ceil((rows * cols) / 4), WORKGROUP_SIZE), "bnb pack_int8");
  }

  /** Layout (bnb.ts): SCB f32[rows] @0 | codes i8[rows * cols] @4 * rows. */
  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    const { rows, cols } = shape;
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (rows * cols === 0) return out;
    const { device } = this.dev;
    const chunkRows = this.rowsPerChunk(cols);
    const flags = new EncoderFlags(device);
    try {
      for (let r0 = 0; r0 < rows; r0 += chunkRows) {
        opts?.signal?.throwIfAborted();
        const n = Math.min(chunkRows, rows - r0);
        const params = uniformU32(device, [n * cols, cols, 0, 0], "bnb params");
        const weights = uploadStorage(device, zeroPadded(x.subarray(r0 * cols, (r0 + n) * cols), 4), "bnb weights");
        const scales = outputStorage(device, n * 8, "bnb row scales");
        const hard = outputStorage(device, 4 * (1 + n), "bnb rows left to the CPU");
        const codes = outputStorage(device, n * cols, "bnb int8 codes");
        try {
          await this.dispatchEncode(n, cols, { params, weights, codes, scales, hard, flags: flags.buffer });
          const [scaleData, hardData, codeData] = await Promise.all([
            readBack(device, scales, n * 8, opts?.signal),
            readBack(device, hard, 4 * (1 + n), opts?.signal),
            readBack(device, codes, n * cols, opts?.signal),
          ]);
          const scaleWords = new Uint32Array(scaleData.buffer);
          const view = new DataView(out.buffer);
          for (let r = 0; r < n; r++) view.setUint32(4 * (r0 + r), scaleWords[2 * r]!, true);
          out.set(codeData, 4 * rows + r0 * cols);
          // Rows the kernel left to the CPU reference (bnb.ts encodeInt8Row).
          const list = new Uint32Array(hardData.buffer);
          for (let i = 1; i <= list[0]!; i++) {
            const r = r0 + list[i]!;
            encodeInt8Row(x, r * cols, cols, out, 4 * rows + r * cols);
          }
        } finally {
          for (const b of [params, weights, scales, hard, codes]) b.destroy();
        }
      }
      await flags.check(this.format, x, shape, opts);
    } finally {
      flags.destroy();
    }
    return out;
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    const { rows, cols } = shape;
    const n = rows * cols;
    const { device } = this.dev;
    const decoded = outputStorage(device, n * 4, "bnb decoded");
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (n === 0) return { decoded, ...(opts?.bytes ? { bytes: out } : {}) };
    return keepOnSuccess(decoded, async () => {
      const signal = opts?.signal;
      const decodePipeline = await this.pipeline("decode_int8");
      const params = uniformU32(device, [n, cols, 0, 0], "bnb params");
      const decodeParams = uniformU32(device, [n, cols, 0, RCP_127_BITS], "bnb params");
      const scales = outputStorage(device, rows * 8, "bnb row scales");
      const hard = outputStorage(device, 4 * (1 + rows), "bnb rows left to the CPU");
      const codes = outputStorage(device, n, "bnb int8 codes");
      const flags = new EncoderFlags(device);
      return withBuffers([params, decodeParams, scales, hard, codes, flags.buffer], async () => {
        await this.dispatchEncode(rows, cols, { params, weights: x.buffer, codes, scales, hard, flags: flags.buffer });
        // The decoder reads each row's SCB from the first word of the encoder's RowScale (the second is unused).
        dispatch(device, decodePipeline, { 0: decodeParams, 1: codes, 3: decoded, 7: scales }, workgroupsFor(n, WORKGROUP_SIZE), "bnb decode_int8");
        const [scaleData, hardData] = await Promise.all([readBack(device, scales, rows * 8, signal), readBack(device, hard, 4 * (1 + rows), signal)]);
        await flags.check(this.format, x.values, shape, opts);
        const scaleWords = new Uint32Array(scaleData.buffer);
        const view = new DataView(out.buffer);
        for (let r = 0; r < rows; r++) view.setUint32(4 * r, scaleWords[2 * r]!, true);
        // Rows the CPU reference encodes (the kernel's list) or decodes (exotic SCB): written over the GPU's.
        const list = new Uint32Array(hardData.buffer);
        const hardRows = Array.from(list.subarray(1, 1 + list[0]!));
        const cpuRows = new Set(hardRows);
        for (let r = 0; r < rows; r++) if (exoticScb(view.getFloat32(4 * r, true))) cpuRows.add(r);
        if (opts?.bytes || hardRows.length < cpuRows.size) out.set(await readBack(device, codes, n, signal), 4 * rows);
        const y = new Float32Array(cols);
        for (const r of cpuRows) {
          if (hardRows.includes(r)) encodeInt8Row(x.values, r * cols, cols, out, 4 * rows + r * cols);
          decodeInt8Row(out, 4 * rows + r * cols, cols, view.getFloat32(4 * r, true), y, 0);
          writeFloats(device, decoded, r * cols, y);
        }
        return { decoded, ...(opts?.bytes ? { bytes: out } : {}) };
      });
    });
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    const { rows, cols } = shape;
    const y = new Float32Array(rows * cols);
    if (y.length === 0) return y;
    const { device } = this.dev;
    const pipeline = await this.pipeline("decode_int8");
    const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
    const chunkRows = this.rowsPerChunk(cols);
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      opts?.signal?.throwIfAborted();
      const n = Math.min(chunkRows, rows - r0);
      // RowScale per row: SCB bits (the scale word is unused here).
      const rowScales = new Uint32Array(2 * n);
      for (let r = 0; r < n; r++) rowScales[2 * r] = view.getUint32(4 * (r0 + r), true);
      const params = uniformU32(device, [n * cols, cols, 0, RCP_127_BITS], "bnb params");
      const codes = uploadStorage(device, q.subarray(4 * rows + r0 * cols, 4 * rows + (r0 + n) * cols), "bnb int8 codes");
      const scales = uploadStorage(device, rowScales, "bnb row scales");
      const decoded = outputStorage(device, n * cols * 4, "bnb decoded");
      try {
        dispatch(device, pipeline, { 0: params, 1: codes, 3: decoded, 7: scales }, workgroupsFor(n * cols, WORKGROUP_SIZE), "bnb decode_int8");
        y.set(new Float32Array((await readBack(device, decoded, n * cols * 4, opts?.signal)).buffer), r0 * cols);
      } finally {
        for (const b of [params, codes, scales, decoded]) b.destroy();
      }
    }
    // Rows whose products could leave the normal range: bnb.ts's decodeInt8Row.
    for (let r = 0; r < rows; r++) {
      const scb = view.getFloat32(4 * r, true);
      if (exoticScb(scb)) decodeInt8Row(q, 4 * rows + r * cols, cols, scb, y, r * cols);
    }
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

/** The GPU quantizer of a bitsandbytes format, or undefined for other formats. */
export function bnbGpuQuantizer(dev: LabDevice, format: QuantFormat, options: ChunkOptions = {}): GpuQuantizer | undefined {
  if (!BNB_FORMATS.includes(format)) return undefined;
  if (format.id === "llm-int8") return new LlmInt8GpuQuantizer(dev, format, options);
  const type: FourBitType = format.id.startsWith("nf4") ? "nf4" : "fp4";
  return new FourBitGpuQuantizer(dev, format, type, format.id.endsWith("-dq"), options);
}

registerGpuQuantizers((dev, format) => bnbGpuQuantizer(dev, format));
