/**
 * The WebGPU device of a browser-mode test file: requested once before its tests, destroyed after. A file
 * that cannot get one fails (these tests exist to run WGSL for real).
 */
import { afterAll, beforeAll } from "vitest";
import { requestLabDevice, type LabDevice } from "../src/gpu/device.ts";

/** Call at the top of a test file; the returned function gives the device inside tests. */
export function useLabDevice(): () => LabDevice {
  let dev: LabDevice | undefined;
  beforeAll(async () => {
    const { status, device } = await requestLabDevice();
    if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
    dev = device;
  });
  afterAll(() => dev?.device.destroy());
  return () => {
    if (!dev) throw new Error("no WebGPU device yet: use it inside tests");
    return dev;
  };
}
