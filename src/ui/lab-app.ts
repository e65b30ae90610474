/**
 * The lab's shell: header, where models come in, what is shown, the tensor table, the selected
 * tensor's statistics and the compute device. Everything it shows comes from the model worker
 * (LabClient); it keeps the last good model on screen when a new input fails.
 */
import { LitElement, css, html, nothing } from "lit";
import { isFormatError } from "../formats/errors.ts";
import type { GpuStatus } from "../gpu/device.ts";
import type { ModelSummary, TensorStatsResult } from "../../workers/model-worker-api.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import type { HeatmapSettings } from "./heatmap-workspace.ts";
import { formatUrlState, type LabTab, type LabUrlState } from "./url-state.ts";
import { currentLang, LangController, LANGUAGES, localized, setLang, type Lang } from "./i18n.ts";
import "./gpu-panel.ts";
import "./heatmap-workspace.ts";
import "./export-panel.ts";
import "./memory-panel.ts";
import "./model-run-panel.ts";
import "./open-panel.ts";
import "./quantize-panel.ts";
import "./calibration-source.ts";
import "./results-table.ts";
import "./spinner.ts";
import "./stats-panel.ts";
import "./tensor-table.ts";

const TEXT = localized(
  {
    tagline:
      "A WebGPU quantization lab in your browser: open safetensors shards, see every tensor, learn what each quantization format costs and breaks.",
    language: "Interface language",
    noWebGpu: (why: string) => `The worker could not query WebGPU (${why}): using the CPU reference.`,
    generatingDemo: "Generating the synthetic demo shard…",
    readingHeader: (what: string) => `Reading the header of ${what}…`,
    tabs: { quantize: "Quantize", heatmaps: "Heatmaps", results: "Whole model", export: "Export" } as Record<LabTab, string>,
    openModel: "Open a model to see its tensors.",
    couldNotOpen: "Could not open",
    keptPrevious: " — still showing the previous model.",
    dismiss: "Dismiss",
    synthetic: "synthetic",
    syntheticNote: "Synthetic demo shard — generated in your browser, not a real model",
    from: (files: string) => `from ${files}`,
    metadata: (n: number) => `metadata (${n})`,
  },
  {
    tagline: "浏览器里的 WebGPU 量化实验室：打开 safetensors 分片，查看每个张量，了解每种量化格式的代价与误差。",
    language: "界面语言",
    noWebGpu: (why: string) => `工作线程无法查询 WebGPU（${why}）：改用 CPU 参考实现。`,
    generatingDemo: "正在生成合成演示分片…",
    readingHeader: (what: string) => `正在读取 ${what} 的文件头…`,
    tabs: { quantize: "量化", heatmaps: "热力图", results: "整个模型", export: "导出" },
    openModel: "打开一个模型以查看其张量。",
    couldNotOpen: "无法打开",
    keptPrevious: "——仍显示之前的模型。",
    dismiss: "关闭",
    synthetic: "合成",
    syntheticNote: "合成演示分片——在浏览器中生成，并非真实模型",
    from: (files: string) => `来自 ${files}`,
    metadata: (n: number) => `元数据（${n}）`,
  },
);

type LabText = ReturnType<typeof TEXT>;

/** A problem to show in the banner: which file (when known) and what is wrong with it. */
interface Problem {
  /** The FormatError code, when the problem is in a file. */
  code?: string;
  file?: string;
  detail: string;
}

export class LabApp extends LitElement {
  static override properties = {
    client: { attribute: false },
    gpu: { state: true },
    model: { state: true },
    busy: { state: true },
    problem: { state: true },
    selected: { state: true },
    stats: { state: true },
    statsLoading: { state: true },
    statsError: { state: true },
    tab: { state: true },
    heatmapInitial: { state: true },
    loadedConfig: { state: true },
  };
  declare client: LabClient | undefined;
  declare gpu: GpuStatus | undefined;
  declare model: ModelSummary | undefined;
  /** What the worker is doing right now, shown next to a spinner (in the language shown). */
  declare busy: ((t: LabText) => string) | undefined;
  declare problem: Problem | undefined;
  declare selected: string | undefined;
  declare stats: TensorStatsResult | undefined;
  declare statsLoading: string | undefined;
  declare statsError: string | undefined;
  /** The workspace under the tensor table. */
  declare tab: LabTab;
  /** Heatmap settings to apply when the workspace shows (from a shared link or the workshop preset). */
  declare heatmapInitial: HeatmapSettings | undefined;
  /** The opened model's config.json, when it came with the model (for the memory panel). */
  declare loadedConfig: { name: string; text: string } | undefined;

