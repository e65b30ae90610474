/**
 * GPTQ on WebGPU: the heavy parts as WGSL kernels, the bookkeeping shared with the CPU reference
 * (src/quant/gptq.ts planGptq: settings, dead columns, static groups, act-order, dampening and its retries).
 *
 *  - GpuHessian: the calibration Gram matrix X^T X accumulated on the GPU chunk by chunk of tokens
 *    (shaders/matmul.wgsl with A = X read transposed; only the upper triangle's tiles), the clip sample's
 *    Gram matrix likewise (a token stride), and the per-channel mean/max |x| and the NaN check on the CPU in
 *    the same pass over each chunk.
 *  - gpuUpperCholeskyOfInverse: U with H^-1 = U^T U, blocked (shaders/cholesky.wgsl): per block of 64
 *    columns the diagonal block's reversed Cholesky factor and its inverse in one workgroup, and the panel,
 *    the update of H and U's block row as matrix multiplies (shaders/matmul.wgsl), all in one compute pass.
 *  - gpuGptqQuantize: per block of 128 columns, the sweep (shaders/gptq.wgsl, one thread per row) and the lazy
 *    batch update W[:, i2:] -= Err1 U[i1:i2, i2:] (shaders/matmul.wgsl).
 * Everything is f32 on the GPU, as in the reference. A 4096 x 4096 layer needs n^2 * 4 = 64 MiB per matrix
 * (H, R, U, W, Q, codes): each within the default 128 MiB binding limit. gpuGptqBuffers lists every buffer
 * each step binds, with the sizes the steps allocate; a layer with one over the device's limits is refused
 * before anything is allocated.
 */
