/**
 * WGSL kernels of llama.cpp's legacy block formats q4_0, q4_1, q5_0, q5_1, q8_0 and q8_K
 * (shaders/ggml-legacy.wgsl): encode (ggml's reference encoders, and the importance-weighted ones of
 * q4_0..q5_1 when an imatrix is given) and decode, giving the bytes and float32 bits of the CPU
 * reference src/quant/ggml/legacy.ts, itself bit-exact with ggml.
 *
 * What the kernels assume of the device, and what the worker should do where it does not hold
 * --------------------------------------------------------------------------------------------
 * WGSL lets a device fuse a*b + c into an FMA, divide and take sqrt a few ulp off, rewrite a division
 * by a constant as a multiplication, and flush subnormals to zero; ggml's C does none of that.
 * probeFloatArithmetic (src/gpu/float-probe.ts) measures each on a device. How the kernels cope:
 *  - Decoding is exact everywhere: an fp16 scale times a small integer is exact in f32, q*d + m rounds
 *    once fused or not, fp16 is converted with integer operations.
 *  - The reference encoders compute their scales (max / -8, 1 / d, (max - min) / 15, -127 / max, ...)
 *    with the device's `/` where the probe found it exact, else with div_f32_exact (integer operations,
 *    correctly rounded anywhere, several times slower). What they still assume: that
 *    x*id + 8.5 (and (x - min)*id + 0.5) is not fused. (ggml built with contraction changed no reference
 *    block of the golden vectors, ../shared/golden/ggml/README.md, but a rare block can differ.)
 *  - The importance-weighted encoders search with many divisions, a sqrt and long sums: they need
 *    exact division and sqrt and no fusing. Their float constants go through no_fold, so the compiler's
 *    constant rewrites do not matter.
 *  - Subnormals: on a device that flushes them (SwiftShader does), the kernels flag the rows whose
 *    arithmetic could meet one (tiny weights; the rules are at the top of the WGSL file) and this module
 *    computes those rows with the CPU reference (cpuAssistedRows counts them). Exact either way.
 * encodeIsExact(arithmetic, weighted) sums this up. Where it is false (a real GPU that fuses, say), the
 * worker should run these encoders on the CPU reference whenever byte-exact GGUF output is wanted (the
 * CLI's `encode`, anything written to a file) and say so; for the metrics the GPU bytes are still
 * blocks of the same format and quality (the measured error differs only in the rare differing block).
 * Decoding can stay on the GPU everywhere. On SwiftShader (unfused, exact division and sqrt, flushes
 * subnormals) every path is exact, as the browser tests check against the CPU and llama.cpp's bytes.
 *
 * NaN and ±Inf weights: the kernels raise a flag, and encode then throws the CPU's QuantInputError
 * (assertFinite: first position and count). Other bad input is rejected before dispatch (validate.ts).
 */
import divisionWgsl from "../../shaders/common/division.wgsl?raw";
import legacyWgsl from "../../shaders/ggml-legacy.wgsl?raw";
import kquantSearchWgsl from "../../shaders/kquant-search.wgsl?raw";
import { assertFinite } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import { GGML_LEGACY_FORMATS } from "../quant/ggml/legacy.ts";
import { floatArithmeticOf, type FloatArithmetic } from "./float-probe.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage, writeFloats } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { forEachChunk, allSettled, keepOnSuccess, rowsPerChunk, withBuffers, workgroupsFor, type ChunkOptions } from "./kernel-chunks.ts";
import { registerGpuQuantizers, type DeviceWeights, type GpuQuantizer, type RoundTrip, type RoundTripOptions } from "./quantizer.ts";
import { checkDecodeInput, checkEncodeInput } from "./validate.ts";
import { withCommonWgsl } from "./wgsl.ts";

/**
 * Whether these kernels' encoded bytes equal the CPU reference's (and llama.cpp's) on a device with this
 * arithmetic, for the reference encoders or (weighted) the importance-weighted ones. See the top of the file.
 */