  /** Where the shown model came from, for the page URL ("demo" or a URL; undefined for local files). */
  private source: string | undefined;
  private heatmapSettings: HeatmapSettings | undefined;

  /** Only the newest request of each kind may change the screen. */
  private openRequest = 0;
  private statsRequest = 0;
  private readonly langController = new LangController(this);

  static override styles = css`
    :host {
      display: grid;
      grid-template-rows: auto auto auto 1fr;
      gap: 0.75rem;
      height: 100vh;
      box-sizing: border-box;
      padding: 0.9rem 1.2rem 1rem;
      max-width: 1600px;
      margin: 0 auto;
    }
    header {
      display: flex;
      align-items: baseline;
      gap: 0.9rem;
    }
    .languages {
      margin-left: auto;
      display: inline-flex;
      border: 1px solid var(--ql-border-strong);
      border-radius: 6px;
      overflow: hidden;
      flex: none;
    }
    .languages button {
      font: inherit;
      font-size: 0.8rem;
      padding: 0.15rem 0.6rem;
      border: none;
      background: var(--ql-surface);
      color: var(--ql-muted);
      cursor: pointer;
    }
    .languages button[aria-pressed="true"] {
      background: var(--ql-accent);
      color: white;
      font-weight: 600;
    }
    h1 {
      font-size: 1.35rem;
      margin: 0;
      letter-spacing: -0.01em;
    }
    h1 span {
      color: var(--ql-accent);
    }
    .tagline {
      color: var(--ql-muted);
      margin: 0;
      font-size: 0.9rem;
    }
    .status {
      display: flex;
      flex-direction: column;
      gap: 0.4rem;
    }
    .label {
      display: flex;
      align-items: center;
      gap: 0.6rem;
      font-size: 0.9rem;
      min-height: 1.6rem;
      flex-wrap: wrap;
    }
    .label strong {
      font-family: var(--ql-mono);
      font-size: 0.85rem;
    }
    .synthetic {
      font-size: 0.75rem;
      font-weight: 700;
      text-transform: uppercase;
      letter-spacing: 0.05em;
      padding: 0.1rem 0.5rem;
      border-radius: 999px;
      background: var(--ql-warn-bg);
      color: var(--ql-warn);
    }
    .files {
      color: var(--ql-muted);
      font-size: 0.82rem;
    }
    .busy {
      color: var(--ql-accent);
      font-size: 0.85rem;
      display: inline-flex;
      align-items: center;
      gap: 0.4rem;
    }
    .banner {
      display: flex;
      align-items: flex-start;
      gap: 0.75rem;
      background: var(--ql-error-bg);
      border: 1px solid var(--ql-error);
      color: var(--ql-error);
      border-radius: 8px;
      padding: 0.5rem 0.75rem;
      font-size: 0.88rem;
    }
    .banner p {
      margin: 0;
      flex: 1;
    }
    .banner code {
      font-weight: 700;
    }
    .banner button {
      all: unset;
      cursor: pointer;
      font-weight: 700;
      padding: 0 0.3rem;
    }
    details {
      font-size: 0.82rem;
      color: var(--ql-muted);
    }
    details table {
      border-collapse: collapse;
      margin-top: 0.3rem;
    }
    details td {
      padding: 0.1rem 0.6rem 0.1rem 0;
      vertical-align: top;
    }
    details td:first-child {
      font-family: var(--ql-mono);
      color: var(--ql-text);
    }
    details td:last-child {
      font-family: var(--ql-mono);
      word-break: break-all;
    }
    .work {
      display: grid;
      grid-template-columns: minmax(0, 1fr) 19rem;
      gap: 0.9rem;
      min-height: 0;
    }
    .main {
      display: flex;
      flex-direction: column;
      gap: 0.9rem;
      min-height: 0;
    }
    ql-tensor-table {
      flex: 1 1 14rem;
      min-height: 10rem;
    }
    [hidden] {
      display: none !important;
    }
    .tabs {
      display: flex;
      gap: 0.3rem;
      margin-bottom: -0.6rem;
    }
    .tabs button {
      font: inherit;
      font-size: 0.85rem;
      padding: 0.25rem 0.8rem;
      border: 1px solid var(--ql-border);
      border-bottom: none;
      border-radius: 6px 6px 0 0;
      background: transparent;
      color: var(--ql-muted);
      cursor: pointer;
    }
    .tabs button[aria-selected="true"] {
      background: var(--ql-surface);
      color: var(--ql-text);
      font-weight: 600;
    }
    ql-heatmap-workspace,
    ql-export-panel,
    ql-quantize-panel {
      flex: 0 1 auto;
      max-height: 55%;
      overflow: auto;
      border: 1px solid var(--ql-border);
      border-radius: 8px;
      background: var(--ql-surface);
      padding: 0.75rem 0.85rem;
    }
    ql-heatmap-workspace {
      max-height: 62%;
    }
    aside {
      display: flex;
      flex-direction: column;
      gap: 0.9rem;
      min-height: 0;
      overflow: auto;
    }
    aside > * {
      border: 1px solid var(--ql-border);
      border-radius: 8px;
      background: var(--ql-surface);
      padding: 0.75rem 0.85rem;
    }
    .placeholder {
      color: var(--ql-muted);
      padding: 2rem;
      text-align: center;
    }
  `;

