/**
 * The lab end to end: the built app in headless Chromium with WebGPU, opening the demo, real
 * safetensors from ../shared through the file chooser, a sharded BF16 checkpoint, broken files, a URL
 * served with Range requests, and a sparse file larger than 4 GiB. Every test saves a screenshot.
 */
import { statSync } from "node:fs";
import { copyFile, mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, test, type Page, type TestInfo } from "@playwright/test";
import { FIRST_SLICE_BYTES } from "../src/formats/source.ts";
import { formatValue } from "../src/common/format.ts";
import { startRangeServer } from "./range-server.ts";
import {
  BIG_ZEROS_BYTES,
  PAST_4GIB,
  brokenFiles,
  removeQuietly,
  repoRoot,
  shardedFiles,
  storiesFile,
  writeFiles,
  writeSparseBigFile,
} from "./test-files.ts";

const STORIES_TENSORS = 47;
const STORIES_PARAMS = "260,032";
/** Independent reference values, from the READMEs of ../shared/models/stories260K and stories260K-sharded. */
const NORM_WEIGHT_0_F32 = 2.45830894;
const NORM_WEIGHT_0_BF16 = 2.453125;

/** Saves a screenshot of the page in test-results/ and attaches it to the report. */
async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<string> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file });
  await testInfo.attach(name, { path: file, contentType: "image/png" });
  return file;
}

const tensorRows = (page: Page) => page.getByTestId("tensor-row");

async function openStoriesWithChooser(page: Page): Promise<void> {
  const chooser = page.waitForEvent("filechooser");
  await page.getByText("Choose files…").click();
  await (await chooser).setFiles(storiesFile);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await expect(page.getByTestId("total-tensors")).toHaveText(String(STORIES_TENSORS));
}

/**
 * The first values the stats panel shows for a tensor, read back as float32: the panel writes the
 * shortest text that reads back as the same float32, so this recovers the stored values exactly.
 */
async function firstValues(page: Page, tensor: string): Promise<number[]> {
  await page.locator(`[data-testid="tensor-row"][data-name="${tensor}"]`).click();
  const panel = page.locator(`[data-testid="stats-panel"][data-name="${tensor}"]`);
  // The first statistics of a page may wait for the worker's WebGPU device and kernel compilation.
  await expect(panel).toBeVisible({ timeout: 30_000 });
  const text = await panel.getByTestId("stat-first").textContent();
  return (text ?? "").trim().split(/\s+/).map((v) => Math.fround(Number(v)));
}

test.beforeEach(async ({ page }) => {
  await page.goto("/");
  // The demo opens by itself; wait for it so every test starts from the same state.
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
});

test("first open shows the synthetic demo and the WebGPU adapter", async ({ page }, testInfo) => {
  await expect(page.getByTestId("model-label")).toContainText("Synthetic demo shard — generated in your browser, not a real model");
  // 4 layers x 9 tensors + embedding + final norm.
  await expect(tensorRows(page)).toHaveCount(38);
  // One group per layer, plus the embedding and final norm together.
  await expect(page.getByTestId("group-row")).toHaveCount(4 + 1);
  await expect(page.getByTestId("total-tensors")).toHaveText("38");
  // The demo stores its embedding in BF16 and the rest in F32.
  await expect(page.locator('[data-name="model.embed_tokens.weight"] [data-testid="dtype"]')).toHaveText("BF16");
  await expect(page.locator('[data-name="model.layers.0.self_attn.q_proj.weight"] [data-testid="dtype"]')).toHaveText("F32");
  // WebGPU works in this headless Chromium (SwiftShader), queried from the worker.
  await expect(page.getByTestId("gpu-architecture")).toHaveText(/swiftshader/i);
  await expect(page.getByTestId("gpu-f16")).toHaveText(/yes|no/);
  await screenshot(page, testInfo, "demo-first-open");
});

test("stories260K through the file chooser: 47 tensors, 260,032 parameters, layers 0..4", async ({ page }, testInfo) => {
  await openStoriesWithChooser(page);
  await expect(page.getByTestId("synthetic-badge")).toHaveCount(0);
  await expect(tensorRows(page)).toHaveCount(STORIES_TENSORS);
  await expect(page.getByTestId("total-params")).toHaveText(STORIES_PARAMS);
  await expect(page.getByTestId("total-bytes")).toHaveAttribute("title", "1,040,128 bytes");
  for (let layer = 0; layer < 5; layer++) {
    const group = page.locator(`[data-testid="group-row"][data-group="model.layers.${layer}"]`);
    await expect(group).toContainText("9 tensors");
    await expect(group).toContainText("45,440");
  }
  await expect(page.locator('[data-name="model.layers.4.mlp.down_proj.weight"]')).toContainText("64 × 172");
  // Statistics stream from the worker; F32 values are exact.
  const first = await firstValues(page, "model.norm.weight");
  expect(first[0]).toBe(Math.fround(NORM_WEIGHT_0_F32));
  await expect(page.locator('[data-testid="stats-panel"] [data-testid="stat-count"]')).toHaveText("64");
  // The statistics ran as a WGSL kernel on the worker's WebGPU device.
  await expect(page.getByTestId("stats-device")).toContainText("GPU");
  const file = await screenshot(page, testInfo, "stories260K");
  if (process.env["UPDATE_SCREENSHOT"] === "1") await copyFile(file, path.join(repoRoot, "docs/screenshot.png"));
});

