import { describe, expect, it } from "vitest";
import { BrowserNotFoundError, findChromium } from "./find-browser.ts";

describe("findChromium", () => {
  it("takes $QUANTLAB_CHROMIUM first, then $CHROME_PATH", () => {
    // process.execPath is an executable that certainly exists.
    expect(findChromium({ QUANTLAB_CHROMIUM: process.execPath, CHROME_PATH: "/nowhere/chrome" })).toBe(process.execPath);
    expect(findChromium({ CHROME_PATH: process.execPath })).toBe(process.execPath);
  });

  it("names the variable when it points at nothing, instead of silently using another browser", () => {
    expect(() => findChromium({ QUANTLAB_CHROMIUM: "/nowhere/chromium" })).toThrow(BrowserNotFoundError);
    expect(() => findChromium({ QUANTLAB_CHROMIUM: "/nowhere/chromium" })).toThrow(/\$QUANTLAB_CHROMIUM is set to \/nowhere\/chromium/);
  });
});