  constructor() {
    super();
    this.client = undefined;
    this.tab = "quantize";
  }

  override connectedCallback(): void {
    super.connectedCallback();
    // Files dropped anywhere on the page open too, instead of the browser navigating to them.
    window.addEventListener("dragover", this.onWindowDragOver);
    window.addEventListener("drop", this.onWindowDrop);
  }

  override disconnectedCallback(): void {
    window.removeEventListener("dragover", this.onWindowDragOver);
    window.removeEventListener("drop", this.onWindowDrop);
    super.disconnectedCallback();
  }

  /** Asks the worker which compute device the lab has. */
  async showGpuStatus(): Promise<void> {
    const client = this.requireClient();
    try {
      this.gpu = await client.gpuStatus();
    } catch (e) {
      this.gpu = { kind: "cpu", reason: TEXT().noWebGpu(errorText(e)) };
    }
  }

  openDemo(): Promise<boolean> {
    return this.open((t) => t.generatingDemo, (c) => c.openDemo(), "demo");
  }

  openFiles(files: File[]): Promise<boolean> {
    const names = files.map((f) => f.name).join(", ");
    return this.open((t) => t.readingHeader(names), (c) => c.openFiles(files), undefined);
  }

  openUrl(url: string): Promise<boolean> {
    return this.open((t) => t.readingHeader(url), (c) => c.openUrl(url), url);
  }

  /** Reopens what a shared link describes (the model is opened by the caller): tensor, tab, heatmap settings. */
  async restore(state: LabUrlState): Promise<void> {
    if (state.tab) this.tab = state.tab;
    this.heatmapInitial = { formats: state.formats, quantity: state.show, pooling: state.pool, view: state.view };
    if (state.tensor && this.model?.rows.some((r) => r.name === state.tensor)) await this.selectTensor(state.tensor);
    this.writeUrl();
  }

  /**
   * The workshop preset: the demo shard (rows of 256, so the K-quants take it), one attention projection, int8
   * next to int4, Q4_K and GPTQ (synthetic calibration) in the heatmap view, so a presenter starts in seconds.
   */
  async workshop(): Promise<void> {
    if (!(await this.openDemo())) return;
    await this.restore({ src: "demo", tensor: WORKSHOP_TENSOR, tab: "heatmaps", formats: WORKSHOP_FORMATS, show: "abs", pool: "max" });
  }

