/**
 * "Run the model": stories260K (bundled) built at the chosen precisions and run in onnxruntime-web in a
 * worker (workers/model-run-worker.ts). Shows perplexity, KL divergence from f32 and top-1 agreement next to
 * each precision's weight memory (a table and a bar chart), generations side by side with the first token
 * where each departs from f32 marked, and a chat rendered with the model's template. Every number comes from
 * the worker (src/model); this component lays them out. The worker, and with it any session, ends when the
 * panel leaves the page.
 */
import * as Comlink from "comlink";
import { LitElement, css, html, nothing } from "lit";
import { formatBytes, formatMeasure, formatShare } from "../common/format.ts";
import type { ChatMessage } from "../model/chat-template.ts";
import type { Float16Mode } from "../model/decoder-graph.ts";
import { fallbackSummary } from "../model/precision.ts";
import type { ExecutionProvider } from "../model/session.ts";
import type { EvaluationResult, GenerationResult, ModelRunWorkerApi, RunProgress } from "../../workers/model-run-worker-api.ts";
import { CancelledError, fromWireError } from "../../workers/wire-error.ts";
import { LangController, localized } from "./i18n.ts";
import { filePickerStyles, panelStyles } from "./styles.ts";

/** How long a cancelled run may take to stop by itself before its worker is ended. */
const CANCEL_GRACE_MS = 2000;

/** Every string the panel shows, in both languages (src/ui/i18n.ts). */
export const MODEL_RUN_STRINGS = localized(
  {
    title: "Run the model",
    intro: "stories260K (bundled, MIT) built as an ONNX graph at each precision and run in onnxruntime-web.",
    load: "Load stories260K",
    openFolder: "Or open a model folder…",
    modelName: "Model:",
    keptPrevious: "still using the model loaded before.",
    loading: "Loading the model…",
    precisions: "Precisions (f32 always runs as the reference)",
    provider: "Execution provider",
    providers: { webgpu: "WebGPU (wasm if unavailable)", wasm: "wasm" } as Record<ExecutionProvider, string>,
    evalText: "Evaluation text",
    evaluate: "Evaluate",
    cancel: "Cancel",
    cancelled: "Cancelled.",
    running: (p: RunProgress) =>
      p.precision ? `Running ${p.precision} (${p.done + 1} of ${p.total})${p.tokens ? `, ${p.tokensDone} of ${p.tokens} tokens` : ""}…` : "Finishing…",
    ranOn: (ep: string, tokens: number) => `${tokens} tokens on the ${ep} provider; KL divergence and agreement against f32.`,
    fellBack: (why: string) => `WebGPU was not used: ${why}.`,
    float16: (mode: Float16Mode): string => (mode === "compute" ? "f16 computes in fp16 here." : "f16: fp16 weights, fp32 compute (this provider has no fp16)."),
    columns: ["precision", "weights", "ppl", "Δppl", "KLD mean", "median", "p99", "max", "top-1 = f32", "fallbacks"],
    chartTitle: "Weight memory (bar) and mean KL divergence from f32",
    prompt: "Prompt",
    tokens: "New tokens",
    greedy: "Greedy",
    sampled: "Sampled",
    temperature: "Temperature",
    seed: "Seed",
    generate: "Generate",
    departs: (i: number) => (i < 0 ? "same as f32" : `departs at token ${i + 1}`),
    chat: "Chat template (what a chat model receives)",
    system: "System",
    user: "User",
    render: "Render",
    error: "Could not run the model:",
  },
  {
    title: "运行模型",
    intro: "stories260K（内置，MIT 许可）在每种精度下构建为 ONNX 图，并在 onnxruntime-web 中运行。",
    load: "加载 stories260K",
    openFolder: "或打开一个模型文件夹…",
    modelName: "模型：",
    keptPrevious: "仍在使用之前加载的模型。",
    loading: "正在加载模型…",
    precisions: "精度（f32 总是作为参照运行）",
    provider: "执行后端",
    providers: { webgpu: "WebGPU（不可用时用 wasm）", wasm: "wasm" } as Record<ExecutionProvider, string>,
    evalText: "评测文本",
    evaluate: "评测",
    cancel: "取消",
    cancelled: "已取消。",
    running: (p: RunProgress) =>
      p.precision ? `正在运行 ${p.precision}（第 ${p.done + 1} 个，共 ${p.total} 个${p.tokens ? `；${p.tokensDone}/${p.tokens} 个词元` : ""}）…` : "即将完成…",
    ranOn: (ep: string, tokens: number) => `${tokens} 个词元，后端 ${ep}；KL 散度与一致率均相对于 f32。`,
    fellBack: (why: string) => `未使用 WebGPU：${why}。`,
    float16: (mode: Float16Mode) => (mode === "compute" ? "f16 在此以 fp16 计算。" : "f16：fp16 权重，fp32 计算（此后端不支持 fp16）。"),
    columns: ["精度", "权重", "困惑度", "Δ困惑度", "KL 均值", "中位数", "p99", "最大值", "top-1 与 f32 一致", "回退"],
    chartTitle: "权重内存（条形）与相对 f32 的平均 KL 散度",
    prompt: "提示词",
    tokens: "新词元数",
    greedy: "贪心",
    sampled: "采样",
    temperature: "温度",
    seed: "种子",
    generate: "生成",
    departs: (i: number) => (i < 0 ? "与 f32 相同" : `在第 ${i + 1} 个词元处偏离`),
    chat: "对话模板（对话模型实际收到的内容）",
    system: "系统",
    user: "用户",
    render: "渲染",
    error: "无法运行模型：",
  },
);

