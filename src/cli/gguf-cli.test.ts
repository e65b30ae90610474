/**
 * `quantlab inspect` and `quantlab quantize` on llama.cpp's own GGUF files (../shared/golden/gguf), run
 * as a user runs them: the tensors with their ggml types and the key-values; errors of re-quantizing the
 * file's decoded tensors, and against the F32 file, the Q4_K_M file's own error; bad files exit 2.
 */
import { writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { GGUF_GOLDEN_DIR, ggufGoldenBytes, ggufGoldenManifest } from "../../test/gguf-golden.ts";
import { quantlab } from "../../test/quantlab-cli.ts";
import { openModel, readTensorValues, tensorRowLayout } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { errorMetrics } from "../quant/metrics.ts";
import { getFormat } from "../quant/registry.ts";
import type { InspectJson } from "./inspect.ts";
import type { QuantizeJson } from "./quantize.ts";

const golden = (type: string) => path.join(GGUF_GOLDEN_DIR, `stories260K-${type}.gguf`);

describe.concurrent("quantlab on GGUF files", () => {
  it("inspect lists the key-values, then every tensor with its ggml type, [rows, cols] shape and bytes", async () => {
    const run = await quantlab("inspect", golden("Q4_K_M"));
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("key-values (22)");
    expect(run.stdout).toMatch(/\n {2}general\.architecture +llama\n/);
    expect(run.stdout).toMatch(/\n {2}general\.file_type +15 \(Q4_K_M\)\n/);
    expect(run.stdout).toMatch(/\n {2}llama\.attention\.layer_norm_rms_epsilon +0\.00001\n/);
    expect(run.stdout).toMatch(/\n {2}blk\.2\.attn_v\.weight +Q8_0 +\[32, 64\] +2,048 +2,176 /);
    const json = JSON.parse((await quantlab("inspect", golden("Q4_K_M"), "--json")).stdout) as InspectJson;
    const manifest = ggufGoldenManifest("Q4_K_M");
    expect(json.format).toBe("gguf");
    expect(json.metadata["tokenizer.ggml.model"]).toBe("llama");
    expect(json.tensors.map((t) => [t.name, t.dtype, t.shape, t.bytes])).toEqual(manifest.tensors.map((t) => [t.name, t.type, [...t.dims].reverse(), t.nbytes]));
  });

  it("quantize re-quantizes the decoded tensors and says the errors are relative to the file's weights", async () => {
    const run = await quantlab("quantize", golden("Q4_K_M"), "--formats", "q8_0,q4_0", "--tensors", "blk\\.1\\.attn_[qv]");
    expect(run.code).toBe(0);
    expect(run.stdout.split("\n")[1]).toBe("Errors are relative to the file's Q5_0 weights as decoded, not the original float32 weights.");
    const out = JSON.parse((await quantlab("quantize", golden("Q4_K_M"), "--json", "--formats", "q8_0,q4_0", "--tensors", "blk\\.1\\.attn_[qv]")).stdout) as QuantizeJson;
    const sources = await openPath(golden("Q4_K_M"));
    try {
      const model = await openModel(sources);
      for (const r of out.results) {
        if ("error" in r) throw new Error(r.error);
        const t = model.tensors.find((x) => x.name === r.tensor)!;
        const { rows, rowLength: cols } = tensorRowLayout(t);
        const x = await readTensorValues(t);
        const format = getFormat(r.format);
        const m = errorMetrics(x, format.decode(format.encode(x, { rows, cols }), { rows, cols }), { rows, cols });
        expect(r.snr_db! - m.snrDb).toBeCloseTo(0, 8);
        expect(r.bytes_before).toBe(t.bytes);
      }
    } finally {
      await closeSources(sources);
    }
  });

  it("quantize names the tensors it leaves out because their type cannot be decoded", async () => {
    const some = await quantlab("quantize", golden("Q2_K"), "--formats", "q8_0", "--tensors", "blk\\.0\\.");
    expect(some.code).toBe(0);
    expect(some.stderr).toBe("quantlab quantize: left out 6 tensors stored as IQ4_NL, which the lab can list but not decode\n");
    const none = await quantlab("quantize", golden("Q2_K"), "--formats", "q8_0", "--tensors", "blk\\.0\\.attn_q");
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^quantlab quantize: no floating-point tensor of stories260K-Q2_K\.gguf matches \/blk\\\.0\\\.attn_q\/ \(blk\.0\.attn_q\.weight: IQ4_NL is a ggml type the lab can list but not decode/);
  });

  it("a broken GGUF exits 2 with one line naming the file and the problem", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "quantlab-gguf-"));
    const bytes = ggufGoldenBytes("Q4_K_M");
    const cut = path.join(dir, "cut.gguf");
    writeFileSync(cut, bytes.subarray(0, bytes.length - 1000));
    const wrongVersion = path.join(dir, "v9.gguf");
    const v9 = bytes.slice(0, 4096);
    v9[4] = 9;
    writeFileSync(wrongVersion, v9);
    for (const [file, message] of [
      [cut, `${cut}: tensor "blk.4.ffn_up.weight" needs bytes 296512..304080 but the file ends at byte 303096`],
      [wrongVersion, `${wrongVersion}: GGUF version 9 is not supported (2 and 3 are)`],
    ] as const) {
      for (const command of ["inspect", "quantize"]) {
        const run = await quantlab(command, file, ...(command === "quantize" ? ["--formats", "q8_0"] : []));
        expect(run.code).toBe(2);
        expect(run.stderr).toBe(`quantlab: ${message}\n`);
      }
    }
  });
});
