/**
 * GGUF files in the lab as a person uses them: llama.cpp's own Q4_K_M file (../shared/golden/gguf) opened
 * from the file picker, its tensors listed with their ggml types and its key-values shown; a file holding
 * K-quant tensors (Q4_K, Q6_K, written by the lab's GGUF writer from seeded random weights) opened and one
 * K-quant tensor's heatmaps drawn, the hover's numbers those of the decoded tensor; a type the lab cannot
 * decode (IQ4_NL in llama.cpp's Q2_K file) listed and explained; a broken GGUF refused with the previous
 * model kept open.
 */
import path from "node:path";
import { readFile } from "node:fs/promises";
import { expect, test } from "@playwright/test";
import { ggmlTypeByName } from "../src/formats/gguf.ts";
import { writeGguf } from "../src/formats/gguf-writer.ts";
import { openModel, readTensorValues, tensorRowLayout } from "../src/formats/model.ts";
import { BlobSource } from "../src/formats/source.ts";
import { getFormat } from "../src/quant/registry.ts";
import { gaussian } from "../test/random.ts";
import { repoRoot } from "./test-files.ts";

const GOLDEN = path.resolve(repoRoot, "../shared/golden/gguf");
const golden = (type: string) => path.join(GOLDEN, `stories260K-${type}.gguf`);

/** A GGUF with two K-quant matrices of 96 rows of 512 weights (the lab's writer, our Q4_K/Q6_K encoders). */
async function kquantGguf(): Promise<Buffer> {
  const specs = [
    { name: "blk.0.ffn_up.weight", type: "Q4_K", seed: 11 },
    { name: "blk.0.ffn_gate.weight", type: "Q6_K", seed: 12 },
  ];
  const [rows, cols] = [96, 512];
  const encoded = specs.map((s) => getFormat(ggmlTypeByName(s.type)!.formatId!).encode(gaussian(rows * cols, 0.02, s.seed), { rows, cols }));
  const parts: Uint8Array[] = [];
  await writeGguf(
    { write: async (b) => void parts.push(b.slice()) },
    [{ key: "general.architecture", value: { type: "string", value: "llama" } }],
    specs.map((s) => ({ name: s.name, dims: [cols, rows], type: ggmlTypeByName(s.type)! })),
    async (i) => encoded[i]!,
  );
  return Buffer.concat(parts);
}

test("llama.cpp's Q4_K_M file: tensors with their ggml types, its key-values, and the quantize note", async ({ page }) => {
  test.setTimeout(90_000);
  await page.goto("/");
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
  await page.getByTestId("file-input").setInputFiles(golden("Q4_K_M"));
  await expect(page.getByTestId("model-name")).toHaveText("stories260K-Q4_K_M.gguf");
  await expect(page.getByTestId("tensor-row")).toHaveCount(48);
  const dtypeOf = (name: string) => page.locator(`[data-testid="tensor-row"][data-name="${name}"] [data-testid="dtype"]`);
  await expect(dtypeOf("blk.0.attn_q.weight")).toHaveText("Q5_0");
  await expect(dtypeOf("blk.2.attn_v.weight")).toHaveText("Q8_0");
  await expect(dtypeOf("blk.0.ffn_down.weight")).toHaveText("F16");
  await expect(dtypeOf("output_norm.weight")).toHaveText("F32");
  await expect(page.locator(`[data-testid="tensor-row"][data-name="blk.0.ffn_down.weight"]`)).toContainText("64 × 172");

  await page.getByTestId("model-metadata").locator("summary").click();
  const metadata = page.getByTestId("model-metadata").locator("table");
  await expect(metadata).toContainText("general.architecture");
  await expect(metadata.locator("tr", { hasText: "general.file_type" })).toContainText("15 (Q4_K_M)");
  await expect(metadata.locator("tr", { hasText: "tokenizer.ggml.tokens" })).toContainText("512 strings");

  // Statistics of a quantized tensor are those of its decoded values.
  await page.locator(`[data-testid="tensor-row"][data-name="blk.0.attn_q.weight"]`).click();
  await expect(page.getByTestId("stats-panel")).toContainText("4,096", { timeout: 30_000 });
  await page.getByTestId("tab-quantize").click();
  await expect(page.getByTestId("quantize-panel").getByTestId("relative-to-file")).toHaveText(
    "Errors are relative to the file's Q5_0 weights, not the original f32.",
  );
  // The whole-model table says it for the file's quantized types (F16 and F32 tensors are plain floats).
  await expect(page.getByTestId("results-panel").getByTestId("relative-to-file")).toHaveText(
    "Errors are relative to the file's Q5_0, Q8_0 weights as decoded, not the original f32.",
  );
});

