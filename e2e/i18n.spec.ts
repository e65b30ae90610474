/**
 * The interface in Simplified Chinese, end to end: switch to 简体中文 in the header and walk the lab (tensor
 * table, statistics, the Quantize panel after a run, the heatmaps of the Workshop preset, the memory panel),
 * collecting the visible text, the options of every visible select, and the aria-label, placeholder and
 * title of every element in every shadow root; no English label may be left. Only identifiers are allowed
 * (ALLOWED below), and text the page marks translate="no" (engine messages and the GPU adapter's own
 * names, which are data). An explanation popover opens and speaks the interface language.
 */
import { expect, test, type Page, type TestInfo } from "@playwright/test";

const DEMO_TENSOR = "model.layers.0.self_attn.q_proj.weight";

async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  await testInfo.attach(name, { path: file, contentType: "image/png" });
}

/**
 * What may stay in Latin letters in the Chinese interface: identifiers, never words of a sentence.
 * Each pattern is removed from a text before looking for a leftover word of two or more letters.
 */
const ALLOWED: RegExp[] = [
  // URLs (the URL field's example)
  /https?:\/\/\S+/g,
  // dotted, underscored, slashed or hyphenated names: tensors, files, format ids, shaders, n_gpu_layers, rtx-4090
  /[A-Za-z0-9_]+(?:[._/-][A-Za-z0-9_]+)+/g,
  // words holding a digit: format and dtype names (nf4, bf16, F32, fp16), e4m3
  /\b[A-Za-z]*\d[A-Za-z0-9]*\b/g,
  // names of products, file formats, libraries, frameworks and methods, acronyms, units, colour maps
  /\b(?:WebGPU|GPU|CPU|RTX|safetensors|GGUF|bitsandbytes|transformers|vllm|vLLM|ollama|lightllm|fastllm|GPTQ|AWQ|QLoRA|NormalFloat|IEEE|PNG|CSV|JSON|URL|MSE|RMSE|SNR|KV|dB|B|KiB|MiB|GiB|TiB|NaN|Inf|viridis|inferno|cividis|ONNX|wasm|MIT|KL|ChatML)\b/g,
];
/** Whole texts allowed as they are: the brand and the language's own name on the switch. */
const EXACT = new Set(["quant", "lab", "English"]);

function englishLeft(text: string): string | undefined {
  if (EXACT.has(text)) return undefined;
  let rest = text;
  for (const p of ALLOWED) rest = rest.replace(p, " ");
  return /[A-Za-z]{2,}/.test(rest) ? rest.trim() : undefined;
}

interface Found {
  kind: string;
  text: string;
  where: string;
}

/** Every piece of interface text on the page, through every shadow root. */
function collectTexts(page: Page): Promise<Found[]> {
  return page.evaluate(() => {
    const out: { kind: string; text: string; where: string }[] = [];
    const describe = (el: Element) => {
      const host = (el.getRootNode() as ShadowRoot).host;
      return `${host ? host.tagName.toLowerCase() + " > " : ""}${el.tagName.toLowerCase()}${el.getAttribute("data-testid") ? `[${el.getAttribute("data-testid")}]` : ""}`;
    };
    const walk = (root: Document | ShadowRoot) => {
      for (const el of root.querySelectorAll("*")) {
        if (el.shadowRoot) walk(el.shadowRoot);
        if (el.tagName === "STYLE" || el.tagName === "SCRIPT" || el.closest('[translate="no"]')) continue;
        if (!el.checkVisibility({ visibilityProperty: true })) continue;
        for (const n of el.childNodes) {
          const text = n.nodeType === Node.TEXT_NODE ? n.textContent!.trim() : "";
          if (text) out.push({ kind: "text", text, where: describe(el) });
        }
        for (const attr of ["aria-label", "placeholder", "title"]) {
          const v = el.getAttribute(attr)?.trim();
          if (v) out.push({ kind: attr, text: v, where: describe(el) });
        }
        if (el instanceof HTMLSelectElement) {
          for (const o of el.options) if (o.text.trim()) out.push({ kind: "option", text: o.text.trim(), where: describe(el) });
        }
      }
    };
    walk(document);
    return out;
  });
}

/** Collects the page's texts and fails on any English label left, naming where it is. */
async function expectNoEnglish(page: Page, step: string): Promise<number> {
  const found = await collectTexts(page);
  const left = found.flatMap((f) => {
    const rest = englishLeft(f.text);
    return rest ? [`${f.where} (${f.kind}): "${f.text}"`] : [];
  });
  expect(left, `English left in zh-CN at ${step}`).toEqual([]);
  // The walk saw the page, and the page is in Chinese.
  expect(found.filter((f) => /[\u4e00-\u9fff]/.test(f.text)).length, step).toBeGreaterThan(10);
  return found.length;
}

test.describe.configure({ timeout: 180_000 });

