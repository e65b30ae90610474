/**
 * The float-arithmetic probe on Chromium's SwiftShader, whose behaviour was measured independently
 * (1M random triples): a*b + c is not fused, division, reciprocal and sqrt are correctly rounded, a
 * division by a literal constant is not (it becomes a multiplication by the reciprocal), and subnormals
 * are flushed to zero.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestLabDevice, type LabDevice } from "./device.ts";
import { probeFloatArithmetic } from "./float-probe.ts";

let dev: LabDevice;

beforeAll(async () => {
  const { status, device } = await requestLabDevice();
  if (status.kind !== "gpu" || !device) throw new Error(`these tests need WebGPU: ${status.kind === "cpu" ? status.reason : ""}`);
  dev = device;
});

afterAll(() => dev?.device.destroy());

describe("probeFloatArithmetic", () => {
  it("reports SwiftShader's arithmetic", async () => {
    expect(dev.info.vendor + dev.info.architecture + dev.info.description).toMatch(/swiftshader|google/i);
    expect(await probeFloatArithmetic(dev)).toEqual({
      fusedMultiplyAdd: false,
      exactDivision: true,
      exactSqrt: true,
      exactConstantDivision: false,
      keepsSubnormals: false,
    });
  });
});
