/**
 * WGSL kernels of llama.cpp's K-quants q2_K, q3_K, q4_K, q5_K and q6_K (shaders/kquants.wgsl, with the
 * scale searches in shaders/kquant-search.wgsl): encode (ggml's reference encoders, and the
 * importance-weighted ones when an imatrix is given) and decode, giving the bytes and float32 bits of the
 * CPU reference src/quant/ggml/q{2..6}_K.ts, itself bit-exact with ggml.
 *
 * One invocation encodes a super-block (q3_K and q6_K: two), with the sub-blocks in registers and no
 * workgroup memory or barriers (on SwiftShader a barrier costs more than a sub-block's search).
 *
 * Like the legacy formats' kernels (see ggml-legacy.ts for the full argument), the encoders equal the CPU
 * reference where f32 + - * / and sqrt are correctly rounded and a*b + c is not fused; the searches
 * compare many float sums, so a fusing GPU changes more blocks here than in the legacy formats (ggml
 * built with FMA contraction changes up to a third of q2_K's blocks: ../shared/golden/ggml/README.md),
 * all of them valid blocks of the same quality. Decoding is exact everywhere.
 *
 * Subnormal numbers: ggml's arithmetic keeps them, but many GPUs (SwiftShader too) flush them to zero.
 * The kernels send every block whose search could meet one (tiny weights or importance values; the
 * bounds are in shaders/kquant-search.wgsl) to the CPU reference, which re-encodes it here: the bytes stay
 * ggml's, and real weights almost never take that path (`cpuBlocks` counts it).
 *
 * NaN and ±Inf weights: the kernels raise a flag, and encode then throws the CPU's QuantInputError.
 */
import kquantSearchWgsl from "../../shaders/kquant-search.wgsl?raw";
import kquantsWgsl from "../../shaders/kquants.wgsl?raw";
import { assertFinite } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { GGML_K_FORMATS, QK_K } from "../quant/ggml/kquants.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage, writeFloats } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { forEachChunk, allSettled, keepOnSuccess, rowsPerChunk, withBuffers, workgroupsFor, type ChunkOptions } from "./kernel-chunks.ts";
import { registerGpuQuantizers, type DeviceWeights, type GpuQuantizer, type RoundTrip, type RoundTripOptions } from "./quantizer.ts";
import { checkDecodeInput, checkEncodeInput } from "./validate.ts";
import { withCommonWgsl } from "./wgsl.ts";

const SHADER = withCommonWgsl(kquantsWgsl, "kquants.wgsl", [["kquant-search.wgsl", kquantSearchWgsl]]);
const LABEL = "kquants.wgsl";

/** @workgroup_size of every entry point in kquants.wgsl. */
const WORKGROUP_SIZE = 64;
/** Weights one decoder invocation writes. */
const DECODE_SLICE = 16;

/**
 * Super-blocks one encoder invocation writes: 2 where a block does not end on a 4-byte boundary (q3_K's
 * 110, q6_K's 210 bytes), so that each invocation owns whole u32 words. Mirrors the entry points.
 */
export function blocksPerInvocation(format: QuantFormat): number {
  return format.blockBytes % 4 === 0 ? 1 : 2;
}

/** The encoders' status buffer: a NaN/Inf flag word, then one bit per super-block sent to the CPU. */
const statusBytes = (blocks: number) => 4 * (1 + Math.ceil(blocks / 32));

function parseStatus(bytes: Uint8Array<ArrayBuffer>): { nonFinite: boolean; cpuBlocks: number[] } {
  const words = new Uint32Array(bytes.buffer, 0, bytes.length / 4);
  const cpuBlocks: number[] = [];
  for (let w = 1; w < words.length; w++) {
    for (let bits = words[w]!; bits !== 0; bits &= bits - 1) cpuBlocks.push(32 * (w - 1) + (31 - Math.clz32(bits & -bits)));
  }
  return { nonFinite: words[0] !== 0, cpuBlocks };
}