const PRECISION_CHOICES = ["f16", "bf16", "int8", "int8-g32", "int4-g32", "int4-asym-g32", "int4-g128", "q8_0", "q6_K", "q5_K", "q4_K", "q3_K", "q2_K", "q4_0", "nf4", "fp4", "fp8-e4m3", "gptq4-g32", "awq4-g32", "gptq4", "awq4"];
const DEFAULT_CHOSEN = ["f16", "int8", "int4-g32", "q8_0", "q4_K", "q2_K", "nf4"];

export class ModelRunPanel extends LitElement {
  static override properties = {
    loaded: { state: true },
    modelName: { state: true },
    busy: { state: true },
    progress: { state: true },
    error: { state: true },
    chosen: { state: true },
    provider: { state: true },
    text: { state: true },
    evaluation: { state: true },
    generation: { state: true },
    sampled: { state: true },
    rendered: { state: true },
  };
  declare loaded: boolean;
  declare modelName: string | undefined;
  declare busy: string | undefined;
  declare progress: RunProgress | undefined;
  /** An engine message (data, shown untranslated), or the run was cancelled; kept: a previous model stays. */
  declare error: { message?: string; cancelled?: boolean; kept?: boolean } | undefined;
  declare chosen: string[];
  declare provider: ExecutionProvider;
  declare text: string;
  declare evaluation: EvaluationResult | undefined;
  declare generation: GenerationResult | undefined;
  declare sampled: boolean;
  declare rendered: string | undefined;

  private readonly langController = new LangController(this);
  private worker: Worker | undefined;
  private api: Comlink.Remote<ModelRunWorkerApi> | undefined;
  /** What the worker has loaded, so a fresh worker (after a cancel that had to end one) can load it again. */
  private source: { bundled: true } | { files: File[] } | undefined;
  /** Rejects the task in flight with a CancelledError (when its worker had to be ended). */
  private abandon: (() => void) | undefined;
  /** Counts tasks, so a cancel's timer acts only on the task it was given for. */
  private taskCount = 0;

  constructor() {
    super();
    this.loaded = false;
    this.chosen = [...DEFAULT_CHOSEN];
    this.provider = "webgpu";
    this.text = "";
    this.sampled = false;
  }

