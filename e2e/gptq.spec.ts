/**
 * GPTQ beside the other formats in the Quantize tab, end to end: stories260K opened with its config.json and
 * tokenizer is run by the quantization worker on the bundled calibration text, so layer 0's q_proj
 * calibrates on its real inputs ("model run"); GPTQ 4-bit g128, Q4_K and int4-g128 are picked, plus a
 * setting made with the settings form. The rows of 64 take neither g128 nor Q4_K's 256: int4-g128 and q4_K
 * name their fallbacks, GPTQ goes per channel and says so, and its output error is below round-to-nearest's
 * at the same grouping (int4-channel; and gptq4-g32-act below int4-g32); the heatmap of a GPTQ setting
 * calibrates on the same run. The shard alone gets synthetic activations, labelled as such.
 */
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { openAndSelect, outputError, pickFormats, quantizePanel, resultRow } from "./quantize-page.ts";
import { storiesDir, storiesFile } from "./test-files.ts";

const SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"].map((f) => path.join(storiesDir, f));
const TENSOR = "model.layers.0.self_attn.q_proj.weight";

const panel = quantizePanel;

test("GPTQ 4-bit g128, Q4_K and int4-g128 on stories260K's q_proj: calibrated on the model run, GPTQ below round-to-nearest", async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  await openAndSelect(page, [storiesFile, ...SIDE_FILES], TENSOR);
  await pickFormats(page, ["gptq4-g128", "q4_K", "int4-g128", "int4-channel", "int4-g32"]);
  // A setting of its own from the form: GPTQ, 4 bits, groups of 32, act-order.
  const form = panel(page).getByTestId("calibrated-settings");
  await form.locator('select[data-setting="group"]').selectOption("32");
  await form.locator('input[data-setting="actOrder"]').check();
  await expect(form.getByTestId("calibrated-add")).toContainText("gptq4-g32-act");
  await form.getByTestId("calibrated-add").click();
  await expect(panel(page).locator('label[data-format="gptq4-g32-act"] input')).toBeChecked();
  await expect(panel(page).getByTestId("quantize-run")).toHaveText("Quantize 6 formats");
  await panel(page).getByTestId("quantize-run").click();

  const calibration = panel(page).getByTestId("quantize-calibration");
  await expect(calibration).toHaveAttribute("data-source", "model", { timeout: 150_000 });
  await expect(calibration.locator(".source")).toHaveText("model run");
  await expect(calibration).toContainText(/model run on calibration\.txt, \d+ tokens \(\+\d+ held out\)/);

  const gptq = resultRow(page, "gptq4-g128");
  await expect(gptq.getByTestId("result-output-error")).toHaveAttribute("data-source", "model");
  await expect(gptq.getByTestId("result-held-out")).toBeVisible();
  await expect(gptq.getByTestId("result-synthetic")).toHaveCount(0);
  await expect(gptq.getByTestId("result-warning")).toContainText("quantized per channel");
  // Rows of 64: neither int4-g128 nor q4_K takes them; both name what to use instead.
  await expect(resultRow(page, "int4-g128")).toHaveAttribute("data-problem", "row-length");
  await expect(resultRow(page, "q4_K").getByTestId("result-fallback")).toHaveText("q5_0");

  expect(await outputError(gptq)).toBeLessThan(await outputError(resultRow(page, "int4-channel")));
  expect(await outputError(resultRow(page, "gptq4-g32-act"))).toBeLessThan(await outputError(resultRow(page, "int4-g32")));
  // GPTQ's row has the same figures as any format's.
  for (const id of ["result-bpw", "result-mse", "result-snr", "result-cosine"]) await expect(gptq.getByTestId(id)).not.toBeEmpty();
  const file = testInfo.outputPath("gptq-quantize.png");
  await page.screenshot({ path: file, fullPage: true });
  await testInfo.attach("gptq-quantize", { path: file, contentType: "image/png" });

  // The heatmap of the same setting calibrates on the same model run, and says so.
  await page.getByTestId("tab-heatmaps").click();
  const workspace = page.getByTestId("heatmap-workspace");
  await expect(workspace.getByTestId("heatmap-canvas")).toHaveCount(5, { timeout: 60_000 });
  await workspace.getByTestId("heatmap-format-3").selectOption("gptq4-g32");
  const heat = workspace.locator('[data-testid="heatmap-panel"][data-format="gptq4-g32"]');
  await expect(heat.getByTestId("model-calibration")).toBeVisible({ timeout: 60_000 });
  await expect(heat.getByTestId("synthetic-calibration")).toHaveCount(0);
});