export function encodeIsExact(arithmetic: FloatArithmetic, weighted: boolean): boolean {
  if (arithmetic.fusedMultiplyAdd) return false;
  return !weighted || (arithmetic.exactDivision && arithmetic.exactSqrt);
}

const SHADER = withCommonWgsl(legacyWgsl, "ggml-legacy.wgsl", [
  ["common/division.wgsl", divisionWgsl],
  ["kquant-search.wgsl", kquantSearchWgsl],
]);
/** @workgroup_size of every entry point in ggml-legacy.wgsl. */
const WORKGROUP_SIZE = 64;

/** Entry points of one format; encodeImatrix is absent where ggml ignores the importance matrix. */
interface LegacyEntryPoints {
  encode: string;
  encodeImatrix?: string;
  decode: string;
  /** The decoder takes a status buffer (binding 3) to flag rows for the CPU: q8_K's, whose scale is an f32. */
  decodeFlagsRows?: true;
}

const ENTRY_POINTS: Readonly<Record<string, LegacyEntryPoints>> = {
  q4_0: { encode: "encode_q4_0", encodeImatrix: "encode_q4_0_imatrix", decode: "decode_q4_0" },
  q4_1: { encode: "encode_q4_1", encodeImatrix: "encode_q4_1_imatrix", decode: "decode_q4_1" },
  q5_0: { encode: "encode_q5_0", encodeImatrix: "encode_q5_0_imatrix", decode: "decode_q5_0" },
  q5_1: { encode: "encode_q5_1", encodeImatrix: "encode_q5_1_imatrix", decode: "decode_q5_1" },
  q8_0: { encode: "encode_q8_0", decode: "decode_q8_0" },
  q8_K: { encode: "encode_q8_K", decode: "decode_q8_K", decodeFlagsRows: true },
};

export interface LegacyGpuOptions extends ChunkOptions {
  /**
   * Divide with div_f32_exact even where the device's `/` is exact: the path a device with inexact
   * division takes, so tests can run it here.
   */
  integerDivision?: boolean;
}

/**
 * Blocks one encoder invocation writes: 2 where a block does not end on a 4-byte boundary (q4_0's 18,
 * q5_0's 22, q8_0's 34 bytes), so that each invocation owns whole u32 words. Mirrors unit_blocks_of()
 * in the shader.
 */
function unitBlocks(format: QuantFormat): number {
  return format.blockBytes % 4 === 0 ? 1 : 2;
}


/** What a chunk's `status` buffer says: NaN/Inf seen, and which rows (chunk indices) need the CPU. */
interface ChunkStatus {
  nonFinite: boolean;
  cpuRows: number[];
}

/** The shader's status buffer: one flag word, then one bit per row. */
const statusBytes = (rows: number) => 4 * (1 + Math.ceil(rows / 32));

function parseStatus(bytes: Uint8Array<ArrayBuffer>, rows: number): ChunkStatus {
  const words = new Uint32Array(bytes.buffer, 0, bytes.length / 4);
  const cpuRows: number[] = [];
  for (let r = 0; r < rows; r++) if ((words[1 + (r >>> 5)]! >>> (r & 31)) & 1) cpuRows.push(r);
  return { nonFinite: words[0] !== 0, cpuRows };
}

export class LegacyGpuQuantizer implements GpuQuantizer {
  constructor(
    private readonly dev: LabDevice,
    readonly format: QuantFormat,
    private readonly entryPoints: LegacyEntryPoints,
    private readonly options: LegacyGpuOptions,
  ) {}

  /**
   * The device-dependent words of Params: guard_subnormals (1 where the device flushes subnormals) and
   * exact_division (1 where its `/` is correctly rounded), measured once per device.
   */
  private async deviceParams(): Promise<[guardSubnormals: number, exactDivision: number]> {
    const arithmetic = await floatArithmeticOf(this.dev);
    return [arithmetic.keepsSubnormals ? 0 : 1, arithmetic.exactDivision && !this.options.integerDivision ? 1 : 0];
  }