/** Drops files on the drop zone the way a file manager does: a drop event carrying Files. */
async function dropFiles(page: Page, paths: string[]): Promise<void> {
  const files = await Promise.all(paths.map(async (p) => ({ name: path.basename(p), base64: (await readFile(p)).toString("base64") })));
  const dataTransfer = await page.evaluateHandle((list) => {
    const dt = new DataTransfer();
    for (const f of list) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name));
    }
    return dt;
  }, files);
  await page.getByTestId("drop-zone").dispatchEvent("dragenter", { dataTransfer });
  await page.getByTestId("drop-zone").dispatchEvent("drop", { dataTransfer });
}

test("the sharded BF16 checkpoint: index and both shards dropped together", async ({ page }, testInfo) => {
  await dropFiles(page, shardedFiles);
  await expect(page.getByTestId("total-tensors")).toHaveText(String(STORIES_TENSORS));
  await expect(page.getByTestId("total-params")).toHaveText(STORIES_PARAMS);
  await expect(page.getByTestId("dtype")).toHaveCount(STORIES_TENSORS);
  for (const cell of await page.getByTestId("dtype").all()) await expect(cell).toHaveText("BF16");
  await expect(page.getByTestId("model-label")).toContainText("model-00002-of-00002.safetensors");
  // model.norm.weight lives in the second shard.
  const first = await firstValues(page, "model.norm.weight");
  expect(first[0]).toBe(NORM_WEIGHT_0_BF16);
  await screenshot(page, testInfo, "stories260K-sharded-bf16");
});

test("broken files name the file and the problem, and keep the previous table", async ({ page }, testInfo) => {
  await openStoriesWithChooser(page);
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-e2e-"));
  try {
    const broken = await brokenFiles();
    const paths = await writeFiles(dir, broken);
    for (const [i, f] of broken.entries()) {
      await page.getByTestId("file-input").setInputFiles(paths[i]!);
      const banner = page.getByTestId("error-banner");
      await expect(banner).toHaveAttribute("data-code", f.code);
      await expect(banner.getByTestId("error-file")).toHaveText(f.name);
      await expect(banner.getByTestId("error-detail")).not.toBeEmpty();
      // The stories260K table is still there, untouched.
      await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
      await expect(tensorRows(page)).toHaveCount(STORIES_TENSORS);
      await expect(page.getByTestId("total-params")).toHaveText(STORIES_PARAMS);
      if (i === 0) await screenshot(page, testInfo, "broken-file-keeps-table");
    }
    // A good file after the errors opens normally and clears the banner.
    await page.getByTestId("demo-button").click();
    await expect(page.getByTestId("synthetic-badge")).toBeVisible();
    await expect(page.getByTestId("error-banner")).toHaveCount(0);
  } finally {
    await removeQuietly(dir);
  }
});

test("sorting by clicking headers and filtering by text or /regex/", async ({ page }, testInfo) => {
  await openStoriesWithChooser(page);
  await page.getByTestId("group-toggle").uncheck();
  await expect(page.getByTestId("group-row")).toHaveCount(0);

  const bytesHeader = page.getByTestId("sort-bytes");
  await expect(bytesHeader).toHaveAttribute("aria-sort", "none");
  await bytesHeader.getByRole("button").click();
  await expect(bytesHeader).toHaveAttribute("aria-sort", "descending");
  await expect(tensorRows(page).first()).toHaveAttribute("data-name", "model.embed_tokens.weight");
  await bytesHeader.getByRole("button").click();
  await expect(bytesHeader).toHaveAttribute("aria-sort", "ascending");
  await expect(tensorRows(page).first()).toContainText("64");
  await expect(tensorRows(page).first()).toHaveAttribute("data-name", /norm/);

  const nameHeader = page.getByTestId("sort-name");
  await nameHeader.getByRole("button").click();
  await expect(nameHeader).toHaveAttribute("aria-sort", "ascending");
  await expect(bytesHeader).toHaveAttribute("aria-sort", "none");
  const names = await tensorRows(page).evaluateAll((rows) => rows.map((r) => r.getAttribute("data-name") ?? ""));
  expect(names).toEqual([...names].sort());

  const filter = page.getByTestId("filter");
  await filter.fill("q_proj");
  await expect(tensorRows(page)).toHaveCount(5);
  await expect(page.getByTestId("shown-count")).toHaveText("5 of 47 tensors");
  await filter.fill("/layers\\.[01]\\.mlp\\.(gate|up)_proj/");
  await expect(tensorRows(page)).toHaveCount(4);
  await filter.fill("/NORM/i");
  await expect(tensorRows(page)).toHaveCount(11);
  await filter.fill("/NORM/");
  await expect(tensorRows(page)).toHaveCount(0);
  await filter.fill("/[unclosed/");
  await expect(page.getByTestId("filter-error")).toBeVisible();
  await screenshot(page, testInfo, "sort-and-filter");
  await filter.fill("");
  await expect(page.getByTestId("filter-error")).toHaveCount(0);
  await expect(tensorRows(page)).toHaveCount(STORIES_TENSORS);
});

