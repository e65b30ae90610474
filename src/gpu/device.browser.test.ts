import { describe, expect, it } from "vitest";
import { requestLabDevice } from "./device.ts";

/**
 * The harness must give the lab a real WebGPU device: if the flags or the browser break, this fails
 * loudly instead of every GPU test silently running the CPU fallback.
 */
describe("requestLabDevice in the test browser", () => {
  it("returns a GPU device with the adapter's info and limits", async () => {
    const { status, device } = await requestLabDevice();
    if (status.kind !== "gpu") throw new Error(`expected a WebGPU device, got the CPU fallback: ${status.reason}`);
    expect(device).toBeDefined();
    expect(status.info.vendor).toBe("google");
    expect(status.info.architecture).toBe("swiftshader");
    expect(status.info.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(status.info.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(device!.info).toEqual(status.info);
    device!.device.destroy();
    const lost = await device!.lost;
    expect(lost.reason).toBe("destroyed");
  });
});
