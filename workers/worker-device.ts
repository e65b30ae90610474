/**
 * A worker's WebGPU device: requested on first use, shared by everything the worker runs, and dropped
 * when lost so that the next request asks for a new one. Each worker has its own (module state is per
 * worker).
 */
import { requestLabDevice, type GpuStatus, type LabDevice } from "../src/gpu/device.ts";

export interface WorkerGpu {
  status: GpuStatus;
  device?: LabDevice;
}

let gpu: Promise<WorkerGpu> | null = null;

export function workerDevice(): Promise<WorkerGpu> {
  if (!gpu) {
    const request = requestLabDevice();
    gpu = request;
    // Kernels compile on first use, not here: on a software adapter compiling takes seconds of CPU.
    void request.then((r) =>
      r.device?.lost.then(() => {
        if (gpu === request) gpu = null;
      }),
    );
  }
  return gpu;
}
