/**
 * The Quantize panel end to end: the built app quantizes a tensor of the demo shard in the quantization
 * worker and shows the figures the formats' CPU references and metrics give in Node on the same
 * (deterministic) tensor (exactly for formats that ran on the CPU, within the GPU metrics' bound for the
 * others); says where each format ran; cancels; and reports a row length a format cannot take with
 * llama.cpp's fallback, on stories260K.
 */
import { expect, test, type Page, type TestInfo } from "@playwright/test";
import { formatMeasure, formatShare } from "../src/common/format.ts";
import { syntheticLlamaShard } from "../src/demo/synthetic.ts";
import { readTensorValues, tensorRowLayout } from "../src/formats/model.ts";
import { readSafetensors } from "../src/formats/safetensors.ts";
import { BlobSource } from "../src/formats/source.ts";
import { bitsPerWeight } from "../src/quant/format.ts";
import { errorMetrics, metricsBlockSize, sizeMetrics, type ErrorMetrics, type SizeMetrics } from "../src/quant/metrics.ts";
import { getFormat } from "../src/quant/registry.ts";
import { DEMO_FILE_NAME } from "../workers/model-input.ts";
import { FIRST_SLICE_BYTES } from "../src/formats/source.ts";
import { startRangeServer } from "./range-server.ts";
import { storiesFile } from "./test-files.ts";

/** A square demo tensor: rows of 256 weights, so the K-quants take it. */
const DEMO_TENSOR = "model.layers.0.self_attn.q_proj.weight";
const PICKED = ["int4-g128", "int8-channel", "q8_0", "q4_K"];

async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  await testInfo.attach(name, { path: file, contentType: "image/png" });
}

const panel = (page: Page) => page.getByTestId("quantize-panel");
const resultRow = (page: Page, format: string) => panel(page).locator(`[data-testid="quantize-result"][data-format="${format}"]`);

async function selectTensor(page: Page, name: string): Promise<void> {
  await page.locator(`[data-testid="tensor-row"][data-name="${name}"]`).click();
  await expect(panel(page).getByTestId("quantize-tensor")).toHaveText(name);
  await expect(panel(page).getByTestId("format-picker")).toBeVisible();
}

async function pick(page: Page, formats: string[]): Promise<void> {
  await panel(page).getByTestId("formats-none").click();
  for (const id of formats) {
    const label = panel(page).locator(`label[data-format="${id}"]`);
    // Some families start folded.
    const family = panel(page).locator("details", { has: page.locator(`label[data-format="${id}"]`) });
    if (!(await label.isVisible())) await family.getByTestId("family-toggle").click();
    await label.locator("input").check();
  }
  await expect(panel(page).getByTestId("quantize-run")).toHaveText(`Quantize ${formats.length} format${formats.length === 1 ? "" : "s"}`);
}

/** What the formats' CPU references and the metrics give in Node for a tensor of the demo shard. */
async function demoExpectations(tensorName: string, formats: string[]): Promise<{ metrics: ErrorMetrics; size: SizeMetrics }[]> {
  const file = await readSafetensors(new BlobSource(new Blob([syntheticLlamaShard()]), DEMO_FILE_NAME));
  const tensor = file.tensors.find((t) => t.name === tensorName)!;
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const shape = { rows, cols };
  const x = await readTensorValues(tensor);
  return formats.map((id) => {
    const format = getFormat(id);
    const y = format.decode(format.encode(x, shape), shape);
    return { metrics: errorMetrics(x, y, shape, metricsBlockSize(format)), size: sizeMetrics(format, shape, tensor.bytes) };
  });
}

/**
 * GPU sums are f32 partials merged in f64: src/gpu/metrics.ts bounds their relative error by gamma(k) with
 * k = block + 8 + 3 (about 2.6e-6 for blocks of 32, 1.6e-5 for q4_K's 256); 1e-4 covers both with room.
 */
const GPU_RELATIVE = 1e-4;

test.beforeEach(async ({ page }) => {
  await page.goto("/");
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
});

