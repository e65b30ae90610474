import { describe, expect, it } from "vitest";
import { bitsPerWeight } from "./format.ts";
import { FORMATS, findFormat, formatsOf, getFormat } from "./registry.ts";
import { goldenManifest } from "../../test/ggml-golden.ts";

describe("format registry", () => {
  it("holds every format the issue names, each once", () => {
    for (const id of ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K",
      "int8", "int4-g128", "int4-asym-g32", "int3-g64", "int2-g64", "int8-channel", "nf4", "nf4-dq", "fp4", "llm-int8",
      "f16", "bf16", "fp8-e4m3", "fp8-e5m2"]) {
      expect(findFormat(id), id).toBeDefined();
    }
    expect(new Set(FORMATS.map((f) => f.id)).size).toBe(FORMATS.length);
  });

  it("resolves aliases and ggml names case-insensitively, and names the known formats for an unknown one", () => {
    expect(getFormat("int8").id).toBe("int8-channel");
    expect(getFormat("Q4_K").id).toBe("q4_K");
    expect(() => getFormat("q4_X")).toThrow(/unknown format "q4_X".*q4_K/);
  });

  it("gives the ggml formats llama.cpp's block sizes, byte sizes and bits per weight", () => {
    const golden = goldenManifest().formats;
    for (const f of formatsOf("gguf")) {
      const g = golden[f.id];
      expect(g, f.id).toBeDefined();
      expect([f.blockWeights, f.blockBytes], f.id).toEqual([g!.block_weights, g!.block_bytes]);
      expect(bitsPerWeight(f, { rows: 3, cols: 4096 }), f.id).toBeCloseTo(g!.bits_per_weight, 12);
    }
  });
});