import matmulShader from "../../shaders/matmul.wgsl?raw";
import choleskyShader from "../../shaders/cholesky.wgsl?raw";
import gptqShader from "../../shaders/gptq.wgsl?raw";
import type { LabDevice } from "./device.ts";
import { computePipeline, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import { addChannelStats, assertFiniteActivations, type CalibrationStats } from "../quant/hessian.ts";
import { dampedHessian, nextDamping, planGptq, type GptqCalibration, type GptqOptions, type GptqResult } from "../quant/gptq.ts";
import { QuantInputError } from "../quant/errors.ts";
import type { MatrixShape } from "../quant/format.ts";

/** The block of C one matmul workgroup computes (shaders/matmul.wgsl: 8 x 8 invocations of 8 x 4 each). */
const MATMUL_TILE_M = 64;
const MATMUL_TILE_N = 32;
/** The sweep kernel keeps a block in registers: at most this many columns. */
export const GPU_GPTQ_BLOCK = 128;
const SWEEP_WORKGROUP = 64;

// ---------------------------------------------------------------------------------------------------------
// Matrix multiply

/** One C = beta C + alpha A B over sub-blocks addressed by (offset, row stride, column stride), in f32 words. */
export interface MatmulCall {
  m: number;
  n: number;
  k: number;
  a: GPUBuffer;
  b: GPUBuffer;
  c: GPUBuffer;
  aOff?: number;
  aRow: number;
  aCol: number;
  bOff?: number;
  bRow: number;
  bCol: number;
  cOff?: number;
  cRow: number;
  alpha?: number;
  beta?: number;
  /** Skip the tiles wholly below the diagonal (symmetric results). */
  upperOnly?: boolean;
  /** B is upper triangular (zero below its diagonal): its zeros are not multiplied. */
  bUpper?: boolean;
}

export function matmulPipeline(device: GPUDevice): Promise<GPUComputePipeline> {
  return computePipeline(device, matmulShader, "matmul", "matmul.wgsl");
}

/** Records one matmul dispatch in `pass`; returns its uniform buffer (the caller destroys it after submit). */
export function encodeMatmul(device: GPUDevice, pass: GPUComputePassEncoder, pipeline: GPUComputePipeline, call: MatmulCall): GPUBuffer {
  const words = new ArrayBuffer(16 * 4);
  const u32 = new Uint32Array(words);
  const f32 = new Float32Array(words);
  u32.set([call.m, call.n, call.k, call.upperOnly ? 1 : 0, call.aOff ?? 0, call.aRow, call.aCol, call.bOff ?? 0, call.bRow, call.bCol, call.cOff ?? 0, call.cRow]);
  f32[12] = call.alpha ?? 1;
  f32[13] = call.beta ?? 0;
  u32[14] = call.bUpper ? 1 : 0;
  const params = uploadUniform(device, words, "matmul params");
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      label: "matmul",
      layout: pipeline.getBindGroupLayout(0),
      entries: [call.a, call.b, call.c, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  );
  pass.dispatchWorkgroups(Math.ceil(call.n / MATMUL_TILE_N), Math.ceil(call.m / MATMUL_TILE_M));
  return params;
}

function uploadUniform(device: GPUDevice, data: ArrayBuffer, label: string): GPUBuffer {
  const buffer = device.createBuffer({ label, size: Math.ceil(data.byteLength / 16) * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

/** C = A B on the GPU for row-major A [m, k], B [k, n] held on the CPU (tests and benchmarks). */
export async function gpuMatmul(dev: LabDevice, a: Float32Array, b: Float32Array, m: number, k: number, n: number): Promise<Float32Array> {
  const { device } = dev;
  const pipeline = await matmulPipeline(device);
  const ab = uploadStorage(device, a, "matmul a");
  const bb = uploadStorage(device, b, "matmul b");
  const cb = outputStorage(device, m * n * 4, "matmul c");
  const encoder = device.createCommandEncoder({ label: "matmul" });
  const pass = encoder.beginComputePass();
  const params = encodeMatmul(device, pass, pipeline, { m, n, k, a: ab, b: bb, c: cb, aRow: k, aCol: 1, bRow: n, bCol: 1, cRow: n });
  pass.end();
  device.queue.submit([encoder.finish()]);
  try {
    return new Float32Array((await readBack(device, cb, m * n * 4)).buffer);
  } finally {
    for (const buffer of [ab, bb, cb, params]) buffer.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Calibration statistics

/** The streaming calibration pass with the Gram matrices on the GPU (see HessianAccumulator for the CPU one). */
export class GpuHessian {
  private readonly sumAbs: Float64Array;
  private readonly maxAbs: Float64Array;
  private tokens = 0;
  private sampleTokens = 0;
  private readonly pending: GPUBuffer[] = [];

  private constructor(
    private readonly dev: LabDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly cols: number,
    private readonly gram: GPUBuffer,
    private readonly sampleGram: GPUBuffer | undefined,
    private readonly sampleStep: number | undefined,
  ) {
    this.sumAbs = new Float64Array(cols);
    this.maxAbs = new Float64Array(cols);
  }

  static async create(dev: LabDevice, cols: number, opts: { clipSampleStep?: number } = {}): Promise<GpuHessian> {
    if (!Number.isInteger(cols) || cols < 1) throw new QuantInputError("calibration", `a layer needs at least one input column, not ${cols}`);
    const sizes = calibrationBuffers(cols, dev.info.limits);
    assertFits(dev, sizes);
    const pipeline = await matmulPipeline(dev.device);
    const gram = outputStorage(dev.device, sizes.gram.bytes, "gram");
    const sample = opts.clipSampleStep === undefined ? undefined : outputStorage(dev.device, sizes.clipSampleGram.bytes, "clip sample gram");
    return new GpuHessian(dev, pipeline, cols, gram, sample, opts.clipSampleStep);
  }

  /** The next whole tokens (float32, token-major); split into uploads that fit the binding limit. */
  add(x: Float32Array): void {
    const { cols } = this;
    if (x.length % cols !== 0) {
      throw new QuantInputError("calibration", `${x.length} activation values are not whole tokens of ${cols} values (the layer's input width)`);
    }
    assertFiniteActivations(x, cols, this.tokens);
    addChannelStats(x, cols, this.sumAbs, this.maxAbs);
    const perChunk = tokensPerUpload(cols, this.dev.info.limits);
    const n = x.length / cols;
    for (let t0 = 0; t0 < n; t0 += perChunk) this.addChunk(x.subarray(t0 * cols, Math.min(n, t0 + perChunk) * cols));
  }

  private addChunk(x: Float32Array): void {
    const { device } = this.dev;
    const { cols } = this;
    const n = x.length / cols;
    const xb = uploadStorage(device, x, "calibration tokens");
    const encoder = device.createCommandEncoder({ label: "gram" });
    const pass = encoder.beginComputePass({ label: "gram" });
    const uniforms = [
      encodeMatmul(device, pass, this.pipeline, { m: cols, n: cols, k: n, a: xb, b: xb, c: this.gram, aRow: 1, aCol: cols, bRow: cols, bCol: 1, cRow: cols, beta: 1, upperOnly: true }),
    ];
    if (this.sampleGram && this.sampleStep !== undefined) {
      const step = this.sampleStep;
      const first = (step - (this.tokens % step)) % step;
      const k = first < n ? Math.ceil((n - first) / step) : 0;
      if (k > 0) {
        const common = { m: cols, n: cols, k, a: xb, b: xb, aOff: first * cols, bOff: first * cols, cRow: cols, beta: 1, upperOnly: true };
        uniforms.push(encodeMatmul(device, pass, this.pipeline, { ...common, c: this.sampleGram, aRow: 1, aCol: step * cols, bRow: step * cols, bCol: 1 }));
        this.sampleTokens += k;
      }
    }
    pass.end();
    device.queue.submit([encoder.finish()]);
    this.tokens += n;
    this.pending.push(xb, ...uniforms);
  }

  get tokenCount(): number {
    return this.tokens;
  }

  /** The statistics (Gram matrices read back, mirrored, widened to float64). */
  async result(): Promise<CalibrationStats> {
    if (this.tokens === 0) throw new QuantInputError("calibration", "no calibration tokens were given");
    const { cols } = this;
    const read = async (b: GPUBuffer) => mirrored(new Float32Array((await readBack(this.dev.device, b, cols * cols * 4)).buffer), cols);
    const gram = await read(this.gram);
    for (const b of this.pending.splice(0)) b.destroy();
    const stats: CalibrationStats = { cols, tokens: this.tokens, gram, meanAbs: this.sumAbs.map((s) => s / this.tokens), maxAbs: this.maxAbs.slice() };
    if (this.sampleGram && this.sampleStep !== undefined) stats.clipSample = { step: this.sampleStep, tokens: this.sampleTokens, gram: await read(this.sampleGram) };
    return stats;
  }

  destroy(): void {
    for (const b of this.pending.splice(0)) b.destroy();
    this.gram.destroy();
    this.sampleGram?.destroy();
  }
}

/** The upper triangle of an f32 matrix as a full symmetric float64 one. */
function mirrored(upper: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = upper[i * n + j]!;
      out[i * n + j] = v;
      out[j * n + i] = v;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Buffer planning

/** A buffer one of the steps binds: what it holds (for people) and its size in bytes. */
export interface PlannedBuffer {
  what: string;
  bytes: number;
}

type BufferLimits = Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">;

/** The largest buffer this device binds whole. */
function bindLimit(limits: BufferLimits): number {
  return Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
}

/** Whole tokens of `cols` values per upload of calibration activations (at least one). */
function tokensPerUpload(cols: number, limits: BufferLimits): number {
  return Math.max(1, Math.floor(bindLimit(limits) / (cols * 4)));
}

/** The calibration pass's buffers (GpuHessian): the Gram matrices and the largest upload of tokens. */
export function calibrationBuffers(cols: number, limits: BufferLimits) {
  return {
    gram: { what: `the ${cols} x ${cols} Gram matrix`, bytes: cols * cols * 4 },
    clipSampleGram: { what: `the clip sample's ${cols} x ${cols} Gram matrix`, bytes: cols * cols * 4 },
    tokens: { what: `an upload of calibration tokens of ${cols} values`, bytes: tokensPerUpload(cols, limits) * cols * 4 },
  } satisfies Record<string, PlannedBuffer>;
}

/** The factorization's buffers (gpuUpperCholeskyOfInverse) for an n x n Hessian. */
export function factorizationBuffers(n: number) {
  const matrix = (what: string) => ({ what: `${what} (${n} x ${n})`, bytes: n * n * 4 });
  return {
    hessian: matrix("the damped Hessian"),
    reversed: matrix("its reversed Cholesky factor"),
    upper: matrix("the upper Cholesky factor of its inverse"),
    diagonalInverse: { what: "the inverse of a diagonal block", bytes: FACTOR_BLOCK * FACTOR_BLOCK * 4 },
    rowBlock: { what: `a ${FACTOR_BLOCK} x ${n} row block`, bytes: FACTOR_BLOCK * n * 4 },
    status: { what: "the factorization status", bytes: 4 },
  } satisfies Record<string, PlannedBuffer>;
}

/** The sweep's buffers (gpuGptqQuantize) for a rows x cols layer with `nGroups` groups per row. */
export function sweepBuffers(rows: number, cols: number, nGroups: number) {
  const matrix = (what: string) => ({ what: `${what} (${rows} x ${cols})`, bytes: rows * cols * 4 });
  return {
    weights: matrix("the weights"),
    blockErrors: { what: `the block errors (${rows} x ${GPU_GPTQ_BLOCK})`, bytes: rows * GPU_GPTQ_BLOCK * 4 },
    q: matrix("the dequantized weights"),
    codes: matrix("the codes"),
    scales: { what: `the scales (${rows} x ${nGroups})`, bytes: rows * nGroups * 4 },
    zeros: { what: `the zero points (${rows} x ${nGroups})`, bytes: rows * nGroups * 4 },
    perm: { what: "the column order", bytes: cols * 4 },
  } satisfies Record<string, PlannedBuffer>;
}

/**
 * Every buffer GPTQ on the GPU binds for a rows x cols layer (group size `group`, -1 for one group per row):
 * the calibration pass, the factorization and the sweep, with the sizes they allocate.
 */
export function gpuGptqBuffers(rows: number, cols: number, group: number, limits: BufferLimits): PlannedBuffer[] {
  const nGroups = group === -1 ? 1 : Math.ceil(cols / group);
  return [calibrationBuffers(cols, limits), factorizationBuffers(cols), sweepBuffers(rows, cols, nGroups)].flatMap((step) => Object.values(step));
}

/** Refuses, with what and by how much, a step whose buffers the device cannot bind. */
function assertFits(dev: LabDevice, buffers: Record<string, PlannedBuffer> | PlannedBuffer[]): void {
  const limit = bindLimit(dev.info.limits);
  const over = Object.values(buffers).find((b) => b.bytes > limit);
  if (over) throw new QuantInputError("shape", `${over.what} takes ${over.bytes} bytes, more than this GPU binds at once (${limit})`);
}

// ---------------------------------------------------------------------------------------------------------
// Factorization

/** Columns per block of the blocked factorization (one workgroup factors a diagonal block: one thread per row). */
export const FACTOR_BLOCK = 64;

/**
 * U (a GPU buffer, n x n row-major f32) with H^-1 = U^T U, or undefined when H is not positive definite. The
 * caller destroys U. Blocked and right-looking (shaders/cholesky.wgsl explains the steps): per block of 64
 * columns one small kernel for the diagonal block and four matrix multiplies (shaders/matmul.wgsl) for the
 * panel, the update of H and U's block row, all in one compute pass. Buffers: H (updated in place), R, U
 * (n^2 floats each: 64 MiB at n = 4096, each bound on its own), a 64 x n scratch row block and U's diagonal
 * block.
 */
export async function gpuUpperCholeskyOfInverse(dev: LabDevice, h: Float32Array, n: number): Promise<GPUBuffer | undefined> {
  const { device } = dev;
  const sizes = factorizationBuffers(n);
  assertFits(dev, sizes);
  const [diagonal, matmul] = await Promise.all([computePipeline(device, choleskyShader, "factorDiagonalBlock", "cholesky.wgsl"), matmulPipeline(device)]);
  const hb = uploadStorage(device, h, "hessian (updated in place)");
  const rb = outputStorage(device, sizes.reversed.bytes, "reversed cholesky");
  const ub = outputStorage(device, sizes.upper.bytes, "upper cholesky of inverse");
  const db = outputStorage(device, sizes.diagonalInverse.bytes, "inverse of the diagonal block");
  const tb = outputStorage(device, sizes.rowBlock.bytes, "row block scratch");
  const status = outputStorage(device, sizes.status.bytes, "factorization status");
  const uniforms: GPUBuffer[] = [];
  const encoder = device.createCommandEncoder({ label: "factorization" });
  const pass = encoder.beginComputePass({ label: "factorization" });
  for (let j1 = n; j1 > 0; ) {
    const j0 = Math.max(0, j1 - FACTOR_BLOCK);
    const size = j1 - j0;
    const params = uniformU32(device, [n, j0, size], "factorization block");
    uniforms.push(params);
    pass.setPipeline(diagonal);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        label: "factor diagonal block",
        layout: diagonal.getBindGroupLayout(0),
        entries: [hb, rb, ub, db, status, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
      }),
    );
    pass.dispatchWorkgroups(1);
    if (j0 > 0) {
      // R[0:j0, J] = H[0:j0, J] U_JJ^T, then H[0:j0, 0:j0] -= R[0:j0, J] R[0:j0, J]^T (upper triangle).
      uniforms.push(encodeMatmul(device, pass, matmul, { m: j0, n: size, k: size, a: hb, aOff: j0, aRow: n, aCol: 1, b: db, bRow: 1, bCol: size, c: rb, cOff: j0, cRow: n }));
      uniforms.push(
        encodeMatmul(device, pass, matmul, { m: j0, n: j0, k: size, a: rb, aOff: j0, aRow: n, aCol: 1, b: rb, bOff: j0, bRow: 1, bCol: n, c: hb, cRow: n, alpha: -1, beta: 1, upperOnly: true }),
      );
    }
    if (j1 < n) {
      // U[J, j1:] = -U_JJ (R[J, j1:] U[j1:, j1:]), through the scratch T (size x w); U[j1:, j1:] is upper
      // triangular, so a third of the factorization's products would be with its zeros: skipped.
      const w = n - j1;
      uniforms.push(
        encodeMatmul(device, pass, matmul, { m: size, n: w, k: w, a: rb, aOff: j0 * n + j1, aRow: n, aCol: 1, b: ub, bOff: j1 * n + j1, bRow: n, bCol: 1, c: tb, cRow: w, bUpper: true }),
      );
      uniforms.push(encodeMatmul(device, pass, matmul, { m: size, n: w, k: size, a: db, aRow: size, aCol: 1, b: tb, bRow: w, bCol: 1, c: ub, cOff: j0 * n + j1, cRow: n, alpha: -1 }));
    }
    j1 = j0;
  }
  pass.end();
  device.queue.submit([encoder.finish()]);
  try {
    const failed = new Uint32Array((await readBack(device, status, 4)).buffer)[0] !== 0;
    if (failed) {
      ub.destroy();
      return undefined;
    }
    return ub;
  } finally {
    for (const b of [hb, rb, db, tb, status, ...uniforms]) b.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------
// GPTQ

/** GPTQ with the factorization, the sweep and the block updates on the GPU; same result type as gptqQuantize. */
export async function gpuGptqQuantize(dev: LabDevice, weights: Float32Array, shape: MatrixShape, calib: GptqCalibration, options: GptqOptions): Promise<GptqResult> {
  const plan = planGptq(weights, shape, calib, options);
  const { rows, cols: n, group, nGroups, blockSize, perm } = plan;
  if (blockSize > GPU_GPTQ_BLOCK) throw new QuantInputError("settings", `GPTQ on the GPU takes blocks of at most ${GPU_GPTQ_BLOCK} columns, not ${blockSize}`);
  // Every step's buffers, before any is allocated (the calibration's were checked when it ran).
  const sizes = sweepBuffers(rows, n, nGroups);
  assertFits(dev, [...Object.values(sizes), ...Object.values(factorizationBuffers(n))]);
  const { device } = dev;

  let percDamp = plan.requestedDamp;
  let damp = 0;
  let u: GPUBuffer | undefined;
  for (let attempt = 0; ; attempt++) {
    const d = dampedHessian(plan, percDamp);
    damp = d.damp;
    u = await gpuUpperCholeskyOfInverse(dev, Float32Array.from(d.damped), n);
    if (u) break;
    percDamp = nextDamping(plan, percDamp, attempt);
  }

  // W in processing order, row-major.
  const w = new Float32Array(rows * n);
  for (let p = 0; p < n; p++) for (let o = 0; o < rows; o++) w[o * n + p] = plan.wt[p * rows + o]!;
  const order = new Uint32Array(n);
  for (let p = 0; p < n; p++) order[p] = perm ? perm[p]! : p;
  const wb = uploadStorage(device, w, "gptq weights");
  const errb = outputStorage(device, sizes.blockErrors.bytes, "gptq block errors");
  const qb = outputStorage(device, sizes.q.bytes, "gptq q");
  const codesb = outputStorage(device, sizes.codes.bytes, "gptq codes");
  const scalesb = uploadStorage(device, plan.scales, "gptq scales");
  const zerosb = uploadStorage(device, plan.zeros, "gptq zeros");
  const permb = uploadStorage(device, order, "gptq perm");
  const [sweep, matmul] = await Promise.all([computePipeline(device, gptqShader, "sweep", "gptq.wgsl"), matmulPipeline(device)]);
  const mode = group === -1 ? 0 : plan.staticGroups ? 2 : 1;
  const uniforms: GPUBuffer[] = [];
  const encoder = device.createCommandEncoder({ label: "gptq sweep" });
  const pass = encoder.beginComputePass({ label: "gptq sweep" });
  const sweepGroups = Math.ceil(rows / SWEEP_WORKGROUP);
  const maxX = device.limits.maxComputeWorkgroupsPerDimension;
  for (let i1 = 0; i1 < n; i1 += blockSize) {
    const count = Math.min(blockSize, n - i1);
    const i2 = i1 + count;
    const params = uploadUniform(device, Uint32Array.from([rows, n, i1, count, group === -1 ? n : group, nGroups, mode, plan.maxq, plan.sym ? 1 : 0]).buffer, "gptq sweep params");
    uniforms.push(params);
    pass.setPipeline(sweep);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        label: "gptq sweep",
        layout: sweep.getBindGroupLayout(0),
        entries: [wb, u, errb, qb, codesb, scalesb, zerosb, permb, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
      }),
    );
    pass.dispatchWorkgroups(Math.min(sweepGroups, maxX), Math.ceil(sweepGroups / maxX));
    if (i2 < n) {
      // W[:, i2:] -= Err1 U[i1:i2, i2:]
      uniforms.push(
        encodeMatmul(device, pass, matmul, {
          m: rows,
          n: n - i2,
          k: count,
          a: errb,
          aRow: GPU_GPTQ_BLOCK,
          aCol: 1,
          b: u,
          bOff: i1 * n + i2,
          bRow: n,
          bCol: 1,
          c: wb,
          cOff: i2,
          cRow: n,
          alpha: -1,
          beta: 1,
        }),
      );
    }
  }
  pass.end();
  device.queue.submit([encoder.finish()]);
  try {
    const [qBytes, codeBytes, scaleBytes, zeroBytes] = await Promise.all([
      readBack(device, qb, rows * n * 4),
      readBack(device, codesb, rows * n * 4),
      readBack(device, scalesb, rows * nGroups * 4),
      readBack(device, zerosb, rows * nGroups * 4),
    ]);
    return {
      shape,
      bits: plan.bits,
      group,
      sym: plan.sym,
      nGroups,
      q: new Float32Array(qBytes.buffer),
      codes: Uint8Array.from(new Uint32Array(codeBytes.buffer)),
      scales: new Float32Array(scaleBytes.buffer),
      zeros: new Float32Array(zeroBytes.buffer),
      gIdx: plan.gIdx,
      perm,
      damp,
      percDamp,
      deadColumns: plan.deadColumns,
      warnings: plan.warnings,
    };
  } finally {
    for (const b of [wb, u, errb, qb, codesb, scalesb, zerosb, permb, ...uniforms]) b.destroy();
  }
}