  private pipeline(entryPoint: string): Promise<GPUComputePipeline> {
    return computePipeline(this.dev.device, SHADER, entryPoint, "ggml-legacy.wgsl");
  }

  /**
   * Rows of the last encode or decode that the CPU reference computed because the kernel flagged them
   * (weights of subnormal magnitude: see the top of shaders/ggml-legacy.wgsl). Usually 0.
   */
  cpuAssistedRows = 0;

  async encode(x: Float32Array, shape: MatrixShape, opts?: EncodeOptions & { signal?: AbortSignal }): Promise<Uint8Array> {
    checkEncodeInput(this.format, x, shape, opts);
    this.cpuAssistedRows = 0;
    const { rows, cols } = shape;
    const out = new Uint8Array(this.format.encodedBytes(shape));
    if (out.length === 0) return out;
    const { device } = this.dev;
    const imatrix = this.entryPoints.encodeImatrix !== undefined ? opts?.imatrix : undefined;
    const encodePipeline = await this.pipeline(imatrix ? this.entryPoints.encodeImatrix! : this.entryPoints.encode);
    const sigma2Pipeline = imatrix ? await this.pipeline("row_sigma2") : undefined;
    const importance = imatrix ? uploadStorage(device, imatrix, "ggml-legacy importance") : undefined;
    const deviceWords = await this.deviceParams();
    const rowBytes = this.format.encodedBytes({ rows: 1, cols });
    await withBuffers([importance], () =>
      forEachChunk(rows, rowsPerChunk(this.dev, this.options, this.format, cols), opts?.signal, async (r0, n) => {
        const chunk = x.subarray(r0 * cols, (r0 + n) * cols);
        const { bytes, status } = await this.encodeChunk(chunk, n, cols, deviceWords, encodePipeline, sigma2Pipeline, importance, opts?.signal);
        if (status.nonFinite) assertFinite(x, shape, opts?.tensorName); // throws the CPU's message
        out.set(bytes, r0 * rowBytes);
        for (const r of status.cpuRows) {
          const row = { rows: 1, cols };
          const values = x.subarray((r0 + r) * cols, (r0 + r + 1) * cols);
          out.set(this.format.encode(values, row, imatrix ? { imatrix } : undefined), (r0 + r) * rowBytes);
          this.cpuAssistedRows++;
        }
      }),
    );
    return out;
  }

  private async encodeChunk(
    chunk: Float32Array,
    rows: number,
    cols: number,
    deviceWords: readonly number[],
    encodePipeline: GPUComputePipeline,
    sigma2Pipeline: GPUComputePipeline | undefined,
    importance: GPUBuffer | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Uint8Array; status: ChunkStatus }> {
    const { device } = this.dev;
    const byteCount = this.format.encodedBytes({ rows, cols });
    const weights = uploadStorage(device, chunk, "ggml-legacy weights");
    const params = this.params(rows, cols, deviceWords);
    const encoded = outputStorage(device, byteCount, "ggml-legacy encoded");
    const status = outputStorage(device, statusBytes(rows), "ggml-legacy status");
    return withBuffers([weights, params, encoded, status], async () => {
      const sigma2 = this.dispatchEncode(weights, rows, cols, params, encoded, status, encodePipeline, sigma2Pipeline, importance);
      const [bytes, statusWords] = await Promise.all([
        readBack(device, encoded, byteCount, signal),
        readBack(device, status, statusBytes(rows), signal),
      ]).finally(() => sigma2?.destroy());
      return { bytes, status: parseStatus(statusWords, rows) };
    });
  }

  /** The uniform Params of a chunk (the encoders and decoders read the same). */
  private params(rows: number, cols: number, deviceWords: readonly number[]): GPUBuffer {
    const blocksPerRow = cols / this.format.blockWeights;
    return uniformU32(this.dev.device, [rows * blocksPerRow, blocksPerRow, rows, cols, 0, ...deviceWords], "ggml-legacy params");
  }

