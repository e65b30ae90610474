import { describe, expect, it } from "vitest";
import { ggufGoldenBytes, ggufGoldenManifest } from "../../test/gguf-golden.ts";
import { isFormatError } from "./errors.ts";
import { ggmlTypeById, ggmlTypeByName, parseGgufHeader, readGgufHeader } from "./gguf.ts";
import { BlobSource } from "./source.ts";

describe("GGUF header reader on llama.cpp's own files", () => {
  for (const type of ["F32", "Q4_K_M", "Q2_K"] as const) {
    it(`reads stories260K-${type}.gguf as the manifest describes it`, () => {
      const bytes = ggufGoldenBytes(type);
      const expected = ggufGoldenManifest(type);
      const header = parseGgufHeader(bytes, type);
      expect(header.version).toBe(3);
      expect(header.kv.size).toBe(expected.n_kv);
      expect(header.tensors.length).toBe(expected.n_tensors);
      expect(header.dataOffset).toBe(expected.data_section_offset);
      expect(header.kv.get("general.architecture")).toBe("llama");
      expect(header.kv.get("llama.block_count")).toBe(5);
      expect((header.kv.get("tokenizer.ggml.tokens") as string[]).slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
      expect(header.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type.name, type_id: t.type.id, offset: t.offset, nbytes: t.nbytes }))).toEqual(
        expected.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, type_id: t.type_id, offset: t.offset, nbytes: t.nbytes })),
      );
      // The last tensor ends the file (after padding to the alignment).
      const last = header.tensors.reduce((a, b) => (a.offset > b.offset ? a : b));
      expect(header.dataOffset + Math.ceil((last.offset + last.nbytes) / 32) * 32).toBe(bytes.length);
    });
  }

  it("reads a header through a ByteSource, asking for more bytes when the first read is short", async () => {
    const bytes = ggufGoldenBytes("Q4_K_M");
    const header = await readGgufHeader(new BlobSource(new Blob([bytes.slice()]), "q4.gguf"));
    expect(header.tensors.length).toBe(48);
  });

  it("names the problem in a truncated or foreign file", () => {
    const bytes = ggufGoldenBytes("F32");
    const cut = (() => {
      try {
        parseGgufHeader(bytes.subarray(0, 5000), "cut.gguf", 5000);
      } catch (e) {
        return e;
      }
    })();
    expect(isFormatError(cut) && cut.code === "truncated" && cut.message.startsWith("cut.gguf:")).toBe(true);
    const foreign = (() => {
      try {
        parseGgufHeader(new TextEncoder().encode("{\"not\": \"gguf\"}"), "x.json");
      } catch (e) {
        return e;
      }
    })();
    expect(isFormatError(foreign) && foreign.code === "bad-header").toBe(true);
  });

  it("takes block sizes from the format registry and knows GGUF's own types", () => {
    expect(ggmlTypeByName("Q4_K")).toMatchObject({ id: 12, blockWeights: 256, blockBytes: 144, formatId: "q4_K" });
    expect(ggmlTypeById(1)).toMatchObject({ name: "F16", blockBytes: 2 });
    expect(ggmlTypeById(30)).toMatchObject({ name: "BF16", blockBytes: 2 });
    expect(ggmlTypeById(20)).toMatchObject({ name: "IQ4_NL", blockWeights: 32, blockBytes: 18 });
  });
});
