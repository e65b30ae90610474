/**
 * The calibrated settings' id grammar (one parser for the lab, the model run and the CLI), what a setting
 * stores, and that running a setting is exactly the method it names with those options.
 */
import { describe, expect, it } from "vitest";
import { awqGptqQuantize, awqQuantize } from "./awq.ts";
import { calibratedBytes, calibratedId, calibratedMethod, calibratedQuantize } from "./calibrated.ts";
import { gptqQuantize } from "./gptq.ts";
import { calibrationStats } from "./hessian.ts";
import { gaussian } from "../../test/random.ts";

describe("calibrated setting ids", () => {
  it("parses method, bits, group and flags; gptq4 is gptq4-g128", () => {
    expect(calibratedMethod("gptq4")).toMatchObject({ method: "gptq", bits: 4, group: 128, actOrder: false, sym: false, percDamp: 0.01 });
    expect(calibratedMethod("gptq3-channel-act-static-sym-damp0.1")).toMatchObject({ method: "gptq", bits: 3, group: -1, actOrder: true, staticGroups: true, sym: true, percDamp: 0.1 });
    expect(calibratedMethod("awq4-g32-sym-noclip")).toMatchObject({ method: "awq", bits: 4, group: 32, sym: true, clip: false });
    expect(calibratedMethod("awqgptq2-g64-act-noclip")).toMatchObject({ method: "awqgptq", bits: 2, group: 64, actOrder: true, clip: false });
  });

  it("refuses flags a method does not have, flags out of order, and registry formats", () => {
    for (const id of ["awq4-act", "awq4-damp0.1", "gptq4-noclip", "gptq4-sym-act", "gptq9", "gptq4-g16", "int4-g128", "q4_K", "gptq4-g128-"]) {
      expect(calibratedMethod(id), id).toBeUndefined();
    }
  });

  it("writes back the canonical id of every setting", () => {
    for (const id of ["gptq4-g128", "gptq8-channel-act-static-sym-damp0.05", "awq4-g32-noclip", "awq3-g64-sym", "awqgptq4-g128-act-noclip-damp0.1"]) {
      expect(calibratedId(calibratedMethod(id)!)).toBe(id);
    }
  });
});

describe("calibratedBytes", () => {
  it("counts codes, float16 scales, packed zero points and the int32 g_idx of act-order", () => {
    const shape = { rows: 64, cols: 256 };
    // 64 x 256 4-bit codes = 8192 bytes; 64 x 2 groups: 256 bytes of scales, 64 bytes of 4-bit zeros.
    expect(calibratedBytes(calibratedMethod("gptq4-g128")!, shape, 128)).toBe(8192 + 256 + 64);
    expect(calibratedBytes(calibratedMethod("gptq4-g128-sym")!, shape, 128)).toBe(8192 + 256);
    expect(calibratedBytes(calibratedMethod("gptq4-g128-act")!, shape, 128)).toBe(8192 + 256 + 64 + 256 * 4);
    // 3-bit: 64 x 256 x 3 / 8 = 6144; per channel: 64 scales (128 bytes) and 64 3-bit zeros (24 bytes).
    expect(calibratedBytes(calibratedMethod("gptq3-channel")!, shape, -1)).toBe(6144 + 128 + 24);
    // AWQ's input scales are folded into the previous operation: nothing stored.
    expect(calibratedBytes(calibratedMethod("awq4-g32")!, shape, 32)).toBe(8192 + 64 * 8 * 2 + 64 * 8 * 0.5);
  });
});

describe("calibratedQuantize", () => {
  const shape = { rows: 24, cols: 64 };
  const w = gaussian(shape.rows * shape.cols, 0.05, 3);
  const stats = calibrationStats(gaussian(200 * shape.cols, 1, 4), shape.cols);

  it("runs the method it names with the setting's options", () => {
    const gptq = gptqQuantize(w, shape, stats, { bits: 3, group: 32, sym: true, actOrder: true, staticGroups: true, percDamp: 0.05 });
    expect(calibratedQuantize(w, shape, stats, calibratedMethod("gptq3-g32-act-static-sym-damp0.05")!).q).toEqual(gptq.q);
    const awq = awqQuantize(w, shape, stats, { bits: 4, group: 32, clip: false, zeroPoint: true });
    expect(calibratedQuantize(w, shape, stats, calibratedMethod("awq4-g32-noclip")!).q).toEqual(awq.q);
    const both = awqGptqQuantize(w, shape, stats, { bits: 4, group: 32 }, { actOrder: true });
    expect(calibratedQuantize(w, shape, stats, calibratedMethod("awqgptq4-g32-act")!).q).toEqual(both.q);
  });

  it("takes rows the group does not divide per channel, and says which group it used", () => {
    const r = calibratedQuantize(w, shape, stats, calibratedMethod("gptq4-g128")!);
    expect(r.group).toBe(-1);
    expect(r.nGroups).toBe(1);
    expect(r.q).toEqual(gptqQuantize(w, shape, stats, { bits: 4, group: -1 }).q);
  });
});
