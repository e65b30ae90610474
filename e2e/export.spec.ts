/**
 * The Export tab end to end: stories260K picked with its config.json and tokenizer files is written as a
 * GGUF by the built app (the download path: the File System Access picker is removed, as in browsers without
 * it), and the file is the very bytes `quantlab export` writes; without config.json the tab says what is
 * missing and nothing is downloaded. The ONNX and GPTQ targets download the same bytes as the CLI too (GPTQ
 * calibrated in the browser's own model run).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { readGgufHeader } from "../src/formats/gguf.ts";
import { BlobSource } from "../src/formats/source.ts";
import { storiesDir, storiesFile } from "./test-files.ts";
import { quantlab } from "../test/quantlab-cli.ts";

const SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"].map((f) => path.join(storiesDir, f));

test.beforeEach(async ({ page }) => {
  // As in a browser without the File System Access API: the export comes back as a download.
  await page.addInitScript(() => {
    delete (window as { showSaveFilePicker?: unknown }).showSaveFilePicker;
    delete (window as { showDirectoryPicker?: unknown }).showDirectoryPicker;
  });
});

test("stories260K with its config and tokenizer exports as a GGUF identical to the CLI's", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles([storiesFile, ...SIDE_FILES]);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  // The config that came with the model also drives the memory estimate.
  await expect(page.getByTestId("memory-preset").locator("option:checked")).toHaveText("model.safetensors: config.json");
  await page.getByTestId("tab-export").click();
  const panel = page.getByTestId("export-panel");
  await panel.getByTestId("export-type").selectOption("Q4_K_M");
  const download = page.waitForEvent("download");
  await panel.getByTestId("export-run").click();
  const file = testInfo.outputPath("stories260K-Q4_K_M.gguf");
  await (await download).saveAs(file);
  await expect(panel.getByTestId("export-done")).toBeVisible({ timeout: 60_000 });
  await expect(panel.getByTestId("export-fallbacks")).toContainText("blk.0.ffn_down.weight: q4_K → F16");

  const bytes = new Uint8Array(await readFile(file));
  const header = await readGgufHeader(new BlobSource(new Blob([bytes]), "exported.gguf"));
  expect(header.tensors).toHaveLength(47);
  expect(header.kv.get("general.file_type")).toBe(15);
  // The same bytes as the command line writes from the same folder.
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-e2e-export-"));
  try {
    const cliFile = path.join(dir, "cli.gguf");
    const cli = await quantlab("export", storiesDir, "--to", "gguf", "--type", "Q4_K_M", "--out", cliFile);
    expect(cli.code, cli.stderr).toBe(0);
    const cliBytes = new Uint8Array(await readFile(cliFile));
    // general.name is the folder's name in the CLI and the file's in the lab: compare the tensors' bytes.
    const cliHeader = await readGgufHeader(new BlobSource(new Blob([cliBytes]), "cli.gguf"));
    for (const t of header.tensors) {
      const c = cliHeader.tensors.find((x) => x.name === t.name)!;
      const ours = bytes.subarray(header.dataOffset + t.offset, header.dataOffset + t.offset + t.nbytes);
      const theirs = cliBytes.subarray(cliHeader.dataOffset + c.offset, cliHeader.dataOffset + c.offset + c.nbytes);
      expect(Buffer.compare(Buffer.from(ours), Buffer.from(theirs)), t.name).toBe(0);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("without config.json the export says what is missing and writes nothing", async ({ page }) => {
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles(storiesFile);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.getByTestId("tab-export").click();
  const panel = page.getByTestId("export-panel");
  let downloads = 0;
  page.on("download", () => downloads++);
  await panel.getByTestId("export-run").click();
  await expect(panel.getByTestId("export-error")).toContainText("no config.json came with the model", { timeout: 30_000 });
  expect(downloads).toBe(0);
});

test("ONNX and GPTQ exports download the very bytes `quantlab export` writes", async ({ page }, testInfo) => {
  test.setTimeout(240_000);
  await page.goto("/");
  await page.getByTestId("file-input").setInputFiles([storiesFile, ...SIDE_FILES]);
  await expect(page.getByTestId("model-name")).toHaveText("model.safetensors");
  await page.getByTestId("tab-export").click();
  const panel = page.getByTestId("export-panel");
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-e2e-export-"));
  try {
    // ONNX at int4-g32: one file, the graph the lab runs.
    await panel.getByTestId("export-target").selectOption("onnx");
    await panel.getByTestId("export-precision").selectOption("int4-g32");
    const onnxDownload = page.waitForEvent("download");
    await panel.getByTestId("export-run").click();
    const onnx = await onnxDownload;
    expect(onnx.suggestedFilename()).toBe("model-int4-g32.onnx");
    const onnxFile = testInfo.outputPath("model-int4-g32.onnx");
    await onnx.saveAs(onnxFile);
    await expect(panel.getByTestId("export-done")).toBeVisible({ timeout: 60_000 });
    const cliOnnx = path.join(dir, "cli.onnx");
    const cli = await quantlab("export", storiesDir, "--to", "onnx", "--precision", "int4-g32", "--out", cliOnnx);
    expect(cli.code, cli.stderr).toBe(0);
    expect(Buffer.compare(await readFile(onnxFile), await readFile(cliOnnx))).toBe(0);

    // GPTQ 4-bit g128: one download per file (no directory picker here); calibrated in the browser's model run.
    await panel.getByTestId("export-target").selectOption("gptq");
    const files = new Map<string, string>();
    page.on("download", (d) => {
      const to = testInfo.outputPath(`gptq-${d.suggestedFilename()}`);
      files.set(d.suggestedFilename(), to);
      void d.saveAs(to);
    });
    await panel.getByTestId("export-run").click();
    await expect(panel.getByTestId("export-done")).toContainText("20 layers packed, 15 kept unquantized", { timeout: 120_000 });
    await expect(panel.getByTestId("export-unconverted")).toContainText("model.layers.0.mlp.down_proj");
    await expect.poll(() => files.size).toBe(5);
    const cliDir = path.join(dir, "gptq");
    const cliGptq = await quantlab("export", storiesDir, "--to", "gptq", "--out", cliDir);
    expect(cliGptq.code, cliGptq.stderr).toBe(0);
    for (const name of ["model.safetensors", "config.json", "quantize_config.json", "tokenizer.json"]) {
      await expect.poll(async () => Buffer.compare(await readFile(files.get(name)!).catch(() => Buffer.alloc(0)), await readFile(path.join(cliDir, name))), name).toBe(0);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