  /**
   * Queues a chunk's encode into `encoded` and `status`; the importance-weighted encoders run row_sigma2
   * first, into a buffer returned for the caller to free once the work is done.
   */
  private dispatchEncode(
    weights: GPUBuffer,
    rows: number,
    cols: number,
    params: GPUBuffer,
    encoded: GPUBuffer,
    status: GPUBuffer,
    encodePipeline: GPUComputePipeline,
    sigma2Pipeline: GPUComputePipeline | undefined,
    importance: GPUBuffer | undefined,
  ): GPUBuffer | undefined {
    const { device } = this.dev;
    const blocks = (rows * cols) / this.format.blockWeights;
    const units = workgroupsFor(Math.ceil(blocks / unitBlocks(this.format)), WORKGROUP_SIZE);
    if (sigma2Pipeline && importance) {
      const sigma2 = outputStorage(device, rows * 4, "ggml-legacy sigma2");
      dispatch(device, sigma2Pipeline, [params, weights, sigma2, status], workgroupsFor(rows, WORKGROUP_SIZE), "ggml-legacy row_sigma2");
      dispatch(device, encodePipeline, [params, weights, encoded, status, importance, sigma2], units, "ggml-legacy encode");
      return sigma2;
    }
    dispatch(device, encodePipeline, [params, weights, encoded, status], units, "ggml-legacy encode");
    return undefined;
  }

  async roundTrip(x: DeviceWeights, shape: MatrixShape, opts?: RoundTripOptions): Promise<RoundTrip> {
    checkEncodeInput(this.format, x.values, shape, opts);
    this.cpuAssistedRows = 0;
    const { rows, cols } = shape;
    const { device } = this.dev;
    const byteCount = this.format.encodedBytes(shape);
    const decoded = outputStorage(device, rows * cols * 4, "ggml-legacy decoded");
    if (rows * cols === 0) return { decoded, ...(opts?.bytes ? { bytes: new Uint8Array(0) } : {}) };
    return keepOnSuccess(decoded, async () => {
      const imatrix = this.entryPoints.encodeImatrix !== undefined ? opts?.imatrix : undefined;
      const encodePipeline = await this.pipeline(imatrix ? this.entryPoints.encodeImatrix! : this.entryPoints.encode);
      const sigma2Pipeline = imatrix ? await this.pipeline("row_sigma2") : undefined;
      const decodePipeline = await this.pipeline(this.entryPoints.decode);
      const params = this.params(rows, cols, await this.deviceParams());
      const importance = imatrix ? uploadStorage(device, imatrix, "ggml-legacy importance") : undefined;
      const encoded = outputStorage(device, byteCount, "ggml-legacy encoded");
      const status = outputStorage(device, statusBytes(rows), "ggml-legacy status");
      const decodeStatus = this.entryPoints.decodeFlagsRows ? outputStorage(device, statusBytes(rows), "ggml-legacy decode status") : undefined;
      const scratch: (GPUBuffer | undefined)[] = [params, importance, encoded, status, decodeStatus];
      return withBuffers(scratch, async () => {
        scratch.push(this.dispatchEncode(x.buffer, rows, cols, params, encoded, status, encodePipeline, sigma2Pipeline, importance));
        const decodeBindings = decodeStatus ? [params, encoded, decoded, decodeStatus] : [params, encoded, decoded];
        dispatch(device, decodePipeline, decodeBindings, workgroupsFor(rows * (cols / this.format.blockWeights), WORKGROUP_SIZE), "ggml-legacy decode");
        const signal = opts?.signal;
        const [statusWords, decodeStatusWords, readBytes] = await allSettled([
          readBack(device, status, statusBytes(rows), signal),
          decodeStatus ? readBack(device, decodeStatus, statusBytes(rows), signal) : undefined,
          opts?.bytes ? readBack(device, encoded, byteCount, signal) : undefined,
        ]);
        const encodeStatus = parseStatus(statusWords, rows);
        if (encodeStatus.nonFinite) assertFinite(x.values, shape, opts?.tensorName); // throws the CPU's message
        const decodeRows = decodeStatusWords ? parseStatus(decodeStatusWords, rows).cpuRows : [];
        // The rows the kernels left to the CPU reference: encoded (and decoded) here, written over the GPU's.
        let bytes = readBytes;
        if (decodeRows.length > 0 && !bytes) bytes = await readBack(device, encoded, byteCount, signal);
        const rowBytes = byteCount / rows;
        const one = { rows: 1, cols };
        for (const r of new Set([...encodeStatus.cpuRows, ...decodeRows])) {
          let q: Uint8Array | undefined = bytes?.subarray(r * rowBytes, (r + 1) * rowBytes);
          if (encodeStatus.cpuRows.includes(r)) {
            q = this.format.encode(x.values.subarray(r * cols, (r + 1) * cols), one, imatrix ? { imatrix } : undefined);
            bytes?.set(q, r * rowBytes);
          }
          writeFloats(device, decoded, r * cols, this.format.decode(q!, one));
          this.cpuAssistedRows++;
        }
        return { decoded, ...(opts?.bytes ? { bytes: bytes! } : {}) };
      });
    });
  }

