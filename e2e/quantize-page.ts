/** The Quantize tab as the e2e tests drive it: open files, select a tensor, pick formats, read a result row. */
import { expect, type Locator, type Page } from "@playwright/test";

export const quantizePanel = (page: Page) => page.getByTestId("quantize-panel");

export const resultRow = (page: Page, format: string) => quantizePanel(page).locator(`[data-testid="quantize-result"][data-format="${format}"]`);

/** A result row's output error on the calibration tokens. */
export async function outputError(row: Locator): Promise<number> {
  return Number(await row.getByTestId("result-output-error").getAttribute("data-value"));
}

/** Opens `files` in the lab, selects `tensor` and unticks every format. */
export async function openAndSelect(page: Page, files: string[], tensor: string): Promise<void> {
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles(files);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.locator(`[data-testid="tensor-row"][data-name="${tensor}"]`).click();
  await expect(quantizePanel(page).getByTestId("format-picker")).toBeVisible();
  await quantizePanel(page).getByTestId("formats-none").click();
}

/** Ticks each format, opening its family's section when it is folded. */
export async function pickFormats(page: Page, ids: string[]): Promise<void> {
  const panel = quantizePanel(page);
  for (const id of ids) {
    const label = panel.locator(`label[data-format="${id}"]`);
    if (!(await label.isVisible())) await panel.locator("details", { has: page.locator(`label[data-format="${id}"]`) }).getByTestId("family-toggle").click();
    await label.locator("input").check();
  }
}
