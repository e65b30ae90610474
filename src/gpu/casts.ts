/**
 * WGSL kernels of the element-wise casts f16, bf16, fp8-e4m3 (saturating) and fp8-e5m2 (shaders/casts.wgsl):
 * the bytes and float32 bits of the CPU reference src/quant/casts.ts on every device, since the kernels
 * use integer operations on the float bits only (no division, no float rounding to depend on).
 *
 * A cast has no rows: the tensor is streamed as flat runs of weights (a multiple of 4, so every chunk's
 * codes start on a whole u32 word). NaN and +-Inf weights raise a flag, and encode throws the CPU's
 * QuantInputError.
 */
import castsWgsl from "../../shaders/casts.wgsl?raw";
import { CAST_FORMATS } from "../quant/casts.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { type ChunkOptions, EncoderFlags, familyShader, forEachChunk, allSettled, keepOnSuccess, unitsPerChunk, withBuffers, workgroupsFor, zeroPadded } from "./kernel-chunks.ts";
import { registerGpuQuantizers, type DeviceWeights, type GpuQuantizer, type RoundTrip, type RoundTripOptions } from "./quantizer.ts";
import { checkDecodeInput, checkEncodeInput } from "./validate.ts";

const SHADER = familyShader(castsWgsl, "casts.wgsl");
/** WORKGROUP_SIZE in casts.wgsl. */
const WORKGROUP_SIZE = 256;
/** Weights per chunk are a multiple of this: the encoders take 4 weights (one 16-byte load) at a time. */
const CHUNK_MULTIPLE = 4;

class CastGpuQuantizer implements GpuQuantizer {
  /** Bytes per code: 2 (f16, bf16) or 1 (fp8). */
  private readonly codeBytes: number;
  /** The entry points' suffix: "f16", "bf16", "fp8_e4m3", "fp8_e5m2". */
  private readonly entry: string;

  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly options: ChunkOptions,
  ) {
    this.codeBytes = format.blockBytes;
    this.entry = format.id.replace(/-/g, "_");
  }

  /** Weights per dispatch: input (4 bytes per weight) and output both within the limits. */
  private weightsPerChunk(): number {
    return unitsPerChunk(this.dev, this.options, 4 * CHUNK_MULTIPLE) * CHUNK_MULTIPLE;
  }

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, "casts.wgsl");
  }

  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (out.length === 0) return out;
    const { device } = this.dev;
    const pipeline = await this.pipeline(`encode_${this.entry}`);
    const perChunk = this.weightsPerChunk();
    const flags = new EncoderFlags(device);
    try {
      await forEachChunk(x.length, perChunk, opts?.signal, async (e0, n) => {
        const params = uniformU32(device, [n, 0], "casts params");
        const values = uploadStorage(device, zeroPadded(x.subarray(e0, e0 + n), 4), "casts values");
        // One invocation per 4 weights, writing 8 (f16, bf16) or 4 (fp8) bytes.
        const quads = Math.ceil(n / 4);
        const encoded = outputStorage(device, quads * 4 * this.codeBytes, "casts encoded");
        await withBuffers([params, values, encoded], async () => {
          dispatch(device, pipeline, [params, values, encoded, flags.buffer], workgroupsFor(quads, WORKGROUP_SIZE), "casts encode");
          out.set(await readBack(device, encoded, n * this.codeBytes, opts?.signal), e0 * this.codeBytes);
        });
      });
      await flags.check(this.format, x, shape, opts);
    } finally {
      flags.destroy();
    }
    return out;
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    const n = shape.rows * shape.cols;
    const { device } = this.dev;
    const decoded = outputStorage(device, n * 4, "casts decoded");
    if (n === 0) return { decoded, ...(opts?.bytes ? { bytes: new Uint8Array(0) } : {}) };
    return keepOnSuccess(decoded, async () => {
      const encodePipeline = await this.pipeline(`encode_${this.entry}`);
      const decodePipeline = await this.pipeline(`decode_${this.entry}`);
      const params = uniformU32(device, [n, 0], "casts params");
      const quads = Math.ceil(n / 4);
      const encoded = outputStorage(device, quads * 4 * this.codeBytes, "casts encoded");
      const flags = new EncoderFlags(device);
      return withBuffers([params, encoded, flags.buffer], async () => {
        dispatch(device, encodePipeline, [params, x.buffer, encoded, flags.buffer], workgroupsFor(quads, WORKGROUP_SIZE), "casts encode");
        dispatch(device, decodePipeline, [params, encoded, decoded], workgroupsFor(n, WORKGROUP_SIZE), "casts decode");
        const [bytes] = await allSettled([
          opts?.bytes ? readBack(device, encoded, n * this.codeBytes, opts.signal) : undefined,
          flags.check(this.format, x.values, shape, opts),
        ]);
        return { decoded, ...(bytes ? { bytes } : {}) };
      });
    });
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    const y = new Float32Array(shape.rows * shape.cols);
    if (y.length === 0) return y;
    const { device } = this.dev;
    const pipeline = await this.pipeline(`decode_${this.entry}`);
    const perChunk = this.weightsPerChunk();
    await forEachChunk(y.length, perChunk, opts?.signal, async (e0, n) => {
      const params = uniformU32(device, [n, 0], "casts params");
      const encoded = uploadStorage(device, q.subarray(e0 * this.codeBytes, (e0 + n) * this.codeBytes), "casts encoded");
      const decoded = outputStorage(device, n * 4, "casts decoded");
      await withBuffers([params, encoded, decoded], async () => {
        dispatch(device, pipeline, [params, encoded, decoded], workgroupsFor(n, WORKGROUP_SIZE), "casts decode");
        const bytes = await readBack(device, decoded, n * 4, opts?.signal);
        y.set(new Float32Array(bytes.buffer), e0);
      });
    });
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

/** The GPU quantizer of a cast format, or undefined for other formats. */
export function castGpuQuantizer(dev: LabDevice, format: QuantFormat, options: ChunkOptions = {}): GpuQuantizer | undefined {
  if (!CAST_FORMATS.includes(format)) return undefined;
  return new CastGpuQuantizer(dev, format, options);
}

registerGpuQuantizers((dev, format) => castGpuQuantizer(dev, format));