test("a demo tensor in int4-g128, int8, q8_0 and q4_K: the pipeline's figures, and where each ran", async ({ page }, testInfo) => {
  // Quantizing may wait for the worker's WebGPU device and the kernels' compilation.
  test.setTimeout(120_000);
  await selectTensor(page, DEMO_TENSOR);
  // Bits per weight in the picker, as the registry says for this 256 x 256 tensor.
  const shape = { rows: 256, cols: 256 };
  for (const id of PICKED) {
    await expect(panel(page).locator(`label[data-format="${id}"] [data-testid="choice-bpw"]`)).toHaveText(
      formatMeasure(bitsPerWeight(getFormat(id), shape)),
    );
  }
  await pick(page, PICKED);
  await panel(page).getByTestId("quantize-run").click();
  await expect(panel(page).getByTestId("quantize-result")).toHaveCount(PICKED.length, { timeout: 90_000 });
  await expect(panel(page).getByTestId("quantize-report")).toHaveAttribute("data-tensor", DEMO_TENSOR);

  const expected = await demoExpectations(DEMO_TENSOR, PICKED);
  for (const [i, id] of PICKED.entries()) {
    const want = expected[i]!;
    const row = resultRow(page, id);
    await expect(row.getByTestId("result-bpw")).toHaveAttribute("data-value", String(bitsPerWeight(getFormat(id), shape)));
    await expect(row.getByTestId("result-saved")).toHaveText(formatShare(want.size.shareSaved));
    // max |error| is exact on both paths.
    await expect(row.getByTestId("result-max-err")).toHaveText(formatMeasure(want.metrics.maxAbsErr));
    const m = want.metrics;
    if ((await row.getAttribute("data-ran-on")) === "cpu") {
      await expect(row.getByTestId("result-mse")).toHaveText(formatMeasure(m.mse));
      await expect(row.getByTestId("result-rmse")).toHaveText(formatMeasure(m.rmse));
      await expect(row.getByTestId("result-snr")).toHaveText(formatMeasure(m.snrDb));
      await expect(row.getByTestId("result-cosine")).toHaveText(formatMeasure(m.cosine, 7));
    } else {
      const value = async (cell: string) => Number(await row.getByTestId(cell).getAttribute("data-value"));
      expect(Math.abs((await value("result-mse")) - m.mse)).toBeLessThanOrEqual(GPU_RELATIVE * m.mse);
      expect(Math.abs((await value("result-rmse")) - m.rmse)).toBeLessThanOrEqual(GPU_RELATIVE * m.rmse);
      // 10 log10 of sums each within GPU_RELATIVE: at most 2 * 4.343 * GPU_RELATIVE dB apart.
      expect(Math.abs((await value("result-snr")) - m.snrDb)).toBeLessThanOrEqual(10 * GPU_RELATIVE);
      // xy / sqrt(xx yy) with each sum within GPU_RELATIVE: at most 2 * GPU_RELATIVE apart (|cosine| <= 1).
      expect(Math.abs((await value("result-cosine")) - m.cosine)).toBeLessThanOrEqual(2 * GPU_RELATIVE);
    }
  }
  const snr = async (id: string) => Number(await resultRow(page, id).getByTestId("result-snr").getAttribute("data-value"));
  expect(await snr("int8-channel")).toBeGreaterThan(await snr("int4-g128"));
  expect(await snr("q8_0")).toBeGreaterThan(await snr("q4_K"));
  expect(await snr("int4-g128")).toBeGreaterThan(10);

  // Where each ran: the worker has the SwiftShader adapter; a format runs on it when it has a kernel, and
  // a CPU row always says why. The ggml legacy kernels (src/gpu/ggml-legacy.ts) give q8_0 to the GPU.
  await expect(panel(page).getByTestId("quantize-device")).toContainText(/WebGPU: .*swiftshader/i);
  for (const id of PICKED) {
    const row = resultRow(page, id);
    const ranOn = await row.getAttribute("data-ran-on");
    expect(["gpu", "cpu"]).toContain(ranOn);
    await expect(row.getByTestId("result-ran-on")).toContainText(ranOn!.toUpperCase());
    if (ranOn === "gpu") await expect(row.getByTestId("result-why")).toHaveCount(0);
    else await expect(row.getByTestId("result-why")).toHaveText(/no WGSL kernel for .* yet/);
  }
  await expect(resultRow(page, "q8_0")).toHaveAttribute("data-ran-on", "gpu");
  await screenshot(page, testInfo, "quantize-demo");

  // Opening a model (even the demo again) clears the results of the previous one.
  await page.getByTestId("demo-button").click();
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
  await expect(panel(page).getByTestId("quantize-report")).toHaveCount(0);
});