  /** The page URL follows the view (replaceState: no history entry per zoom step). */
  private writeUrl(): void {
    const h = this.heatmapSettings;
    const state: LabUrlState = {
      src: this.source,
      tensor: this.selected,
      tab: this.tab,
      lang: currentLang(),
      ...(this.tab === "heatmaps" && h ? { formats: h.formats, show: h.quantity, pool: h.pooling, view: h.view } : {}),
    };
    const hash = formatUrlState(state);
    if (location.hash.replace(/^#/, "") !== hash) history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
  }

  /** Switches the interface language; the page URL keeps it. */
  switchLang(lang: Lang): void {
    setLang(lang);
    this.writeUrl();
  }

  /** Opens a model; true when it is now shown. */
  private async open(what: (t: LabText) => string, request: (client: LabClient) => Promise<ModelSummary>, source: string | undefined): Promise<boolean> {
    const client = this.requireClient();
    const id = ++this.openRequest;
    this.busy = what;
    try {
      const model = await request(client);
      if (id !== this.openRequest) return false;
      this.model = model;
      this.source = source;
      // The memory panel estimates the opened model when its config.json came with it.
      void client.modelSideFile("config.json").then(
        (text) => {
          if (id === this.openRequest && text !== undefined) this.loadedConfig = { name: `${model.name}: config.json`, text };
        },
        () => {},
      );
      this.problem = undefined;
      this.selected = undefined;
      this.stats = undefined;
      this.statsLoading = undefined;
      this.statsError = undefined;
      this.writeUrl();
      return true;
    } catch (e) {
      if (id !== this.openRequest || e instanceof CancelledError) return false;
      // The previous model stays on screen: only the banner changes.
      this.problem = isFormatError(e) ? { code: e.code, file: e.file, detail: e.detail } : { detail: errorText(e) };
      return false;
    } finally {
      if (id === this.openRequest) this.busy = undefined;
    }
  }

  private async selectTensor(name: string): Promise<void> {
    const client = this.requireClient();
    const id = ++this.statsRequest;
    this.selected = name;
    this.writeUrl();
    this.statsLoading = name;
    this.statsError = undefined;
    try {
      const stats = await client.tensorStats(name);
      if (id !== this.statsRequest) return;
      this.stats = stats;
    } catch (e) {
      if (id !== this.statsRequest || e instanceof CancelledError) return;
      this.stats = undefined;
      this.statsError = errorText(e);
    } finally {
      if (id === this.statsRequest) this.statsLoading = undefined;
    }
  }

  override render() {
    const t = TEXT();
    return html`
      <header>
        <h1><span>quant</span>lab</h1>
        <p class="tagline">${t.tagline}</p>
        <div class="languages" role="group" aria-label=${t.language}>
          ${LANGUAGES.map(
            (l) => html`<button
              type="button"
              lang=${l.id}
              data-testid=${`lang-${l.id}`}
              aria-pressed=${currentLang() === l.id ? "true" : "false"}
              @click=${() => this.switchLang(l.id)}
            >
              ${l.label}
            </button>`,
          )}
        </div>
      </header>
      <ql-open-panel
        @open-files=${(e: CustomEvent<File[]>) => this.openFiles(e.detail)}
        @open-url=${(e: CustomEvent<string>) => this.openUrl(e.detail)}
        @open-demo=${() => this.openDemo()}
        @workshop=${() => this.workshop()}
      ></ql-open-panel>
      <div class="status">${this.renderProblem()} ${this.renderLabel()}</div>
      <div class="work">
        ${this.model
          ? html`<div class="main">
              <ql-tensor-table
                .rows=${this.model.rows}
                .totals=${this.model.totals}
                .selected=${this.selected}
                @tensor-select=${(e: CustomEvent<string>) => this.selectTensor(e.detail)}
              ></ql-tensor-table>
              <div class="tabs" role="tablist">
                ${(["quantize", "heatmaps", "results", "export"] as const).map(
                  (tab) => html`<button
                    type="button"
                    role="tab"
                    data-testid=${`tab-${tab}`}
                    aria-selected=${this.tab === tab ? "true" : "false"}
                    @click=${() => {
                      this.tab = tab;
                      this.writeUrl();
                    }}
                  >
                    ${t.tabs[tab]}
                  </button>`,
                )}
              </div>
              <!-- Kept while hidden: it shows the choice the worker holds for this model. -->
              <ql-calibration-source
                data-testid="calibration-source"
                ?hidden=${this.tab === "export"}
                .client=${this.client}
                .modelId=${this.model}
                .selected=${this.selected}
              ></ql-calibration-source>
              <ql-quantize-panel
                data-testid="quantize-panel"
                ?hidden=${this.tab !== "quantize"}
                .client=${this.client}
                .model=${this.model}
                .tensor=${this.model.rows.find((r) => r.name === this.selected)}
              ></ql-quantize-panel>
              ${this.tab === "heatmaps"
                ? html`<ql-heatmap-workspace
                    data-testid="heatmap-workspace"
                    .initial=${this.heatmapInitial}
                    @heatmap-settings=${(e: CustomEvent<HeatmapSettings>) => {
                      this.heatmapSettings = e.detail;
                      this.writeUrl();
                    }}
                    .client=${this.client}
                    .tensor=${this.model.rows.find((r) => r.name === this.selected)}
                  ></ql-heatmap-workspace>`
                : nothing}
              <!-- Kept while hidden, so a whole-model run goes on. -->
              <ql-results-table
                data-testid="results-panel"
                ?hidden=${this.tab !== "results"}
                ?active=${this.tab === "results"}
                .client=${this.client}
                .model=${this.model}
              ></ql-results-table>
              <!-- Kept while hidden, so an export goes on. -->
              <ql-export-panel
                data-testid="export-panel"
                ?hidden=${this.tab !== "export"}
                .client=${this.client}
                .modelName=${this.model.synthetic ? undefined : this.model.name}
              ></ql-export-panel>
            </div>`
          : html`<div class="placeholder">${this.busy ? "" : t.openModel}</div>`}
        <aside>
          <ql-stats-panel
            .result=${this.stats}
            .loading=${this.statsLoading}
            .error=${this.statsError}
          ></ql-stats-panel>
          <ql-gpu-panel data-testid="gpu-panel" .status=${this.gpu}></ql-gpu-panel>
          <ql-memory-panel .loadedConfig=${this.loadedConfig}></ql-memory-panel>
          <ql-model-run-panel data-testid="model-run-panel"></ql-model-run-panel>
        </aside>
      </div>
    `;
  }

  private renderProblem() {
    const p = this.problem;
    if (!p) return nothing;
    const t = TEXT();
    return html`<div class="banner" role="alert" data-testid="error-banner" data-code=${p.code ?? "error"}>
      <p>
        ${t.couldNotOpen}
        ${p.file ? html`<code data-testid="error-file">${p.file}</code>: ` : nothing}<span data-testid="error-detail" translate="no"
          >${p.detail}</span
        >${this.model ? t.keptPrevious : nothing}
      </p>
      <button type="button" aria-label=${t.dismiss} @click=${() => (this.problem = undefined)}>×</button>
    </div>`;
  }

  private renderLabel() {
    const m = this.model;
    const t = TEXT();
    const busy = this.busy
      ? html`<span class="busy" data-testid="busy" role="status"><ql-spinner></ql-spinner>${this.busy(t)}</span>`
      : nothing;
    if (!m) return html`<div class="label">${busy}</div>`;
    const metadata = Object.entries(m.metadata);
    return html`<div class="label" data-testid="model-label">
        ${m.synthetic
          ? html`<span class="synthetic" data-testid="synthetic-badge">${t.synthetic}</span>
              <span>${t.syntheticNote}</span>`
          : html`<strong data-testid="model-name">${m.name}</strong>
              ${m.files.length > 1 || m.files[0] !== m.name
                ? html`<span class="files">${t.from(m.files.join(", "))}</span>`
                : nothing}`}
        ${busy}
      </div>
      ${metadata.length > 0
        ? html`<details data-testid="model-metadata">
            <summary>${t.metadata(metadata.length)}</summary>
            <table>
              ${metadata.map(([k, v]) => html`<tr><td>${k}</td><td>${v}</td></tr>`)}
            </table>
          </details>`
        : nothing}`;
  }

  private requireClient(): LabClient {
    if (!this.client) throw new Error("LabApp needs a client before it can open anything.");
    return this.client;
  }

  private readonly onWindowDragOver = (e: DragEvent): void => {
    if (e.dataTransfer?.types.includes("Files")) e.preventDefault();
  };

  private readonly onWindowDrop = (e: DragEvent): void => {
    if (e.defaultPrevented) return; // the drop zone already took it
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length === 0) return;
    e.preventDefault();
    void this.openFiles(files);
  };
}

const WORKSHOP_TENSOR = "model.layers.0.self_attn.q_proj.weight";
const WORKSHOP_FORMATS = ["int8-channel", "int4-g128", "q4_K", "gptq4-g128"];


customElements.define("ql-lab-app", LabApp);

declare global {
  interface HTMLElementTagNameMap {
    "ql-lab-app": LabApp;
  }
}
