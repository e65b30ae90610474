/**
 * Choosing what GPTQ / AWQ calibrate on, end to end. The shard alone has no model to run, so by default it
 * calibrates on synthetic activations; the reference dumps of stories260K's layer inputs (../shared, float32
 * [tokens, in], layers.N.attn_in.f32 ...) picked as activation files calibrate its layers for real; a file that
 * cannot be used, or a text with no model to run it, is refused with the reason and the previous choice stays.
 * With config.json and the tokenizer beside the shard, a text of one's own is what the model runs on.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { openAndSelect, outputError, pickFormats, quantizePanel, resultRow } from "./quantize-page.ts";
import { storiesDir, storiesFile } from "./test-files.ts";

const SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"].map((f) => path.join(storiesDir, f));
const CALIB_DIR = path.join(storiesDir, "reference/calib");
const DUMPS = readdirSync(CALIB_DIR)
  .filter((f) => f.endsWith(".f32"))
  .map((f) => path.join(CALIB_DIR, f));
const TENSOR = "model.layers.0.self_attn.q_proj.weight";
const STORY = "Once upon a time, a little dog found a red ball in the park. He ran to show it to his friend the cat. ".repeat(3);

const panel = quantizePanel;
const chooser = (page: Page) => page.getByTestId("calibration-source");

async function openAndPick(page: Page, files: string[]): Promise<void> {
  await openAndSelect(page, files, TENSOR);
  await pickFormats(page, ["gptq4-g32", "int4-g32"]);
}

const errorOf = (page: Page, format: string) => outputError(resultRow(page, format));

test("a lone shard calibrates on activation files picked in the lab; unusable choices are refused and change nothing", async ({ page }) => {
  test.setTimeout(150_000);
  await openAndPick(page, [storiesFile]);
  const current = chooser(page).getByTestId("calibration-current");
  await expect(current).toHaveAttribute("data-source", "bundled");

  // A truncated dump: refused, naming the file; the default stays.
  await chooser(page).getByTestId("calibration-files-input").setInputFiles([{ name: "layers.0.attn_in.f32", mimeType: "application/octet-stream", buffer: Buffer.alloc(10) }]);
  await expect(chooser(page).getByTestId("calibration-error")).toContainText("layers.0.attn_in.f32: 10 bytes are not whole float32 values");
  await expect(chooser(page).getByTestId("calibration-error")).toContainText("The previous calibration stays");
  await expect(current).toHaveAttribute("data-source", "bundled");

  // A file named after no layer calibrates the selected tensor.
  await chooser(page).getByTestId("calibration-files-input").setInputFiles([{ name: "q-inputs.f32", mimeType: "application/octet-stream", buffer: readFileSync(path.join(CALIB_DIR, "layers.0.attn_in.f32")) }]);
  await expect(current).toHaveText("activation files (1 file for 1 of 35 linear layers, 509 tokens)");

  await chooser(page).getByTestId("calibration-files-input").setInputFiles(DUMPS);
  await expect(current).toHaveAttribute("data-source", "file");
  await expect(current).toHaveText("activation files (20 files for 35 of 35 linear layers, 509 tokens)");
  await expect(chooser(page).getByTestId("calibration-error")).toHaveCount(0);

  // A text needs a model to run: refused, the files stay.
  await chooser(page).getByTestId("calibration-text-input").setInputFiles([{ name: "story.txt", mimeType: "text/plain", buffer: Buffer.from(STORY) }]);
  await expect(chooser(page).getByTestId("calibration-error")).toContainText("story.txt cannot calibrate this model: no model to run");
  await expect(current).toHaveAttribute("data-source", "file");

  await panel(page).getByTestId("quantize-run").click();
  const calibration = panel(page).getByTestId("quantize-calibration");
  await expect(calibration).toHaveAttribute("data-source", "file", { timeout: 90_000 });
  await expect(calibration).toContainText("activations from layers.0.attn_in.f32, 382 tokens (+127 held out)");
  expect(await errorOf(page, "gptq4-g32")).toBeLessThan(await errorOf(page, "int4-g32"));

  // The heatmap of the same setting calibrates on the same files, and says so.
  await page.getByTestId("tab-heatmaps").click();
  const workspace = page.getByTestId("heatmap-workspace");
  await expect(workspace.getByTestId("heatmap-canvas").first()).toBeVisible({ timeout: 60_000 });
  await workspace.getByTestId("heatmap-format-1").selectOption("gptq4-g32");
  const heat = workspace.locator('[data-testid="heatmap-panel"][data-format="gptq4-g32"]');
  await expect(heat.getByTestId("file-calibration")).toBeVisible({ timeout: 60_000 });
  await expect(heat.getByTestId("synthetic-calibration")).toHaveCount(0);
  await page.getByTestId("tab-quantize").click();

  // A file whose values hold a NaN passes the size checks; the run that reads it stops, naming it, and the
  // results shown stay.
  const nan = readFileSync(path.join(CALIB_DIR, "layers.0.attn_in.f32"));
  nan.writeFloatLE(NaN, 4 * (64 * 7 + 5));
  await chooser(page).getByTestId("calibration-files-input").setInputFiles([{ name: "layers.0.attn_in.f32", mimeType: "application/octet-stream", buffer: nan }]);
  await expect(current).toHaveText("activation files (1 file for 3 of 35 linear layers, 509 tokens)");
  await panel(page).getByTestId("quantize-run").click();
  await expect(panel(page).getByTestId("quantize-error")).toContainText("layers.0.attn_in.f32: the activations hold 1 non-finite value (NaN at token 7, channel 5)", { timeout: 60_000 });
  await expect(calibration).toContainText("activations from layers.0.attn_in.f32, 382 tokens (+127 held out)");

  // Back to the default: synthetic again on the next run, and the shown results keep their label until then.
  await chooser(page).getByTestId("calibration-reset").click();
  await expect(current).toHaveAttribute("data-source", "bundled");
  await expect(calibration).toHaveAttribute("data-source", "file");
  await panel(page).getByTestId("quantize-run").click();
  await expect(calibration).toHaveAttribute("data-source", "synthetic", { timeout: 90_000 });
});

test("with the model's config and tokenizer, a text of one's own is what the model runs on", async ({ page }) => {
  test.setTimeout(150_000);
  await openAndPick(page, [storiesFile, ...SIDE_FILES]);
  const current = chooser(page).getByTestId("calibration-current");
  await chooser(page).getByTestId("calibration-text-input").setInputFiles([{ name: "my-story.txt", mimeType: "text/plain", buffer: Buffer.from(STORY) }]);
  await expect(current).toHaveAttribute("data-source", "model", { timeout: 60_000 });
  await expect(current).toHaveText(/^model run on my-story\.txt, \d+ tokens$/);
  await panel(page).getByTestId("quantize-run").click();
  const calibration = panel(page).getByTestId("quantize-calibration");
  await expect(calibration).toHaveAttribute("data-source", "model", { timeout: 90_000 });
  await expect(calibration).toContainText(/model run on my-story\.txt, \d+ tokens \(\+\d+ held out\)/);
  expect(await errorOf(page, "gptq4-g32")).toBeLessThan(await errorOf(page, "int4-g32"));

  // Opening another model forgets the choice.
  await page.getByTestId("file-input").setInputFiles([storiesFile]);
  await expect(current).toHaveAttribute("data-source", "bundled");
});
