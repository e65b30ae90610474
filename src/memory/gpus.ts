/**
 * GPUs to compare an estimate against. `bytes` is the total memory nvidia-smi reports (MiB x 2^20), which is
 * what the measurements and vLLM's gpu_memory_utilization are fractions of. Apple's unified memory is shared
 * with the system: Metal lets one process wire about three quarters of it (MTLDevice
 * recommendedMaxWorkingSetSize; llama.cpp's Metal backend reports that figure as the usable size).
 */
import { MemoryInputError } from "./config.ts";

export interface GpuPreset {
  id: string;
  label: string;
  /** Total device memory. */
  bytes: number;
  /** What a model may use of it: all of it on a discrete GPU, the working-set limit on unified memory. */
  usableBytes: number;
  unified: boolean;
}

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

function discrete(id: string, label: string, mib: number): GpuPreset {
  return { id, label, bytes: mib * MIB, usableBytes: mib * MIB, unified: false };
}

function unified(id: string, label: string, gib: number): GpuPreset {
  return { id, label, bytes: gib * GIB, usableBytes: gib * GIB * 0.75, unified: true };
}

export const GPUS: readonly GpuPreset[] = [
  discrete("laptop-16", "16 GB laptop GPU (RTX 4090 Laptop)", 16376),
  discrete("rtx-3090", "RTX 3090 24 GB", 24576),
  discrete("rtx-4090", "RTX 4090 24 GB", 24564),
  discrete("a100-40", "A100 40 GB", 40960),
  discrete("a100-80", "A100 80 GB", 81920),
  discrete("h100-80", "H100 80 GB", 81559),
  unified("apple-32", "Apple unified memory 32 GB", 32),
  unified("apple-64", "Apple unified memory 64 GB", 64),
  unified("apple-128", "Apple unified memory 128 GB", 128),
];

const GPU_ALIASES: Record<string, string> = {
  "3090": "rtx-3090",
  "4090": "rtx-4090",
  a100: "a100-80",
  h100: "h100-80",
  laptop: "laptop-16",
  apple: "apple-64",
};

export const DEFAULT_GPU = "rtx-4090";

export function resolveGpu(name: string): GpuPreset {
  const id = GPU_ALIASES[name.toLowerCase()] ?? name.toLowerCase();
  const gpu = GPUS.find((g) => g.id === id);
  if (!gpu) throw new MemoryInputError(`unknown GPU "${name}" (known: ${GPUS.map((g) => g.id).join(", ")}, or 3090, 4090, a100, h100)`);
  return gpu;
}
