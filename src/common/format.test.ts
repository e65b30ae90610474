import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatBitsPerWeight, formatBytes, formatCount, formatDuration, formatMeasure, formatShape, formatShare, formatValue } from "./format.ts";

describe("formatValue", () => {
  it("reads back as the same float32, for any float32", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (v) => {
        const text = formatValue(v);
        if (!Number.isFinite(v)) return text === (v > 0 ? "+Inf" : "−Inf");
        return Object.is(Math.fround(Number(text)), Math.fround(v));
      }),
      { numRuns: 20_000 },
    );
  });

  it("uses no more digits than needed", () => {
    expect(formatValue(Math.fround(0.1))).toBe("0.1");
    expect(formatValue(Math.fround(2.45830894))).toBe("2.458309");
    expect(formatValue(65504)).toBe("65504");
    expect(formatValue(Math.fround(1.1754943508222875e-38))).toBe("1.1754944e-38"); // FLT_MIN needs 8 digits
    expect(formatValue(1e-45)).toBe("1e-45"); // smallest float32 subnormal
    expect(formatValue(NaN)).toBe("NaN");
  });
});

describe("sizes and counts", () => {
  it("writes bytes in binary units and counts with separators", () => {
    expect(formatBytes(256)).toBe("256 B");
    expect(formatBytes(1_040_128)).toBe("1015.8 KiB");
    expect(formatBytes(4_300_000_032)).toBe("4.00 GiB");
    expect(formatCount(260_032)).toBe("260,032");
    expect(formatShape([4_300_000_000])).toBe("4,300,000,000");
    expect(formatShape([64, 172])).toBe("64 × 172");
    expect(formatShape([])).toBe("scalar");
    expect(formatShare(0.126)).toBe("12.60 %");
  });
});

describe("formatMeasure", () => {
  it("writes significant digits, switching to exponents for small and large values", () => {
    expect(formatMeasure(18.23456)).toBe("18.23");
    expect(formatMeasure(0.99998765)).toBe("1.000");
    expect(formatMeasure(0.0123456)).toBe("0.01235");
    expect(formatMeasure(0.000123456)).toBe("1.235e-4");
    expect(formatMeasure(2.5e7)).toBe("2.500e7");
    expect(formatMeasure(-3.14159, 3)).toBe("-3.14");
    expect(formatMeasure(0)).toBe("0");
    expect(formatMeasure(Infinity)).toBe("∞");
    expect(formatMeasure(-Infinity)).toBe("−∞");
    expect(formatMeasure(NaN)).toBe("—");
  });
});

describe("formatDuration", () => {
  it("writes minutes and seconds, hours past an hour; nothing to show for an unknown time", () => {
    expect(formatDuration(400)).toBe("0:00");
    expect(formatDuration(12_300)).toBe("0:12");
    expect(formatDuration(65_000)).toBe("1:05");
    expect(formatDuration(3_599_400)).toBe("59:59");
    expect(formatDuration(3_725_000)).toBe("1:02:05");
    expect(formatDuration(NaN)).toBe("—");
    expect(formatDuration(-1)).toBe("—");
  });
});

describe("formatBitsPerWeight", () => {
  it("keeps at most four decimals and drops trailing zeros", () => {
    expect(formatBitsPerWeight(4.5)).toBe("4.5");
    expect(formatBitsPerWeight(16)).toBe("16");
    expect(formatBitsPerWeight(3.4375)).toBe("3.4375");
    expect(formatBitsPerWeight(4 + 16 / 4096)).toBe("4.0039");
  });
});