  static override styles = [
    panelStyles,
    filePickerStyles,
    css`
      .row {
        display: flex;
        flex-wrap: wrap;
        gap: 0.4rem 0.8rem;
        align-items: center;
        margin: 0.4rem 0;
      }
      .choices label {
        font-size: 0.8rem;
      }
      textarea {
        width: 100%;
        box-sizing: border-box;
        min-height: 4rem;
        font: inherit;
        font-size: 0.8rem;
      }
      .table-wrap {
        overflow-x: auto;
        max-width: 100%;
      }
      table {
        border-collapse: collapse;
        font-size: 0.78rem;
        font-variant-numeric: tabular-nums;
      }
      th,
      td {
        padding: 0.15rem 0.4rem;
        text-align: right;
        border-bottom: 1px solid var(--ql-border, #ddd);
      }
      th:first-child,
      td:first-child {
        text-align: left;
      }
      .bars {
        display: grid;
        grid-template-columns: auto 1fr auto;
        gap: 0.15rem 0.5rem;
        font-size: 0.75rem;
        align-items: center;
      }
      .bar {
        height: 0.7rem;
        background: #4f7cff;
      }
      .gen {
        font-size: 0.8rem;
        white-space: pre-wrap;
        margin: 0.3rem 0;
      }
      mark {
        background: #ffb347;
      }
      pre {
        font-size: 0.75rem;
        white-space: pre-wrap;
        background: var(--ql-code-bg, #f4f4f6);
        padding: 0.4rem;
      }
      .error {
        color: #b00020;
      }
      .muted {
        color: var(--ql-muted);
        font-size: 0.78rem;
      }
    `,
  ];

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    // Ending the worker frees its onnxruntime sessions and the model.
    this.endWorker();
    this.source = undefined;
    this.loaded = false;
  }

  private endWorker(): void {
    this.worker?.terminate();
    this.worker = undefined;
    this.api = undefined;
  }

  /** The worker, started when there is none; a restarted one first loads the model the last one had. */
  private async remote(): Promise<Comlink.Remote<ModelRunWorkerApi>> {
    if (!this.api) {
      this.worker = new Worker(new URL("../../workers/model-run-worker.ts", import.meta.url), { type: "module" });
      const api = Comlink.wrap<ModelRunWorkerApi>(this.worker);
      this.api = api;
      const source = this.source;
      if (source) await ("files" in source ? api.loadFiles(source.files) : api.loadBundled());
    }
    return this.api;
  }

  /** onnxruntime sessions open in the worker (0 without one): for tests, which check a cancel leaks none. */
  async liveSessions(): Promise<number> {
    return this.api ? this.api.liveSessions() : 0;
  }

  /**
   * Cancel asks the worker to stop at its next chunk or token. One onnxruntime run cannot be interrupted, and
   * on WebGPU a first run compiles its shaders for a long while: when the task has not ended after
   * CANCEL_GRACE_MS, the worker is ended (which frees its sessions) and the task ends as cancelled.
   */
  private cancel(): void {
    const task = this.taskCount;
    void this.api?.cancel();
    setTimeout(() => {
      if (!this.busy || this.taskCount !== task) return;
      this.endWorker();
      this.abandon?.();
    }, CANCEL_GRACE_MS);
  }

  private async task(label: string, body: (api: Comlink.Remote<ModelRunWorkerApi>) => Promise<void>): Promise<void> {
    this.busy = label;
    this.error = undefined;
    this.progress = undefined;
    this.taskCount++;
    const abandoned = new Promise<never>((_, reject) => (this.abandon = () => reject(new CancelledError("cancelled"))));
    try {
      await Promise.race([this.remote().then(body), abandoned]);
    } catch (e) {
      const err = fromWireError(e);
      this.error = err instanceof CancelledError ? { cancelled: true } : { message: err.message, kept: (e as { kept?: boolean }).kept === true };
    } finally {
      this.abandon = undefined;
      this.busy = undefined;
      this.progress = undefined;
    }
  }

  private load() {
    return this.task(MODEL_RUN_STRINGS().loading, async (api) => {
      const info = await api.loadBundled();
      this.text ||= info.evalText;
      this.modelName = info.name;
      this.source = { bundled: true };
      this.loaded = true;
    });
  }

  private openFolder(input: HTMLInputElement) {
    const files = [...(input.files ?? [])];
    input.value = "";
    if (files.length === 0) return;
    return this.task(MODEL_RUN_STRINGS().loading, async (api) => {
      try {
        const info = await api.loadFiles(files);
        this.modelName = info.name;
        this.source = { files };
        this.loaded = true;
      } catch (e) {
        // The worker kept the model it had: say so next to the error.
        throw Object.assign(fromWireError(e), { kept: this.loaded });
      }
    });
  }

  private onProgress = Comlink.proxy((p: RunProgress) => {
    this.progress = p;
  });

  private evaluate() {
    return this.task(MODEL_RUN_STRINGS().evaluate, async (api) => {
      this.evaluation = await api.evaluate(this.text, { precisions: this.chosen, executionProvider: this.provider }, this.onProgress);
    });
  }

  private generate() {
    const root = this.renderRoot;
    const value = (id: string) => (root.querySelector(`#${id}`) as HTMLInputElement).value;
    return this.task(MODEL_RUN_STRINGS().generate, async (api) => {
      const sampling = this.sampled ? { kind: "sample" as const, temperature: Number(value("temperature")), seed: Number(value("seed")) } : { kind: "greedy" as const };
      this.generation = await api.generate(value("prompt"), Number(value("tokens")), sampling, { precisions: this.chosen, executionProvider: this.provider }, this.onProgress);
    });
  }

  private renderTemplate() {
    const root = this.renderRoot;
    const messages: ChatMessage[] = [
      { role: "system", content: (root.querySelector("#system") as HTMLInputElement).value },
      { role: "user", content: (root.querySelector("#user") as HTMLInputElement).value },
    ];
    return this.task(MODEL_RUN_STRINGS().render, async (api) => {
      this.rendered = await api.renderChat(messages);
    });
  }

  private toggle(precision: string, on: boolean) {
    this.chosen = on ? PRECISION_CHOICES.filter((p) => p === precision || this.chosen.includes(p)) : this.chosen.filter((p) => p !== precision);
  }

  override render() {
    const s = MODEL_RUN_STRINGS();
    return html`<h2>${s.title}</h2>
      <p class="muted">${s.intro}</p>
      <div class="row">
        ${this.loaded
          ? html`<span>${s.modelName} <span data-testid="model-run-name" translate="no">${this.modelName}</span></span>`
          : html`<button type="button" data-testid="model-run-load" ?disabled=${this.busy !== undefined} @click=${() => this.load()}>${s.load}</button>`}
        <label class="file"
          >${s.openFolder}
          <input type="file" multiple webkitdirectory data-testid="model-run-folder" @change=${(e: Event) => this.openFolder(e.target as HTMLInputElement)}
        /></label>
      </div>
      ${this.loaded ? this.renderControls() : nothing}
      ${this.busy
        ? html`<p class="muted" data-testid="model-run-busy">
            ${this.progress ? s.running(this.progress) : this.busy}
            <button type="button" data-testid="model-run-cancel" @click=${() => this.cancel()}>${s.cancel}</button>
          </p>`
        : nothing}
      ${this.error
        ? html`<p class="error" role="alert" data-testid="model-run-error">
            ${this.error.cancelled ? s.cancelled : html`${s.error} <span translate="no">${this.error.message}</span>${this.error.kept ? html` — ${s.keptPrevious}` : nothing}`}
          </p>`
        : nothing} ${this.renderEvaluation()}
      ${this.renderGeneration()}`;
  }

  private renderControls() {
    const s = MODEL_RUN_STRINGS();
    const idle = this.busy === undefined;
    return html`<div class="row choices" aria-label=${s.precisions}>
        ${PRECISION_CHOICES.map(
          (p) => html`<label
            ><input type="checkbox" data-precision=${p} .checked=${this.chosen.includes(p)} @change=${(e: Event) => this.toggle(p, (e.target as HTMLInputElement).checked)} />${p}</label
          >`,
        )}
      </div>
      <div class="row">
        <label
          >${s.provider}
          <select data-testid="model-run-provider" @change=${(e: Event) => (this.provider = (e.target as HTMLSelectElement).value as ExecutionProvider)}>
            ${(["webgpu", "wasm"] as const).map((ep) => html`<option value=${ep} ?selected=${this.provider === ep}>${s.providers[ep]}</option>`)}
          </select></label
        >
      </div>
      <label>${s.evalText}<textarea data-testid="model-run-text" .value=${this.text} @input=${(e: Event) => (this.text = (e.target as HTMLTextAreaElement).value)}></textarea></label>
      <div class="row"><button type="button" data-testid="model-run-evaluate" ?disabled=${!idle} @click=${() => this.evaluate()}>${s.evaluate}</button></div>
      <div class="row">
        <label>${s.prompt} <input id="prompt" data-testid="model-run-prompt" value="Once upon a time" /></label>
        <label>${s.tokens} <input id="tokens" type="number" min="1" max="256" value="40" style="width:4rem" /></label>
        <label><input type="radio" name="mode" .checked=${!this.sampled} @change=${() => (this.sampled = false)} />${s.greedy}</label>
        <label><input type="radio" name="mode" .checked=${this.sampled} @change=${() => (this.sampled = true)} />${s.sampled}</label>
        ${this.sampled
          ? html`<label>${s.temperature} <input id="temperature" type="number" step="0.1" min="0.1" value="0.8" style="width:4rem" /></label>
              <label>${s.seed} <input id="seed" type="number" value="1" style="width:4rem" /></label>`
          : nothing}
        <button type="button" data-testid="model-run-generate" ?disabled=${!idle} @click=${() => this.generate()}>${s.generate}</button>
      </div>
      <details>
        <summary>${s.chat}</summary>
        <div class="row">
          <label>${s.system} <input id="system" value="You are a storyteller." /></label>
          <label>${s.user} <input id="user" value="Tell me a story about a cat." /></label>
          <button type="button" data-testid="model-run-render" @click=${() => this.renderTemplate()}>${s.render}</button>
        </div>
        ${this.rendered !== undefined ? html`<pre data-testid="model-run-chat" translate="no">${this.rendered}</pre>` : nothing}
      </details>`;
  }

  private renderEvaluation() {
    const r = this.evaluation;
    if (!r) return nothing;
    const s = MODEL_RUN_STRINGS();
    const maxBytes = Math.max(...r.precisions.map((p) => p.weightsBytes));
    return html`<p class="muted" data-testid="model-run-summary">
        ${s.ranOn(r.executionProvider, r.tokens)} ${r.fallbackReason ? s.fellBack(r.fallbackReason) : nothing}
        ${r.precisions.some((p) => p.compute) ? html`<span data-testid="float16-note">${s.float16(r.float16)}</span>` : nothing}
      </p>
      <div class="table-wrap">
      <table data-testid="model-run-table">
        <thead>
          <tr>
            ${s.columns.map((c) => html`<th>${c}</th>`)}
          </tr>
        </thead>
        <tbody>
          ${r.precisions.map(
            (p) => html`<tr data-precision=${p.name}>
              <td>${p.name}</td>
              <td>${formatBytes(p.weightsBytes)}</td>
              <td data-testid="ppl">${p.ppl.toFixed(4)}</td>
              <td>${(p.deltaPpl >= 0 ? "+" : "") + p.deltaPpl.toFixed(4)}</td>
              <td data-testid="kld">${formatMeasure(p.kldMean)}</td>
              <td>${formatMeasure(p.kldMedian)}</td>
              <td>${formatMeasure(p.kldP99)}</td>
              <td>${formatMeasure(p.kldMax)}</td>
              <td>${formatShare(p.top1Agree)}</td>
              <td title=${p.fallbacks.map((f) => `${f.tensor} → ${f.to}: ${f.reason}`).join("\n")}>${fallbackSummary(p.fallbacks)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      </div>
      <h2>${s.chartTitle}</h2>
      <div class="bars" data-testid="model-run-chart">
        ${r.precisions.map(
          (p) => html`<span>${p.name}</span>
            <div class="bar" style="width:${(100 * p.weightsBytes) / maxBytes}%"></div>
            <span>${formatBytes(p.weightsBytes)} · KLD ${formatMeasure(p.kldMean)}</span>`,
        )}
      </div>`;
  }

  private renderGeneration() {
    const g = this.generation;
    if (!g) return nothing;
    return html`<div data-testid="model-run-generations">
      ${g.rows.map(
        (row) => html`<div class="gen" data-precision=${row.name} translate="no">
          <strong>${row.name}</strong> <span class="muted">(${MODEL_RUN_STRINGS().departs(row.departsAt)})</span><br />
          ${row.pieces.map((piece, i) => {
            const text = piece.replaceAll("▁", " ");
            return i === row.departsAt ? html`<mark data-testid="departure">${text}</mark>` : text;
          })}
        </div>`,
      )}
    </div>`;
  }
}

customElements.define("ql-model-run-panel", ModelRunPanel);
