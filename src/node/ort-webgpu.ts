/**
 * onnxruntime-web's WebGPU execution provider in Node, on Dawn (src/node/webgpu.ts: SwiftShader's Vulkan
 * driver on machines without a GPU). ORT's WebGPU build takes its GPU from navigator.gpu, so Dawn's GPU
 * object is installed there (Node 20 has no navigator: a bare one is made). One difference from a browser
 * needs bridging: ORT uploads straight from views of its wasm memory, which is a SharedArrayBuffer in the
 * threaded build, and Dawn's GPUQueue.writeBuffer rejects shared memory ("Invalid argument"); such views
 * are copied into an ordinary buffer first (browsers accept them).
 * The same module runs the wasm provider, so both providers run the build the lab's worker uses.
 */
import type { OrtModule } from "../model/session.ts";
import { nodeGpu } from "./webgpu.ts";

export interface NodeOrtWebGpu {
  ort: OrtModule;
  gpu: GPU;
  /** The adapter ORT will get (requestAdapter with no options), for its features. */
  adapter: GPUAdapter;
}

let cached: Promise<NodeOrtWebGpu | { reason: string }> | undefined;

/** onnxruntime-web/webgpu with Dawn as navigator.gpu (set up once per process), or why it cannot run. */
export function nodeOrtWebGpu(): Promise<NodeOrtWebGpu | { reason: string }> {
  return (cached ??= setUp());
}

async function setUp(): Promise<NodeOrtWebGpu | { reason: string }> {
  const got = await nodeGpu();
  if ("reason" in got) return got;
  const adapter = await got.gpu.requestAdapter().catch(() => null);
  if (!adapter) return { reason: `Dawn found no WebGPU adapter${got.icd ? ` with VK_ICD_FILENAMES=${got.icd}` : ""}` };
  copySharedUploads();
  const scope = globalThis as { navigator?: { gpu?: GPU } };
  scope.navigator ??= {};
  if (!scope.navigator.gpu) Object.defineProperty(scope.navigator, "gpu", { value: got.gpu, configurable: true });
  const ort = (await import("onnxruntime-web/webgpu")) as OrtModule;
  return { ort, gpu: got.gpu, adapter };
}

/** Wraps GPUQueue.writeBuffer so views of a SharedArrayBuffer are uploaded from a copy. */
function copySharedUploads(): void {
  const queue = (globalThis as unknown as { GPUQueue: { prototype: GPUQueue } }).GPUQueue.prototype;
  const write = queue.writeBuffer;
  if ((write as { copiesShared?: boolean }).copiesShared) return;
  const wrapped = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset?: number, size?: number): undefined {
    const view = ArrayBuffer.isView(data) ? data : undefined;
    if (view && typeof SharedArrayBuffer !== "undefined" && view.buffer instanceof SharedArrayBuffer) {
      // dataOffset and size count elements of a typed array, bytes of a DataView (WebGPU's writeBuffer).
      const element = "BYTES_PER_ELEMENT" in view ? (view as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
      const start = (dataOffset ?? 0) * element;
      const length = size === undefined ? view.byteLength - start : size * element;
      const copy = new Uint8Array(length);
      copy.set(new Uint8Array(view.buffer, view.byteOffset + start, length));
      return write.call(this, buffer, offset, copy);
    }
    return write.call(this, buffer, offset, data, dataOffset, size);
  };
  (wrapped as { copiesShared?: boolean }).copiesShared = true;
  queue.writeBuffer = wrapped as GPUQueue["writeBuffer"];
}
