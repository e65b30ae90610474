/**
 * The model-run panel as a person uses it: load the bundled stories260K, evaluate f32 against a few
 * precisions on the wasm provider (WebGPU on SwiftShader takes minutes a session), generate side by side
 * with the first departure marked, and see a chat rendered with ChatML; then open a model folder whose
 * config disagrees with its weights.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";

test("model run: perplexity table, generations and the chat template", async ({ page }) => {
  test.setTimeout(240_000);
  await page.goto("/");
  const panel = page.getByTestId("model-run-panel");
  await panel.getByTestId("model-run-load").click();
  await expect(panel.getByTestId("model-run-text")).toHaveValue(/^Once upon a time|^\S/, { timeout: 30_000 });
  await panel.getByTestId("model-run-provider").selectOption("wasm");
  // Only q8_0 and q2_K besides f32.
  for (const box of await panel.locator("input[data-precision]").all()) await box.uncheck();
  await panel.locator('input[data-precision="q8_0"]').check();
  await panel.locator('input[data-precision="q2_K"]').check();
  await panel.getByTestId("model-run-evaluate").click();
  const table = panel.getByTestId("model-run-table");
  await expect(table.locator("tbody tr")).toHaveCount(3, { timeout: 180_000 });
  await expect(panel.getByTestId("model-run-summary")).toContainText("509 tokens on the wasm provider");
  // The reference perplexity of eval.txt is 4.0433.
  await expect(table.locator('tr[data-precision="f32"] [data-testid="ppl"]')).toHaveText("4.0433");
  const kld = async (name: string) => Number(await table.locator(`tr[data-precision="${name}"] [data-testid="kld"]`).textContent());
  expect(await kld("q8_0")).toBeLessThan(await kld("q2_K"));
  await expect(table.locator('tr[data-precision="q2_K"]')).toContainText("31 → q4_0, 5 → f16");
  await expect(panel.getByTestId("model-run-chart")).toBeVisible();

  await panel.getByTestId("model-run-generate").click();
  const generations = panel.getByTestId("model-run-generations");
  await expect(generations.locator(".gen")).toHaveCount(3, { timeout: 120_000 });
  await expect(generations.locator('.gen[data-precision="f32"]')).toContainText("there was a little girl named Lily");

  await panel.getByText("Chat template").click();
  await panel.getByTestId("model-run-render").click();
  await expect(panel.getByTestId("model-run-chat")).toHaveText(
    "<|im_start|>system\nYou are a storyteller.<|im_end|>\n<|im_start|>user\nTell me a story about a cat.<|im_end|>\n<|im_start|>assistant\n",
  );
});

test("model run: a model folder with a bad config is refused by name and the loaded model stays", async ({ page }) => {
  test.setTimeout(120_000);
  const stories = path.resolve("../shared/models/stories260K");
  const folder = await mkdtemp(path.join(os.tmpdir(), "quantlab-model-"));
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) await cp(path.join(stories, f), path.join(folder, f));
  const config = JSON.parse(await readFile(path.join(folder, "config.json"), "utf8")) as Record<string, unknown>;

  await page.goto("/");
  const panel = page.getByTestId("model-run-panel");
  await panel.getByTestId("model-run-load").click();
  await expect(panel.getByTestId("model-run-name")).toHaveText("stories260K", { timeout: 30_000 });

  await writeFile(path.join(folder, "config.json"), JSON.stringify({ ...config, intermediate_size: 256 }));
  await panel.getByTestId("model-run-folder").setInputFiles(folder);
  await expect(panel.getByTestId("model-run-error")).toContainText('"model.layers.0.mlp.gate_proj.weight" has shape [172, 64] but config.json implies [256, 64]');
  await expect(panel.getByTestId("model-run-error")).toContainText("still using the model loaded before");
  await expect(panel.getByTestId("model-run-name")).toHaveText("stories260K");

  await writeFile(path.join(folder, "config.json"), JSON.stringify(config));
  await panel.getByTestId("model-run-folder").setInputFiles(folder);
  await expect(panel.getByTestId("model-run-name")).toHaveText("model.safetensors");
  await expect(panel.getByTestId("model-run-error")).toHaveCount(0);
  await rm(folder, { recursive: true, force: true });
});

test("model run: cancel stops an evaluation mid-text and one stuck in a long run, leaving no session open", async ({ page }) => {
  test.setTimeout(240_000);
  await page.goto("/");
  const panel = page.getByTestId("model-run-panel");
  await panel.getByTestId("model-run-load").click();
  await expect(panel.getByTestId("model-run-name")).toHaveText("stories260K", { timeout: 30_000 });
  const liveSessions = () => panel.evaluate((el) => (el as HTMLElement & { liveSessions(): Promise<number> }).liveSessions());
  const busy = panel.getByTestId("model-run-busy");

  // wasm: the run stops at its next chunk of tokens (or, when the cancel lands while a precision's weights
  // are being encoded, once its session opens; src/model/evaluate.test.ts pins the chunk bound down).
  await panel.getByTestId("model-run-provider").selectOption("wasm");
  await panel.getByTestId("model-run-evaluate").click();
  await expect(busy).toContainText(/tokens/, { timeout: 60_000 });
  await panel.getByTestId("model-run-cancel").click();
  await expect(panel.getByTestId("model-run-error")).toHaveText("Cancelled.", { timeout: 5_000 });
  await expect(busy).toHaveCount(0);
  expect(await liveSessions()).toBe(0);

  // WebGPU on SwiftShader compiles its shaders for minutes inside the first run: the worker is ended instead.
  await panel.getByTestId("model-run-provider").selectOption("webgpu");
  await panel.getByTestId("model-run-evaluate").click();
  await expect(busy).toContainText(/Running f32/, { timeout: 60_000 });
  await panel.getByTestId("model-run-cancel").click();
  await expect(panel.getByTestId("model-run-error")).toHaveText("Cancelled.", { timeout: 10_000 });
  expect(await liveSessions()).toBe(0);

  // A fresh worker loads the model again for the next run.
  await panel.getByTestId("model-run-provider").selectOption("wasm");
  for (const box of await panel.locator("input[data-precision]").all()) await box.uncheck();
  await panel.locator('input[data-precision="q8_0"]').check();
  await panel.getByTestId("model-run-evaluate").click();
  await expect(panel.getByTestId("model-run-table").locator("tbody tr")).toHaveCount(2, { timeout: 120_000 });
  expect(await liveSessions()).toBe(0);
});