export class KQuantGpuQuantizer implements GpuQuantizer {
  /** Blocks encoded so far by the kernels, and by the CPU reference because the kernels sent them there. */
  readonly blockCounts = { gpu: 0, cpu: 0 };

  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly options: ChunkOptions,
  ) {}

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, LABEL);
  }

  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    const { rows, cols } = shape;
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (out.length === 0) return out;
    const { device } = this.dev;
    const imatrix = opts?.imatrix;
    const pipeline = await this.pipeline(`encode_${this.format.id}_${imatrix ? "imatrix" : "ref"}`);
    // The reference encoders do not read the importance binding, but it is part of their layout: one vec4.
    const importance = uploadStorage(device, imatrix ?? new Float32Array(4), "kquants importance");
    const rowBytes = this.format.encodedBytes({ rows: 1, cols });
    await withBuffers([importance], () =>
      forEachChunk(rows, rowsPerChunk(this.dev, this.options, this.format, cols), opts?.signal, async (r0, n) => {
        const chunk = x.subarray(r0 * cols, (r0 + n) * cols);
        const { bytes, nonFinite, cpuBlocks } = await this.encodeChunk(chunk, n, cols, pipeline, importance, opts?.signal);
        if (nonFinite) assertFinite(x, shape, opts?.tensorName); // throws the CPU's message
        for (const block of cpuBlocks) this.encodeBlockOnCpu(chunk, cols, block, bytes, imatrix);
        this.blockCounts.gpu += (n * cols) / QK_K - cpuBlocks.length;
        this.blockCounts.cpu += cpuBlocks.length;
        out.set(bytes, r0 * rowBytes);
      }),
    );
    return out;
  }

  private async encodeChunk(
    chunk: Float32Array,
    rows: number,
    cols: number,
    pipeline: GPUComputePipeline,
    importance: GPUBuffer,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Uint8Array; nonFinite: boolean; cpuBlocks: number[] }> {
    const { device } = this.dev;
    const blocks = (rows * cols) / QK_K;
    const byteCount = this.format.encodedBytes({ rows, cols });
    const params = this.params(rows, cols);
    const weights = uploadStorage(device, chunk, "kquants weights");
    const encoded = outputStorage(device, byteCount, "kquants encoded");
    const status = outputStorage(device, statusBytes(blocks), "kquants status");
    return withBuffers([params, weights, encoded, status], async () => {
      this.dispatchEncode(blocks, pipeline, [params, weights, encoded, status, importance]);
      const [bytes, statusWords] = await Promise.all([readBack(device, encoded, byteCount, signal), readBack(device, status, statusBytes(blocks), signal)]);
      return { bytes, ...parseStatus(statusWords) };
    });
  }

  private params(rows: number, cols: number): GPUBuffer {
    return uniformU32(this.dev.device, [(rows * cols) / QK_K, cols / QK_K, 0], "kquants params");
  }

  private dispatchEncode(blocks: number, pipeline: GPUComputePipeline, bindings: GPUBuffer[]): void {
    const invocations = Math.ceil(blocks / blocksPerInvocation(this.format));
    dispatch(this.dev.device, pipeline, bindings, workgroupsFor(invocations, WORKGROUP_SIZE), `kquants encode ${this.format.id}`);
  }

  private dispatchDecode(blocks: number, pipeline: GPUComputePipeline, bindings: GPUBuffer[]): void {
    const workgroups = workgroupsFor(blocks * (QK_K / DECODE_SLICE), WORKGROUP_SIZE);
    dispatch(this.dev.device, pipeline, bindings, workgroups, `kquants decode ${this.format.id}`);
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    const { rows, cols } = shape;
    const { device } = this.dev;
    const decoded = outputStorage(device, rows * cols * 4, "kquants decoded");
    if (rows * cols === 0) return { decoded, ...(opts?.bytes ? { bytes: new Uint8Array(0) } : {}) };
    return keepOnSuccess(decoded, async () => {
      const imatrix = opts?.imatrix;
      const encodePipeline = await this.pipeline(`encode_${this.format.id}_${imatrix ? "imatrix" : "ref"}`);
      const decodePipeline = await this.pipeline(`decode_${this.format.id}`);
      const blocks = (rows * cols) / QK_K;
      const byteCount = this.format.encodedBytes(shape);
      const params = this.params(rows, cols);
      const importance = uploadStorage(device, imatrix ?? new Float32Array(4), "kquants importance");
      const encoded = outputStorage(device, byteCount, "kquants encoded");
      const status = outputStorage(device, statusBytes(blocks), "kquants status");
      return withBuffers([params, importance, encoded, status], async () => {
        this.dispatchEncode(blocks, encodePipeline, [params, x.buffer, encoded, status, importance]);
        this.dispatchDecode(blocks, decodePipeline, [params, encoded, decoded]);
        const [statusWords, bytes] = await allSettled([
          readBack(device, status, statusBytes(blocks), opts?.signal),
          opts?.bytes ? readBack(device, encoded, byteCount, opts.signal) : undefined,
        ]);
        const { nonFinite, cpuBlocks } = parseStatus(statusWords);
        if (nonFinite) assertFinite(x.values, shape, opts?.tensorName); // throws the CPU's message
        // Blocks the kernel sent to the CPU reference: encoded and decoded here, written over the GPU's.
        const scratch = new Uint8Array(cpuBlocks.length > 0 && !bytes ? byteCount : 0);
        for (const block of cpuBlocks) {
          const target = bytes ?? scratch;
          this.encodeBlockOnCpu(x.values, cols, block, target, imatrix);
          const q = target.subarray(block * this.format.blockBytes, (block + 1) * this.format.blockBytes);
          writeFloats(device, decoded, block * QK_K, this.format.decode(q, { rows: 1, cols: QK_K }));
        }
        this.blockCounts.gpu += blocks - cpuBlocks.length;
        this.blockCounts.cpu += cpuBlocks.length;
        return { decoded, ...(bytes ? { bytes } : {}) };
      });
    });
  }

  /** Block `block` of a chunk re-encoded by the format's CPU reference, into the chunk's bytes. */
  private encodeBlockOnCpu(chunk: Float32Array, cols: number, block: number, bytes: Uint8Array, imatrix: Float32Array | undefined): void {
    const column = (block % (cols / QK_K)) * QK_K;
    const one = { rows: 1, cols: QK_K };
    const x = chunk.subarray(block * QK_K, (block + 1) * QK_K);
    const encoded = this.format.encode(x, one, imatrix ? { imatrix: imatrix.subarray(column, column + QK_K) } : {});
    bytes.set(encoded, block * this.format.blockBytes);
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    const { rows, cols } = shape;
    const y = new Float32Array(rows * cols);
    if (y.length === 0) return y;
    const { device } = this.dev;
    const pipeline = await this.pipeline(`decode_${this.format.id}`);
    const rowBytes = this.format.encodedBytes({ rows: 1, cols });
    const blocksPerRow = cols / QK_K;
    await forEachChunk(rows, rowsPerChunk(this.dev, this.options, this.format, cols), opts?.signal, async (r0, n) => {
      const blocks = n * blocksPerRow;
      const params = this.params(n, cols);
      const encoded = uploadStorage(device, q.subarray(r0 * rowBytes, (r0 + n) * rowBytes), "kquants encoded");
      const values = outputStorage(device, n * cols * 4, "kquants values");
      await withBuffers([params, encoded, values], async () => {
        this.dispatchDecode(blocks, pipeline, [params, encoded, values]);
        const bytes = await readBack(device, values, n * cols * 4, opts?.signal);
        y.set(new Float32Array(bytes.buffer), r0 * cols);
      });
    });
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

/** The GPU quantizer of a K-quant format, or undefined for other formats. */
export function kquantGpuQuantizer(dev: LabDevice, format: QuantFormat, options: ChunkOptions = {}): GpuQuantizer | undefined {
  if (!GGML_K_FORMATS.includes(format)) return undefined;
  return new KQuantGpuQuantizer(dev, format, options);
}

registerGpuQuantizers((dev, format) => kquantGpuQuantizer(dev, format));