test("Cancel stops a long run, and the next run works", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  // The largest demo tensor in every format: long enough to cancel on any machine.
  await selectTensor(page, "model.embed_tokens.weight");
  await panel(page).getByTestId("formats-all").click();
  await panel(page).getByTestId("quantize-run").click();
  const progress = panel(page).getByTestId("quantize-progress");
  await expect(progress.locator("progress")).toHaveAttribute("value", /^[1-9]/, { timeout: 60_000 });
  await screenshot(page, testInfo, "quantize-progress");
  await progress.getByTestId("quantize-cancel").click();
  await expect(panel(page).getByTestId("quantize-error")).toHaveText("Cancelled.");
  await expect(progress).toHaveCount(0);
  await expect(panel(page).getByTestId("quantize-report")).toHaveCount(0);

  await pick(page, ["q8_0"]);
  await panel(page).getByTestId("quantize-run").click();
  await expect(resultRow(page, "q8_0").getByTestId("result-snr")).not.toBeEmpty({ timeout: 60_000 });
  await expect(panel(page).getByTestId("quantize-error")).toHaveCount(0);
});

test("stories260K: q4_K on the 172-wide down_proj names llama.cpp's fallback", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const chooser = page.waitForEvent("filechooser");
  await page.getByText("Choose files…").click();
  await (await chooser).setFiles(storiesFile);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  const tensor = "model.layers.4.mlp.down_proj.weight";
  await selectTensor(page, tensor);
  const check = getFormat("q4_K").checkRowLength(172);
  if (check.ok) throw new Error("q4_K should refuse rows of 172");
  // The picker warns before anything runs.
  await expect(panel(page).locator('label[data-format="q4_K"]')).toHaveClass(/misfit/);
  // q8_0 (blocks of 32) cannot either; the casts can.
  await expect(panel(page).locator('label[data-format="q8_0"]')).toHaveClass(/misfit/);
  await expect(panel(page).locator('label[data-format="f16"]')).not.toHaveClass(/misfit/);

  await pick(page, ["q4_K", "f16"]);
  await panel(page).getByTestId("quantize-run").click();
  const q4K = resultRow(page, "q4_K");
  await expect(q4K).toHaveAttribute("data-problem", "row-length", { timeout: 60_000 });
  await expect(q4K.getByTestId("result-fallback")).toHaveText(check.fallback!);
  await expect(q4K.getByTestId("result-error")).toContainText(tensor);
  await expect(q4K.getByTestId("result-error")).toContainText(check.reason);
  // The other format of the same run has its numbers.
  await expect(resultRow(page, "f16").getByTestId("result-bpw")).toHaveText("16.00");
  await screenshot(page, testInfo, "quantize-fallback");
});

test("a model opened from a URL: the quantization worker reads the header and the one tensor, nothing more", async ({ page }) => {
  test.setTimeout(120_000);
  const server = await startRangeServer(storiesFile, { urlPath: "/stories260K/model.safetensors" });
  try {
    await page.getByTestId("url-input").fill(server.url);
    await page.getByTestId("url-open").click();
    await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
    const tensor = "model.layers.1.self_attn.q_proj.weight"; // 64 x 64 F32: 16 KiB
    await selectTensor(page, tensor);
    // The statistics panel reads the tensor first; wait for it so only the quantization is counted.
    await expect(page.locator(`[data-testid="stats-panel"][data-name="${tensor}"]`)).toBeVisible({ timeout: 30_000 });
    const before = server.bytesSent();
    await pick(page, ["q8_0", "int8-channel"]);
    await panel(page).getByTestId("quantize-run").click();
    await expect(panel(page).getByTestId("quantize-report")).toHaveAttribute("data-tensor", tensor, { timeout: 60_000 });
    await expect(panel(page).getByTestId("quantize-result")).toHaveCount(2);
    // The worker opened the URL itself: one first slice for the header, then the tensor's 16 KiB.
    expect(server.bytesSent() - before).toBeLessThanOrEqual(FIRST_SLICE_BYTES + 64 * 64 * 4);
  } finally {
    await server.close();
  }
});