test("the whole lab in Simplified Chinese: no English label left; explanations in both languages", async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  await page.goto("/");
  await expect(page.getByTestId("synthetic-badge")).toBeVisible();
  await expect(page.locator("html")).toHaveAttribute("lang", "en");
  await expect(page.getByTestId("gpu-info")).toBeVisible({ timeout: 30_000 });

  // An explanation in English, next to a format of the Quantize panel.
  await page.locator(`[data-testid="tensor-row"][data-name="${DEMO_TENSOR}"]`).click();
  const picker = page.getByTestId("format-picker");
  await expect(picker).toBeVisible();
  const q4K = picker.locator('label[data-format="q4_K"]');
  const q4KChecked = await q4K.getByTestId("format-choice").isChecked();
  await q4K.getByTestId("explain-button").click();
  const q4KPopover = q4K.getByTestId("explain-popover");
  await expect(q4KPopover).toBeVisible();
  await expect(q4KPopover).toContainText("super-block holds 256 weights");
  await expect(q4KPopover).toContainText("4.5 bits per weight");
  // Opening it did not tick or untick the format.
  expect(await q4K.getByTestId("format-choice").isChecked()).toBe(q4KChecked);
  await screenshot(page, testInfo, "explain-en");
  await page.keyboard.press("Escape");
  await expect(q4KPopover).toBeHidden();

  // Switch: the page, its <html lang> and its URL follow.
  await page.getByTestId("lang-zh-CN").click();
  await expect(page.locator("html")).toHaveAttribute("lang", "zh-CN");
  await expect(page.getByTestId("lang-zh-CN")).toHaveAttribute("aria-pressed", "true");
  await expect(page).toHaveURL(/lang=zh-CN/);
  await expect(page.getByTestId("tab-quantize")).toHaveText("量化");

  // The same explanation, now in Chinese. (The panel re-renders after the switch and a click that lands
  // during it can be lost with the old button: click again until the popover shows.)
  await expect(async () => {
    if (!(await q4KPopover.isVisible())) await q4K.getByTestId("explain-button").click();
    await expect(q4KPopover).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 15_000 });
  await expect(q4KPopover).toContainText("超级块包含 256 个权重");
  await expect(q4KPopover).toContainText("每权重比特数 4.5");
  await screenshot(page, testInfo, "explain-zh");
  await page.keyboard.press("Escape");

  // Table, statistics, the Quantize panel after a run (the int family unfolded too).
  await expect(page.getByTestId("stats-panel")).toBeVisible();
  await picker.locator('details[data-family="int"] summary').click();
  await page.getByTestId("quantize-run").click();
  await expect(page.getByTestId("quantize-report")).toBeVisible({ timeout: 60_000 });
  await expect(page.getByTestId("quantize-result").first()).toBeVisible();
  // A metric header's explanation is in Chinese as well.
  const snrHeader = page.getByTestId("quantize-results").locator('ql-explain[topic="metric:snr"]');
  await snrHeader.getByTestId("explain-button").click();
  await expect(snrHeader.getByTestId("explain-popover")).toContainText("信噪比");
  await page.keyboard.press("Escape");
  await page.getByTestId("memory-measurements").locator("summary").click();
  await screenshot(page, testInfo, "zh-quantize");
  const quantizeTexts = await expectNoEnglish(page, "the Quantize panel after a run");

  // The Workshop preset: the heatmaps, with a hover.
  await page.getByTestId("workshop-button").click();
  const workspace = page.getByTestId("heatmap-workspace");
  await expect(workspace.getByTestId("heatmap-canvas")).toHaveCount(5, { timeout: 90_000 });
  await expect(workspace.getByTestId("heatmap-view")).toBeVisible({ timeout: 60_000 });
  const canvas = workspace.getByTestId("heatmap-canvas").nth(1);
  const box = (await canvas.boundingBox())!;
  await canvas.hover({ position: { x: box.width / 3, y: box.height / 3 } });
  await expect(workspace.getByTestId("heatmap-hover")).toBeVisible({ timeout: 30_000 });
  await expect(page).toHaveURL(/tab=heatmaps.*lang=zh-CN|lang=zh-CN.*tab=heatmaps/);
  // The mode's explanation sits beside the mode selector.
  await workspace.getByTestId("explain-quantity").getByTestId("explain-button").click();
  await expect(workspace.getByTestId("explain-quantity").getByTestId("explain-popover")).toContainText("误差");
  await screenshot(page, testInfo, "zh-heatmaps");
  await page.keyboard.press("Escape");
  const heatmapTexts = await expectNoEnglish(page, "the Workshop heatmaps");
  // The Whole model tab, before a run: the format picker, the metric choice and the run button.
  await page.getByTestId("tab-results").click();
  await expect(page.getByTestId("tab-results")).toHaveText("整个模型");
  await expect(page.getByTestId("results-run")).toContainText("在整个模型上运行", { timeout: 30_000 });
  const resultsTexts = await expectNoEnglish(page, "the Whole model tab");
  await page.getByTestId("tab-export").click();
  await expect(page.getByTestId("export-run")).toHaveText("导出 GGUF");
  await expectNoEnglish(page, "the Export tab");
  testInfo.annotations.push({
    type: "texts checked",
    description: `${quantizeTexts} on the Quantize view, ${heatmapTexts} on the heatmaps, ${resultsTexts} on the Whole model tab`,
  });

  // A reload of the shared link comes back in Chinese.
  await page.reload();
  await expect(page.locator("html")).toHaveAttribute("lang", "zh-CN");
  await expect(page.getByTestId("tab-heatmaps")).toHaveText("热力图");

  // And back to English.
  await page.getByTestId("lang-en").click();
  await expect(page.getByTestId("tab-heatmaps")).toHaveText("Heatmaps");
  await expect(page.locator("html")).toHaveAttribute("lang", "en");
});

test("the allow-list lets identifiers through and catches English words", () => {
  for (const ok of ["model.layers.0.self_attn.q_proj.weight", "int4-g128", "q4_K", "BF16", "64 × 256", "1.5 MiB", "WebGPU", "n_gpu_layers = 20 时放得下", "viridis", "English"]) {
    expect(englishLeft(ok), ok).toBeUndefined();
  }
  for (const bad of ["Quantize", "log scale", "rows 0–255", "计算 on the GPU", "Cancel"]) expect(englishLeft(bad), bad).toBeDefined();
});