test("a URL read with HTTP Range requests gives the same table without downloading the file", async ({ page }, testInfo) => {
  const server = await startRangeServer(storiesFile, { urlPath: "/stories260K/model.safetensors" });
  const naive = await startRangeServer(storiesFile, { urlPath: "/naive/model.safetensors", honourRange: false });
  try {
    await page.getByTestId("url-input").fill(server.url);
    await page.getByTestId("url-open").click();
    await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
    await expect(page.getByTestId("model-label")).toContainText(server.url);
    await expect(tensorRows(page)).toHaveCount(STORIES_TENSORS);
    await expect(page.getByTestId("total-params")).toHaveText(STORIES_PARAMS);
    await expect(page.getByTestId("total-bytes")).toHaveAttribute("title", "1,040,128 bytes");
    const { size } = statSync(storiesFile);
    // Opening read the header only: one first slice, far less than the file.
    expect(server.bytesSent()).toBeLessThanOrEqual(FIRST_SLICE_BYTES);
    expect(server.ranges.every((r) => r.startsWith("bytes="))).toBe(true);
    const afterHeader = server.bytesSent();
    // One tensor's statistics fetch that tensor's bytes (64 F32 values), not the file.
    const first = await firstValues(page, "model.norm.weight");
    expect(first[0]).toBe(Math.fround(NORM_WEIGHT_0_F32));
    expect(server.bytesSent() - afterHeader).toBeLessThan(64 * 1024);
    expect(server.bytesSent()).toBeLessThan(size / 8);
    await screenshot(page, testInfo, "url-range");

    // A server that ignores Range is reported, and the table stays.
    await page.getByTestId("url-input").fill(naive.url);
    await page.getByTestId("url-open").click();
    await expect(page.getByTestId("error-banner")).toHaveAttribute("data-code", "range-unsupported");
    await expect(page.getByTestId("error-file")).toHaveText(naive.url);
    await expect(page.getByTestId("model-label")).toContainText(server.url);
    await expect(tensorRows(page)).toHaveCount(STORIES_TENSORS);
  } finally {
    await server.close();
    await naive.close();
  }
});

test("a sparse file larger than 4 GiB opens, and the tensor past 2^32 reads back exactly", async ({ page }, testInfo) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-e2e-big-"));
  const file = path.join(dir, "past-4gib.safetensors");
  try {
    const { size, tensorOffset } = await writeSparseBigFile(file);
    expect(tensorOffset).toBeGreaterThan(2 ** 32);
    // A local path: Playwright hands it to the local Chromium without reading the 4 GB.
    await page.getByTestId("file-input").setInputFiles(file);
    await expect(page.getByTestId("model-name")).toHaveText("past-4gib.safetensors");
    await expect(tensorRows(page)).toHaveCount(2);
    await expect(page.locator('[data-name="big.zeros"]')).toContainText("4,300,000,000");
    await expect(page.getByTestId("total-bytes")).toHaveAttribute(
      "title",
      `${(BIG_ZEROS_BYTES + 4 * PAST_4GIB.values.length).toLocaleString("en-US")} bytes`,
    );
    expect(size).toBeGreaterThan(2 ** 32);

    const first = await firstValues(page, PAST_4GIB.name);
    expect(first).toEqual(PAST_4GIB.values.map(Math.fround));
    const stats = page.getByTestId("stats-panel");
    await expect(stats).toContainText(tensorOffset.toLocaleString("en-US"));
    await expect(stats.getByTestId("stat-min")).toHaveText(formatValue(-1000));
    await expect(stats.getByTestId("stat-max")).toHaveText(formatValue(65504));
    await expect(stats.getByTestId("stat-count")).toHaveText("8");
    await screenshot(page, testInfo, "past-4gib");
  } finally {
    await removeQuietly(dir);
  }
});