test("a K-quant tensor of a GGUF in the heatmaps: drawn, the hover measured against the decoded Q4_K weights", async ({ page }) => {
  test.setTimeout(120_000);
  const bytes = await kquantGguf();
  const model = await openModel([new BlobSource(new Blob([new Uint8Array(bytes)]), "kquants.gguf")]);
  const t = model.tensors.find((x) => x.name === "blk.0.ffn_up.weight")!;
  const x = await readTensorValues(t);
  const { rows, rowLength: cols } = tensorRowLayout(t);

  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles({ name: "kquants.gguf", mimeType: "application/octet-stream", buffer: bytes });
  await expect(page.getByTestId("model-name")).toHaveText("kquants.gguf");
  await expect(page.locator(`[data-testid="tensor-row"][data-name="blk.0.ffn_up.weight"] [data-testid="dtype"]`)).toHaveText("Q4_K");
  await expect(page.locator(`[data-testid="tensor-row"][data-name="blk.0.ffn_gate.weight"] [data-testid="dtype"]`)).toHaveText("Q6_K");
  await page.locator(`[data-testid="tensor-row"][data-name="blk.0.ffn_up.weight"]`).click();
  await page.getByTestId("tab-heatmaps").click();
  const workspace = page.getByTestId("heatmap-workspace");
  const canvases = workspace.getByTestId("heatmap-canvas");
  await expect(canvases).toHaveCount(5, { timeout: 60_000 });

  // The first format panel (the heatmaps' default formats for this row length), measured on the CPU here.
  const format = (await workspace.getByTestId("heatmap-panel").nth(1).getAttribute("data-format"))!;
  const box = (await canvases.nth(1).boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.4, box.y + box.height * 0.5);
  const hover = workspace.getByTestId("heatmap-hover");
  await expect(hover).toBeVisible({ timeout: 20_000 });
  const row = Number(await hover.getAttribute("data-row"));
  const col = Number(await hover.getAttribute("data-col"));
  const f = getFormat(format);
  const y = f.decode(f.encode(x, { rows, cols }), { rows, cols });
  const cell = hover.locator(`[data-testid="hover-format"][data-format="${format}"]`);
  await expect(cell).toHaveAttribute("data-value", String(y[row * cols + col]));
  await expect(cell).toHaveAttribute("data-error", String(Math.fround(y[row * cols + col]! - x[row * cols + col]!)));
});

test("a tensor the lab cannot decode is listed and explained; a broken GGUF keeps the model open", async ({ page }) => {
  test.setTimeout(90_000);
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles(golden("Q2_K"));
  await expect(page.getByTestId("model-name")).toHaveText("stories260K-Q2_K.gguf");
  const iq = page.locator(`[data-testid="tensor-row"][data-name="blk.0.attn_q.weight"] [data-testid="dtype"]`);
  await expect(iq).toHaveText("IQ4_NL");
  await expect(iq).toHaveClass(/undecodable/);
  await page.locator(`[data-testid="tensor-row"][data-name="blk.0.attn_q.weight"]`).click();
  await expect(page.getByTestId("stats-error")).toContainText("IQ4_NL is a ggml type the lab can list but not decode", { timeout: 30_000 });

  const real = await readFile(golden("Q4_K_M"));
  await page.getByTestId("file-input").setInputFiles({ name: "cut.gguf", mimeType: "application/octet-stream", buffer: real.subarray(0, real.length - 1000) });
  const banner = page.getByTestId("error-banner");
  await expect(banner).toHaveAttribute("data-code", "truncated");
  await expect(banner.getByTestId("error-detail")).toHaveText('tensor "blk.4.ffn_up.weight" needs bytes 296512..304080 but the file ends at byte 303096');
  await expect(page.getByTestId("model-name")).toHaveText("stories260K-Q2_K.gguf");
});
