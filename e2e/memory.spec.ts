/**
 * The memory panel as a person uses it: a preset and a precision give a verdict against the GPU, the
 * sliders change it, a broken config.json is reported and the previous model stays, and the reference
 * measurements are shown beside their estimates.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";

test("memory panel: verdicts, sliders, a bad config and the measurement table", async ({ page }, testInfo) => {
  await page.goto("/");
  const panel = page.getByTestId("memory-panel");
  await expect(panel).toBeVisible();
  // Default: Qwen2.5-7B at q4_K_M in llama.cpp on an RTX 4090.
  await expect(page.getByTestId("memory-verdict")).toHaveText("rtx-4090: fits");

  // 72B at q4_K_M does not fit in 24 GB: llama.cpp needs part of the layers on the CPU.
  await page.getByTestId("memory-preset").selectOption("qwen2.5-72b");
  await expect(page.getByTestId("memory-verdict")).toHaveText(/rtx-4090: does not fit; fits with n_gpu_layers = \d+/);
  const k = Number(/n_gpu_layers = (\d+)/.exec((await page.getByTestId("memory-verdict").textContent()) ?? "")![1]);
  await page.getByTestId("memory-gpu-layers").fill(String(k));
  await expect(page.getByTestId("memory-gpu-layers-value")).toHaveText(String(k));
  await expect(page.getByTestId("memory-verdict")).toHaveText(`rtx-4090: fits with n_gpu_layers = ${k}`);
  // On an 80 GB H100 it fits whole.
  await page.getByTestId("memory-gpu-layers").fill(String(81));
  await page.getByTestId("memory-gpu").selectOption("h100-80");
  await expect(page.getByTestId("memory-verdict")).toHaveText("h100-80: fits");

  // The context slider grows the KV cache; a framework that cannot load GGUF says so.
  await page.getByTestId("memory-preset").selectOption("qwen2.5-7b");
  await page.getByTestId("memory-context").fill("9");
  await expect(page.getByTestId("memory-context-value")).toHaveText("131072 tokens");
  await page.getByTestId("memory-framework").selectOption("transformers");
  await expect(page.getByTestId("memory-estimate-error")).toHaveText(/transformers does not load GGUF/);
  await page.getByTestId("memory-precision").selectOption("fp16");
  await expect(page.getByTestId("memory-verdict")).toHaveText(/h100-80: fits/);

  // A broken config.json: a clear message, and the previous model stays selected.
  const dir = await mkdtemp(path.join(os.tmpdir(), "ql-memory-"));
  const bad = path.join(dir, "config.json");
  await writeFile(bad, JSON.stringify({ model_type: "llama", hidden_size: 64 }));
  await page.getByTestId("memory-config-file").setInputFiles(bad);
  await expect(page.getByTestId("memory-error")).toHaveText(/config\.json: missing key "num_attention_heads" \(needed for llama\)/);
  await expect(page.getByTestId("memory-preset")).toHaveValue("qwen2.5-7b");
  await expect(page.getByTestId("memory-verdict")).toBeVisible();

  // A good config.json replaces the model.
  await writeFile(bad, JSON.stringify({ model_type: "qwen2", hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true }));
  await page.getByTestId("memory-config-file").setInputFiles(bad);
  await expect(page.getByTestId("memory-error")).toHaveCount(0);
  await expect(page.getByTestId("memory-totals")).toContainText("0.49 B parameters");

  // The measurements beside the estimates.
  await page.getByTestId("memory-measurements").locator("summary").click();
  await expect(page.getByTestId("measurement-row")).toHaveCount(10);
  await expect(page.getByTestId("measurement-row").last()).toContainText("out of memory");
  await page.getByTestId("memory-panel").screenshot({ path: testInfo.outputPath("memory-panel.png") });
});
