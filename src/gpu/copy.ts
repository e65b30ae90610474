/**
 * The benchmark's baseline: float32 values through the GPU with a plain copy kernel (shaders/copy.wgsl),
 * the same way a GpuQuantizer's encode goes (upload, one dispatch, read back). A memory-bound
 * quantization kernel should come close to it; `npm run bench` (bench/formats.ts) reports the ratio.
 */
import copyWgsl from "../../shaders/copy.wgsl?raw";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import type { LabDevice } from "./device.ts";

const WORKGROUP_SIZE = 256;
const WORD_BYTES = 16;

/** Copies `x` through the GPU and returns the copy read back (x.length must be a multiple of 4). */
export async function gpuCopy(dev: LabDevice, x: Float32Array): Promise<Float32Array> {
  if (x.length % 4 !== 0) throw new Error(`gpuCopy copies whole 16-byte words; ${x.length} values are not a multiple of 4`);
  const { device } = dev;
  const pipeline = await computePipeline(device, copyWgsl, "copy", "copy.wgsl");
  const words = x.byteLength / WORD_BYTES;
  const params = uniformU32(device, [words], "copy params");
  const source = uploadStorage(device, x, "copy source");
  const target = outputStorage(device, x.byteLength, "copy target");
  try {
    dispatch(device, pipeline, [params, source, target], Math.ceil(words / WORKGROUP_SIZE), "copy");
    const bytes = await readBack(device, target, x.byteLength);
    return new Float32Array(bytes.buffer, bytes.byteOffset, x.length);
  } finally {
    params.destroy();
    source.destroy();
    target.destroy();
  }
}
