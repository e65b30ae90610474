/**
 * The one place the lab gets a GPU. In the browser this is navigator.gpu (WebGPU); in a worker it is
 * self.navigator.gpu; elsewhere (Node CLI) there is none and callers use the CPU references.
 * Optional features are requested only when the adapter has them.
 */

/** What the lab shows about the GPU it uses, or why it uses the CPU instead. */
export type GpuStatus =
  | { kind: "gpu"; info: GpuInfo }
  | { kind: "cpu"; reason: string };

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** shader-f16: WGSL f16 arithmetic. */
  f16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

export interface LabDevice {
  device: GPUDevice;
  info: GpuInfo;
  /** Resolves when the device is lost (driver reset, tab backgrounded for long, destroy()). */
  lost: Promise<GPUDeviceLostInfo>;
}

const OPTIONAL_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups", "timestamp-query"];

function gpuOf(scope: unknown): GPU | undefined {
  const nav = (scope as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu;
}

/**
 * Requests an adapter and a device with the adapter's own (maximum) buffer limits, so large tensors
 * can be streamed in big chunks. Returns a CPU status with a human reason instead of throwing.
 */
export async function requestLabDevice(
  opts: {
    powerPreference?: GPUPowerPreference;
    /** A GPU object to use instead of navigator.gpu (Node: Dawn's, from src/node/webgpu.ts). */
    gpu?: GPU;
  } = {},
): Promise<{ status: GpuStatus; device?: LabDevice }> {
  const gpu = opts.gpu ?? gpuOf(globalThis);
  if (!gpu) {
    return {
      status: {
        kind: "cpu",
        reason: "This browser has no WebGPU (navigator.gpu is missing): quantizers run on the CPU reference instead.",
      },
    };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  } catch (e) {
    return { status: { kind: "cpu", reason: `WebGPU adapter request failed (${String(e)}): using the CPU reference.` } };
  }
  if (!adapter) {
    return { status: { kind: "cpu", reason: "WebGPU is present but no adapter is available: using the CPU reference." } };
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const a = adapter.limits;
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: {
        maxBufferSize: a.maxBufferSize,
        maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
        maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
        maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
      },
    });
  } catch (e) {
    return { status: { kind: "cpu", reason: `WebGPU device request failed (${String(e)}): using the CPU reference.` } };
  }
  const ai = adapter.info;
  const d = device.limits;
  const info: GpuInfo = {
    vendor: ai.vendor || "unknown",
    architecture: ai.architecture || "unknown",
    device: ai.device || "",
    description: ai.description || "",
    f16: device.features.has("shader-f16"),
    subgroups: device.features.has("subgroups"),
    timestampQuery: device.features.has("timestamp-query"),
    limits: {
      maxBufferSize: d.maxBufferSize,
      maxStorageBufferBindingSize: d.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: d.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: d.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: d.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: d.maxStorageBuffersPerShaderStage,
    },
  };
  return { status: { kind: "gpu", info }, device: { device, info, lost: device.lost } };
}