test("the shard alone: GPTQ calibrates on synthetic activations, and the table says so", async ({ page }) => {
  test.setTimeout(120_000);
  await openAndSelect(page, [storiesFile], TENSOR);
  await pickFormats(page, ["gptq4-g32", "int4-g32"]);
  await panel(page).getByTestId("quantize-run").click();
  const calibration = panel(page).getByTestId("quantize-calibration");
  await expect(calibration).toHaveAttribute("data-source", "synthetic", { timeout: 90_000 });
  await expect(calibration).toContainText("config.json and tokenizer.json are not with the weights");
  await expect(resultRow(page, "gptq4-g32").getByTestId("result-synthetic")).toBeVisible();
  await expect(resultRow(page, "int4-g32").getByTestId("result-synthetic")).toBeVisible();
});

// The Whole model tab with a GPTQ setting: its cells are computed on the activations the run has, say which,
// and are never served from the cache for other activations.
const wholeModel = (page: Page) => page.getByTestId("results-panel");
const wholeModelCell = (page: Page, format: string) => wholeModel(page).locator(`[data-testid="results-row"][data-tensor="${TENSOR}"] [data-testid="results-cell"][data-format="${format}"]`);

async function runWholeModel(page: Page): Promise<string> {
  await wholeModel(page).getByTestId("results-run").click();
  const status = wholeModel(page).getByTestId("results-status");
  await expect(status).toHaveText(/^Done: /, { timeout: 240_000 });
  return (await status.textContent())!;
}

test("Whole model: gptq4-g32 on stories260K, first on synthetic activations (the shard alone), then on the model run; the cache keeps them apart", async ({ page }) => {
  test.setTimeout(540_000);
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles([storiesFile]);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.getByTestId("tab-results").click();
  const formats = wholeModel(page).getByTestId("results-formats");
  await expect(formats).toBeVisible({ timeout: 30_000 });
  // Only int8-channel (a plain format, for comparison) and GPTQ 4-bit in groups of 32 (stories260K's rows of 64).
  for (const id of ["q4_0", "q8_0", "int4-g128"]) await formats.locator(`label[data-format="${id}"] input`).uncheck();
  await formats.locator('details[data-family="calibrated"] > summary').click();
  await formats.locator('label[data-format="gptq4-g32"] input').check();
  await expect(wholeModel(page).getByTestId("results-run")).toHaveText("Run on the whole model (2 formats)");

  const synthetic = await runWholeModel(page);
  expect(synthetic).toMatch(/Output errors on the layers' inputs: synthetic activations \(no model to run: config\.json and tokenizer\.json are not with the weights\)\./);
  const gptq = wholeModelCell(page, "gptq4-g32");
  await expect(gptq).toHaveAttribute("data-source", "synthetic");
  await expect(wholeModelCell(page, "int8-channel")).toHaveAttribute("data-source", "synthetic");
  const syntheticSnr = Number(await gptq.getAttribute("data-value"));
  expect(syntheticSnr).toBeGreaterThan(10);

  // The same weights with config.json and tokenizer: the model can run, so the layers calibrate on their inputs.
  await page.getByTestId("file-input").setInputFiles([storiesFile, ...SIDE_FILES]);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.getByTestId("tab-results").click();
  // The file's cached results show at once, with the activations they were measured on.
  const status = wholeModel(page).getByTestId("results-status");
  await expect(status).toHaveAttribute("data-source", "cache", { timeout: 30_000 });
  await expect(status).toContainText("synthetic activations");
  await expect(gptq).toHaveAttribute("data-source", "synthetic");

  // A run now reuses none of them: every cell was computed on other activations.
  const real = await runWholeModel(page);
  const [, computed, cached] = /Done: (\d+) cells computed, (\d+) from the cache/.exec(real)!;
  expect(Number(cached)).toBe(0);
  expect(Number(computed)).toBe(2 * Number(await wholeModel(page).getByTestId("results-table").getAttribute("data-rows")));
  expect(real).toMatch(/Output errors on the layers' inputs: model run on calibration\.txt, \d+ tokens\./);
  await expect(gptq).toHaveAttribute("data-source", "model");
  await expect(wholeModelCell(page, "int8-channel")).toHaveAttribute("data-source", "model");
  // Its row shows the figures like any format's: SNR in the cell, the output error on the model run in its title.
  expect(Number(await gptq.getAttribute("data-value"))).toBeGreaterThan(10);
  await expect(gptq).toHaveAttribute("title", /output error \(calibration\) \S+ \/ \S+ \(model\)/);
  await wholeModel(page).getByTestId("results-metric").selectOption("outErr");
  const gptqErr = Number(await gptq.getAttribute("data-value"));
  const int8Err = Number(await wholeModelCell(page, "int8-channel").getAttribute("data-value"));
  expect(gptqErr).toBeGreaterThan(0);
  // 4 bits lose more than 8 on the same activations.
  expect(gptqErr).toBeGreaterThan(int8Err);
});
