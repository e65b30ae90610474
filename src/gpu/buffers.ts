/**
 * Small helpers every kernel family uses: storage buffers from typed arrays (padded to the 4 bytes
 * WGSL arrays need: many block sizes, e.g. q4_0's 18 bytes, are not multiples of 4), uniforms,
 * read-back, cached pipelines, and one-dispatch runs.
 */

const usage = () => GPUBufferUsage;

/** n rounded up to a multiple of 4 (storage bindings hold whole u32/f32 words). */
export function padTo4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/** A storage buffer holding `data` (zero-padded to a whole number of words; at least one word). */
export function uploadStorage(device: GPUDevice, data: ArrayBufferView, label: string, extraUsage = 0): GPUBuffer {
  const size = Math.max(4, padTo4(data.byteLength));
  const buffer = device.createBuffer({ label, size, usage: usage().STORAGE | usage().COPY_DST | usage().COPY_SRC | extraUsage, mappedAtCreation: true });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

/** An empty storage buffer of at least `bytes` (rounded up to words) that kernels write and we read back. */
export function outputStorage(device: GPUDevice, bytes: number, label: string): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(4, padTo4(bytes)), usage: usage().STORAGE | usage().COPY_SRC | usage().COPY_DST });
}

/** A uniform buffer of u32 words (WGSL uniform structs are padded to 16 bytes). */
export function uniformU32(device: GPUDevice, words: readonly number[], label: string): GPUBuffer {
  const size = Math.max(16, Math.ceil((words.length * 4) / 16) * 16);
  const buffer = device.createBuffer({ label, size, usage: usage().UNIFORM | usage().COPY_DST, mappedAtCreation: true });
  new Uint32Array(buffer.getMappedRange()).set(words.map((w) => w >>> 0));
  buffer.unmap();
  return buffer;
}

/**
 * Writes float32 values into a buffer at float index `at` (queue order: after the work already submitted):
 * how the CPU reference's values replace a kernel's for the rows or blocks it leaves to the CPU.
 */
export function writeFloats(device: GPUDevice, buffer: GPUBuffer, at: number, values: Float32Array): void {
  device.queue.writeBuffer(buffer, at * 4, values.buffer as ArrayBuffer, values.byteOffset, values.byteLength);
}

/** Copies `bytes` bytes of a buffer back to the CPU (one staging buffer, freed after). */
export async function readBack(device: GPUDevice, source: GPUBuffer, bytes: number, signal?: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
  const size = padTo4(bytes);
  const staging = device.createBuffer({ label: `${source.label} readback`, size: Math.max(4, size), usage: usage().MAP_READ | usage().COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: "readback" });
    encoder.copyBufferToBuffer(source, 0, staging, 0, size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    signal?.throwIfAborted();
    return new Uint8Array(staging.getMappedRange().slice(0, bytes));
  } finally {
    staging.destroy();
  }
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * A compute pipeline for (code, entry point), compiled once per device. Compilation errors surface
 * as an exception with the shader's own messages instead of a silent invalid pipeline.
 */
export async function computePipeline(device: GPUDevice, code: string, entryPoint: string, label: string): Promise<GPUComputePipeline> {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  const key = `${entryPoint}\u0000${code}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const module = device.createShaderModule({ label, code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length > 0) {
    throw new Error(`${label}: WGSL does not compile:\n${errors.map((m) => `  line ${m.lineNum}:${m.linePos} ${m.message}`).join("\n")}`);
  }
  const pipeline = await device.createComputePipelineAsync({ label: `${label}:${entryPoint}`, layout: "auto", compute: { module, entryPoint } });
  cache.set(key, pipeline);
  return pipeline;
}

/** Workgroup counts for `total` workgroups, split over x and y when x would pass the device's per-dimension limit. */
export function workgroupGrid(device: GPUDevice, total: number): [number, number] {
  const maxX = device.limits.maxComputeWorkgroupsPerDimension;
  if (total <= maxX) return [Math.max(1, total), 1];
  const y = Math.ceil(total / maxX);
  return [Math.ceil(total / y), y];
}

/**
 * Runs one dispatch of `pipeline` with buffers bound to @group(0): a list binds @binding(0..n-1) in order; a
 * record {binding: buffer} serves shaders whose entry points use scattered binding numbers.
 */
export function dispatch(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: readonly GPUBuffer[] | Readonly<Record<number, GPUBuffer>>,
  workgroups: number,
  label: string,
): void {
  const bindGroup = device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: Object.entries(buffers).map(([binding, buffer]) => ({ binding: Number(binding), resource: { buffer } })),
  });
  const encoder = device.createCommandEncoder({ label });
  const pass = encoder.beginComputePass({ label });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  const [x, y] = workgroupGrid(device, workgroups);
  pass.dispatchWorkgroups(x, y);
  pass.end();
  device.queue.submit([encoder.finish()]);
}
