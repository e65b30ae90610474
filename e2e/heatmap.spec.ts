/**
 * The heatmap workspace end to end on stories260K: int4 next to int8 (and q4_0, nf4) on a real tensor, each
 * canvas drawn, int4's mean error darker-brighter than int8's on the shared scale, the hover showing the
 * CPU reference's numbers for the weight under the pointer, zoom down to single weights, and a format that
 * cannot take the tensor saying why and what llama.cpp would use.
 */
import { readFile } from "node:fs/promises";
import { expect, test, type Locator, type Page, type TestInfo } from "@playwright/test";
import { readTensorValues, tensorRowLayout } from "../src/formats/model.ts";
import { readSafetensors } from "../src/formats/safetensors.ts";
import { BlobSource } from "../src/formats/source.ts";
import { getFormat } from "../src/quant/registry.ts";
import { storiesFile } from "./test-files.ts";

const TENSOR = "model.layers.0.mlp.gate_proj.weight"; // 172 x 64

async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  await testInfo.attach(name, { path: file, contentType: "image/png" });
}

/** Mean luminance (0..255) and the number of distinct colours of a canvas. */
function canvasStats(canvas: Locator): Promise<{ luminance: number; colours: number; width: number }> {
  return canvas.evaluate((c: HTMLCanvasElement) => {
    const ctx = c.getContext("2d")!;
    const { data } = ctx.getImageData(0, 0, c.width, c.height);
    let sum = 0;
    const colours = new Set<number>();
    for (let i = 0; i < data.length; i += 4) {
      sum += 0.2126 * data[i]! + 0.7152 * data[i + 1]! + 0.0722 * data[i + 2]!;
      colours.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
    }
    return { luminance: sum / (data.length / 4), colours: colours.size, width: c.width };
  });
}

async function cpuDecoded(format: string): Promise<{ x: Float32Array; y: Float32Array; cols: number }> {
  const file = await readSafetensors(new BlobSource(new Blob([await readFile(storiesFile)]), "model.safetensors"));
  const t = file.tensors.find((x) => x.name === TENSOR)!;
  const { rows, rowLength: cols } = tensorRowLayout(t);
  const x = await readTensorValues(t);
  const f = getFormat(format);
  return { x, y: f.decode(f.encode(x, { rows, cols }), { rows, cols }), cols };
}

test("int4 next to int8 on a stories260K tensor: drawn, int4 shows more error, hover gives the CPU reference's numbers, zoom", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  await page.goto("/");
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
  await page.getByTestId("file-input").setInputFiles(storiesFile);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.locator(`[data-testid="tensor-row"][data-name="${TENSOR}"]`).click();
  await page.getByTestId("tab-heatmaps").click();

  const workspace = page.getByTestId("heatmap-workspace");
  const canvases = workspace.getByTestId("heatmap-canvas");
  // The weights panel and four formats that take rows of 64: int4-g32, q4_0, int8-channel, nf4.
  await expect(canvases).toHaveCount(5, { timeout: 60_000 });
  await expect(workspace.getByTestId("heatmap-panel")).toHaveCount(5);
  const formats = await workspace.getByTestId("heatmap-panel").evaluateAll((els) => els.map((e) => e.getAttribute("data-format")));
  expect(formats).toEqual(["weights", "int4-g32", "q4_0", "int8-channel", "nf4"]);

  // Mean |error| pooling, one shared scale: int4 brighter (viridis: more error) than int8.
  await workspace.getByTestId("heatmap-quantity").selectOption("abs");
  await workspace.getByTestId("heatmap-pooling").selectOption("mean");
  const stats = [];
  for (let i = 0; i < 5; i++) stats.push(await canvasStats(canvases.nth(i)));
  // Drawn, not blank: the weights and the 4-bit panels use much of the map; int8's small errors stay in the
  // dark end of the shared scale but still vary.
  for (const i of [0, 1, 2, 4]) expect(stats[i]!.colours, `panel ${i} colours`).toBeGreaterThan(20);
  expect(stats[3]!.colours).toBeGreaterThan(1);
  expect(stats[1]!.luminance).toBeGreaterThan(stats[3]!.luminance + 20);
  await expect(workspace.getByTestId("legend-hi")).not.toHaveText("");
  // A histogram under every panel (weights, then errors).
  await expect(workspace.getByTestId("heatmap-histogram")).toHaveCount(5);
  await expect(workspace.getByTestId("heatmap-histogram").nth(1).locator("rect").first()).toBeAttached();
  await screenshot(page, testInfo, "heatmaps-int4-int8");
  // The block-scale map: int4-g32's scales are drawn (many distinct scales), then back to errors.
  await workspace.getByTestId("heatmap-quantity").selectOption("scale");
  await expect(workspace.getByTestId("heatmap-legend")).toContainText("block scales");
  expect((await canvasStats(canvases.nth(1))).colours).toBeGreaterThan(10);
  await workspace.getByTestId("heatmap-quantity").selectOption("abs");

  // Hover the int4 panel: the tooltip's numbers are the CPU reference's for that weight.
  const int4 = canvases.nth(1);
  const box = (await int4.boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.55);
  const hover = workspace.getByTestId("heatmap-hover");
  await expect(hover).toBeVisible({ timeout: 20_000 });
  const row = Number(await hover.getAttribute("data-row"));
  const col = Number(await hover.getAttribute("data-col"));
  expect(row).toBe(Math.floor(0.55 * 172));
  expect(col).toBe(Math.floor(0.3 * 64));
  for (const format of ["int4-g32", "int8-channel"]) {
    const { x, y, cols } = await cpuDecoded(format);
    const cell = hover.locator(`[data-testid="hover-format"][data-format="${format}"]`);
    await expect(cell).toHaveAttribute("data-value", String(y[row * cols + col]));
    await expect(cell).toHaveAttribute("data-error", String(Math.fround(y[row * cols + col]! - x[row * cols + col]!)));
  }

  // Zoom in at the pointer until single weights: the view shrinks and the cells become weights.
  for (let i = 0; i < 14; i++) await page.mouse.wheel(0, -100);
  await expect(workspace.getByTestId("heatmap-view")).toContainText(/\((\d+)×(\d+) weights in \1×\2 cells\)/, { timeout: 30_000 });
  await expect(canvases).toHaveCount(5);
  await screenshot(page, testInfo, "heatmaps-zoomed");
});

