/**
 * Where `quantlab encode` and `decode` run a format: the TypeScript CPU reference (the default in
 * Node), or the WGSL kernels through Dawn (`--backend webgpu`), streamed in chunks of whole rows that
 * fit the device's buffer limits. Both give the same bytes; the GPU tests check that.
 */
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";
import type { LabDevice } from "../gpu/device.ts";
import { floatArithmeticOf } from "../gpu/float-probe.ts";
import { gpuQuantizerFor, maxRowsPerChunk, type GpuQuantizer } from "../gpu/quantizer.ts";
import { requestNodeLabDevice } from "../node/webgpu.ts";
import { encodesRowsIndependently } from "../pipeline/quantize-tensor.ts";
import { EXIT, type CliIO } from "./command.ts";
import { CliInputError, reportCommandError, type Backend } from "./quant-args.ts";

export interface FormatRunner {
  readonly backend: Backend;
  /** One line about where the work runs ("CPU reference", "WebGPU: google swiftshader ..."). */
  readonly where: string;
  encode(format: QuantFormat, x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Promise<Uint8Array>;
  decode(format: QuantFormat, q: Uint8Array, shape: MatrixShape): Promise<Float32Array>;
  close(): void;
}

/** The environment has no usable GPU: not the user's input, so exit 1 with the reason. */
export class BackendUnavailableError extends Error {
  override readonly name = "BackendUnavailableError";
}

const cpuRunner: FormatRunner = {
  backend: "cpu",
  where: "CPU reference (TypeScript)",
  encode: async (format, x, shape, opts) => format.encode(x, shape, opts),
  decode: async (format, q, shape) => format.decode(q, shape),
  close() {},
};

/** `warn` gets one line for people when the GPU's results could differ from llama.cpp's. */
export async function openRunner(backend: Backend, warn: (line: string) => void = () => {}): Promise<FormatRunner> {
  return backend === "cpu" ? cpuRunner : new GpuRunner(await openGpuDevice(), warn);
}

/** Dawn's device with every kernel family registered; BackendUnavailableError says why there is none. */
export async function openGpuDevice(): Promise<LabDevice> {
  const { status, device } = await requestNodeLabDevice();
  if (!device) throw new BackendUnavailableError(status.kind === "cpu" ? status.reason : "no WebGPU device");
  // Importing the kernel families registers their factories with gpuQuantizerFor.
  await import("../gpu/kernels.ts");
  return device;
}

/** One line about the device, for people. */
export function describeDevice(dev: LabDevice): string {
  const i = dev.info;
  return `WebGPU (Dawn): ${[i.vendor, i.architecture, i.description].filter(Boolean).join(" ")}`;
}

/** Rows [start, end) of a chunk plan: whole rows, at most `rowsPerChunk` each. */
export function chunkRows(rows: number, rowsPerChunk: number): [number, number][] {
  const chunks: [number, number][] = [];
  for (let start = 0; start < rows; start += rowsPerChunk) chunks.push([start, Math.min(rows, start + rowsPerChunk)]);
  return chunks;
}

class GpuRunner implements FormatRunner {
  readonly backend = "webgpu" as const;
  readonly where: string;
  private readonly quantizers = new Map<string, GpuQuantizer>();

  private warned = false;

  constructor(
    private readonly dev: LabDevice,
    private readonly warn: (line: string) => void,
  ) {
    this.where = describeDevice(dev);
  }

  /**
   * The ggml encoders give llama.cpp's bytes only where f32 arithmetic is the CPU's (src/gpu/ggml-legacy.ts
   * explains). The user asked for the GPU, so it runs; where the float probe finds a difference, say so.
   */
  private async warnIfGgmlMayDiffer(format: QuantFormat): Promise<void> {
    if (format.family !== "gguf" || this.warned) return;
    this.warned = true;
    const a = await floatArithmeticOf(this.dev);
    const differs = [a.fusedMultiplyAdd && "fuses multiply-add", !a.exactDivision && "divides inexactly", !a.exactSqrt && "takes inexact square roots"].filter(Boolean);
    if (differs.length > 0) {
      this.warn(`this GPU ${differs.join(" and ")}: some ${format.id} blocks may differ from llama.cpp's (--backend cpu gives its bytes)`);
    }
  }

  private quantizer(format: QuantFormat): GpuQuantizer {
    let q = this.quantizers.get(format.id);
    if (!q) {
      q = gpuQuantizerFor(this.dev, format);
      if (!q) throw new CliInputError(`${format.id} has no WGSL kernel yet; --backend cpu runs its CPU reference`);
      this.quantizers.set(format.id, q);
    }
    return q;
  }

  /**
   * Chunks of whole rows that fit one storage binding. A format that encodes the tensor as a whole
   * (one scale per tensor, the bitsandbytes layouts) must fit in one chunk.
   */
  private plan(format: QuantFormat, shape: MatrixShape): [number, number][] {
    const { rows, cols } = shape;
    const chunks = chunkRows(rows, maxRowsPerChunk(this.dev, format, cols));
    if (chunks.length > 1 && !encodesRowsIndependently(format)) {
      throw new CliInputError(
        `${format.id} encodes the ${rows}x${cols} tensor as a whole, and it does not fit the device's ` +
          `${this.dev.info.limits.maxStorageBufferBindingSize}-byte storage binding; use --backend cpu`,
      );
    }
    return chunks;
  }

  async encode(format: QuantFormat, x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): Promise<Uint8Array> {
    const q = this.quantizer(format);
    await this.warnIfGgmlMayDiffer(format);
    const { cols } = shape;
    const chunks = this.plan(format, shape);
    if (chunks.length === 1) return q.encode(x, shape, opts);
    const out = new Uint8Array(format.encodedBytes(shape));
    let at = 0;
    for (const [a, b] of chunks) {
      const part = await q.encode(x.subarray(a * cols, b * cols), { rows: b - a, cols }, opts);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  async decode(format: QuantFormat, bytes: Uint8Array, shape: MatrixShape): Promise<Float32Array> {
    const q = this.quantizer(format);
    const { cols } = shape;
    const chunks = this.plan(format, shape);
    if (chunks.length === 1) return q.decode(bytes, shape);
    const out = new Float32Array(shape.rows * cols);
    let at = 0;
    for (const [a, b] of chunks) {
      const n = format.encodedBytes({ rows: b - a, cols });
      out.set(await q.decode(bytes.subarray(at, at + n), { rows: b - a, cols }), a * cols);
      at += n;
    }
    return out;
  }

  close(): void {
    for (const q of this.quantizers.values()) q.destroy();
    this.quantizers.clear();
    this.dev.device.destroy();
  }
}

/** reportCommandError, plus: a missing GPU is an environment failure (exit 1) with its reason on one line. */
export function reportRunError(command: string, e: unknown, io: CliIO): number {
  if (e instanceof BackendUnavailableError) {
    io.err(`quantlab ${command}: --backend webgpu: ${e.message}\n`);
    return EXIT.failure;
  }
  return reportCommandError(command, e, io);
}