  async decode(q: Uint8Array, shape: MatrixShape, opts?: { signal?: AbortSignal }): Promise<Float32Array> {
    checkDecodeInput(this.format, q, shape);
    this.cpuAssistedRows = 0;
    const { rows, cols } = shape;
    const y = new Float32Array(rows * cols);
    if (y.length === 0) return y;
    const { device } = this.dev;
    const pipeline = await this.pipeline(this.entryPoints.decode);
    const deviceWords = await this.deviceParams();
    const rowBytes = this.format.encodedBytes({ rows: 1, cols });
    const blocksPerRow = cols / this.format.blockWeights;
    await forEachChunk(rows, rowsPerChunk(this.dev, this.options, this.format, cols), opts?.signal, async (r0, n) => {
      const blocks = n * blocksPerRow;
      const chunk = q.subarray(r0 * rowBytes, (r0 + n) * rowBytes);
      const params = uniformU32(device, [blocks, blocksPerRow, n, cols, 0, ...deviceWords], "ggml-legacy params");
      const encoded = uploadStorage(device, chunk, "ggml-legacy encoded");
      const values = outputStorage(device, n * cols * 4, "ggml-legacy values");
      const status = this.entryPoints.decodeFlagsRows ? outputStorage(device, statusBytes(n), "ggml-legacy status") : undefined;
      await withBuffers([params, encoded, values, status], async () => {
        dispatch(device, pipeline, status ? [params, encoded, values, status] : [params, encoded, values], workgroupsFor(blocks, WORKGROUP_SIZE), "ggml-legacy decode");
        const [bytes, statusWords] = await Promise.all([
          readBack(device, values, n * cols * 4, opts?.signal),
          status ? readBack(device, status, statusBytes(n), opts?.signal) : undefined,
        ]);
        y.set(new Float32Array(bytes.buffer), r0 * cols);
        for (const r of statusWords ? parseStatus(statusWords, n).cpuRows : []) {
          const row = chunk.subarray(r * rowBytes, (r + 1) * rowBytes);
          y.set(this.format.decode(row, { rows: 1, cols }), (r0 + r) * cols);
          this.cpuAssistedRows++;
        }
      });
    });
    return y;
  }

  destroy(): void {
    // Pipelines are cached per device by buffers.ts; every buffer is freed after its chunk.
  }
}

/** The GPU quantizer of a legacy ggml format, or undefined for other formats. */
export function legacyGpuQuantizer(dev: LabDevice, format: QuantFormat, options: LegacyGpuOptions = {}): LegacyGpuQuantizer | undefined {
  const entryPoints = ENTRY_POINTS[format.id];
  if (!entryPoints || !GGML_LEGACY_FORMATS.includes(format)) return undefined;
  return new LegacyGpuQuantizer(dev, format, entryPoints, options);
}

registerGpuQuantizers((dev, format) => legacyGpuQuantizer(dev, format));