test("a format that cannot take the tensor's rows says why and names llama.cpp's fallback", async ({ page }) => {
  test.setTimeout(90_000);
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles(storiesFile);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.locator(`[data-testid="tensor-row"][data-name="${TENSOR}"]`).click();
  await page.getByTestId("tab-heatmaps").click();
  const workspace = page.getByTestId("heatmap-workspace");
  await expect(workspace.getByTestId("heatmap-canvas")).toHaveCount(5, { timeout: 60_000 });
  await workspace.getByTestId("heatmap-format-3").selectOption("q4_K");
  const failed = workspace.locator('[data-testid="heatmap-panel"][data-format="q4_K"]');
  await expect(failed.getByTestId("heatmap-failure")).toContainText("not a multiple of 256", { timeout: 30_000 });
  await expect(failed.getByTestId("heatmap-failure")).toContainText(/llama\.cpp would use \w+ instead/);
});

test("the workshop preset opens the side-by-side view in one click, and its link reopens the same view", async ({ page, context }) => {
  test.setTimeout(120_000);
  await page.goto("/");
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
  await page.getByTestId("workshop-button").click();
  const workspace = page.getByTestId("heatmap-workspace");
  await expect(workspace.getByTestId("heatmap-canvas")).toHaveCount(5, { timeout: 60_000 });
  const formats = await workspace.getByTestId("heatmap-panel").evaluateAll((els) => els.map((e) => e.getAttribute("data-format")));
  expect(formats).toEqual(["weights", "int8-channel", "int4-g128", "q4_K", "gptq4-g128"]);
  await expect(workspace.getByTestId("synthetic-calibration")).toHaveCount(1);

  // Zoom in once: the link follows.
  const box = (await workspace.getByTestId("heatmap-canvas").nth(1).boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, -100);
  await expect(page).toHaveURL(/view=\d+,\d+,205,205/, { timeout: 10_000 });
  const link = page.url();
  expect(link).toContain("tensor=model.layers.0.self_attn.q_proj.weight");
  expect(link).toContain("formats=int8-channel,int4-g128,q4_K,gptq4-g128");

  // A second tab opened on the link shows the same tensor, formats and zoom.
  const other = await context.newPage();
  await other.goto(link);
  const again = other.getByTestId("heatmap-workspace");
  await expect(again.getByTestId("heatmap-canvas")).toHaveCount(5, { timeout: 60_000 });
  await expect(again.getByTestId("heatmap-view")).toContainText(/\(205×205 weights/);
  expect(await again.getByTestId("heatmap-panel").evaluateAll((els) => els.map((e) => e.getAttribute("data-format")))).toEqual(formats);
});
