/**
 * The whole-model results table: every floating-point tensor of the open model in the formats picked,
 * run tensor by tensor in the quantization worker (progress, time left, Cancel) and filled in as each
 * tensor finishes. Cells show SNR, RMSE or bits per weight, colour coded; columns sort; the totals say
 * what each format would store for the whole model (tensors a format cannot take counted in llama.cpp's
 * fallback) and the sensitivity table which layers lose most. A file opened again shows its cached
 * results at once.
 *
 * Every number comes from the worker or from src/pipeline/model-results.ts; this component lays them out.
 */
import { LitElement, css, html, nothing } from "lit";
import { formatBytes, formatCount, formatMeasure, formatShape, formatShare } from "../common/format.ts";
import {
  CELL_METRICS,
  cellValue,
  colourBucket,
  colourScale,
  layerSensitivity,
  modelTotals,
  sortResults,
  substitutionGroups,
  type CellMetric,
  type ColourScale,
  type FormatTotals,
  type LayerSensitivity,
  type SortKey,
} from "../pipeline/model-results.ts";
import type { TensorRow } from "../formats/catalog.ts";
import { quantizedSourceTypes } from "../formats/tensor-data.ts";
import type { ChoiceFamily, FormatChoice, ModelCell, ModelProgress, ModelRunEvent, ModelRunReport, TensorResults } from "../../workers/quant-worker-api.ts";
import type { RunProgress } from "./run-progress.ts";
import "./run-progress.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import { buttonStyles, figureTableStyles, panelStyles } from "./styles.ts";
import "./spinner.ts";
import "./calibrated-settings.ts";
import { LangController, localized } from "./i18n.ts";
import { formatTooltip } from "./explain.ts";

/** Every string the component shows (a later task translates them). */
export const RESULTS_STRINGS = localized(
{
  title: "Whole model",
  intro: "Every floating-point tensor of the model through the formats you pick, one tensor after the other.",
  relativeToFile: (types: string) => `Errors are relative to the file's ${types} weights as decoded, not the original f32.`,
  formats: "Formats",
  families: { gguf: "llama.cpp (GGUF)", int: "integers", bnb: "bitsandbytes", cast: "casts", calibrated: "GPTQ / AWQ" } as Record<ChoiceFamily, string>,
  picked: (n: number) => `${n} picked`,
  show_metric: "Cells show",
  metrics: { snr: "SNR dB", rmse: "RMSE", bpw: "bits/weight", outErr: "output error (calibration)" } as Record<CellMetric, string>,
  modelOutputError: "mean output error",
  synthetic: "synthetic",
  calibration: (label: string) => `Output errors on the layers' inputs: ${label}.`,
  reuse: "reuse cached results",
  run: (formats: number) => `Run on the whole model (${formats} format${formats === 1 ? "" : "s"})`,
  cancelled: "Cancelled. The tensors done so far are kept in the cache: a new run goes on from there.",
  fromCache: (rows: number, total: number) =>
    rows === total ? "Cached results of this file (kept from an earlier run)." : `Cached results of this file: ${rows} of ${total} tensors (the last run was stopped).`,
  ran: (computed: number, cached: number) => `Done: ${formatCount(computed)} cells computed, ${formatCount(cached)} from the cache.`,
  cacheProblem: (why: string) => `Results are not kept: ${why}`,
  loadingFormats: "Loading the formats…",
  noModel: "Open a model first.",
  tensor: "tensor",
  shape: "shape",
  params: "params",
  failedTitle: (message: string, stored: string) => `${message}\nThe totals count it ${stored}.`,
  storedAs: (as: string, kind: string) => (kind === "fallback" ? `as ${as} (llama.cpp's fallback)` : kind === "unmeasured" ? `at ${as}'s size (error not measured)` : `as stored (${as})`),
  cannot: "cannot",
  totals: "Model totals",
  bytesBefore: "bytes before",
  bytesAfter: "bytes after",
  saved: "saved",
  modelBpw: "bits/weight",
  modelSnr: "SNR dB (model)",
  modelRmse: "RMSE (model)",
  substitutions: (format: string, n: number, as: string) => `${format}: ${n} tensor${n === 1 ? "" : "s"} counted ${as}`,
  totalsNote:
    "Bytes after count what each format would store: a tensor a format cannot take is counted in llama.cpp's fallback format (or as stored when there is none).",
  sensitivity: "Layer sensitivity",
  sensitivityNote: "Per format, each layer's SNR over all its tensors; #1 is the layer that loses most under that format.",
  layer: "layer",
  rank: (rank: number) => `#${rank}`,
  unmeasured: (n: number) => `${n} not measured`,
  sortBy: (what: string) => `Sort by ${what}`,
},
{
  title: "整个模型",
  intro: "把模型的每个浮点张量依次用你选择的格式量化。",
  relativeToFile: (types: string) => `误差是相对于文件中解码后的 ${types} 权重计算的，而不是原始的 f32 权重。`,
  formats: "格式",
  families: { gguf: "llama.cpp（GGUF）", int: "整数", bnb: "bitsandbytes", cast: "浮点类型转换", calibrated: "GPTQ / AWQ" },
  picked: (n: number) => `已选 ${n} 种`,
  show_metric: "单元格显示",
  metrics: { snr: "信噪比 dB", rmse: "RMSE", bpw: "每权重比特数", outErr: "输出误差（校准）" },
  modelOutputError: "平均输出误差",
  synthetic: "合成",
  calibration: (label: string) => `输出误差基于各层的输入：${label}。`,
  reuse: "复用缓存的结果",
  run: (formats: number) => `在整个模型上运行（${formats} 种格式）`,
  cancelled: "已取消。已完成的张量保存在缓存中：再次运行会从那里继续。",
  fromCache: (rows: number, total: number) =>
    rows === total ? "此文件的缓存结果（来自之前的一次运行）。" : `此文件的缓存结果：${total} 个张量中的 ${rows} 个（上次运行被中止）。`,
  ran: (computed: number, cached: number) => `完成：计算了 ${formatCount(computed)} 个单元格，${formatCount(cached)} 个来自缓存。`,
  cacheProblem: (why: string) => `结果未能保存：${why}`,
  loadingFormats: "正在加载格式…",
  noModel: "请先打开一个模型。",
  tensor: "张量",
  shape: "形状",
  params: "参数量",
  failedTitle: (message: string, stored: string) => `${message}\n总计中按${stored}计算。`,
  storedAs: (as: string, kind: string) => (kind === "fallback" ? ` ${as}（llama.cpp 的回退格式）` : kind === "unmeasured" ? ` ${as} 的大小（误差未测量）` : `原存储格式（${as}）`),
  cannot: "不支持",
  totals: "模型总计",
  bytesBefore: "量化前大小",
  bytesAfter: "量化后大小",
  saved: "节省",
  modelBpw: "每权重比特数",
  modelSnr: "信噪比 dB（整个模型）",
  modelRmse: "RMSE（整个模型）",
  substitutions: (format: string, n: number, as: string) => `${format}：${n} 个张量按${as}计算`,
  totalsNote: "量化后大小按各格式实际会存储的字节计算：某格式无法处理的张量按 llama.cpp 的回退格式计算（没有回退格式时按原存储格式）。",
  sensitivity: "各层敏感度",
  sensitivityNote: "对每种格式，按每层所有张量计算信噪比；#1 是在该格式下损失最大的层。",
  layer: "层",
  rank: (rank: number) => `#${rank}`,
  unmeasured: (n: number) => `${n} 个未测量`,
  sortBy: (what: string) => `按${what}排序`,
},
);

/** Picked the first time: int8 and int4 of the plain integers and of llama.cpp. */
const DEFAULT_PICK = ["int8-channel", "int4-g128", "q8_0", "q4_0"];

interface Running {
  jobId: number;
  cancelling?: boolean;
}

/** What the table shows, derived from the rows: recomputed when they, the metric or the sort change. */
interface View {
  rows: TensorResults[];
  scale: ColourScale;
  totals: FormatTotals[];
  layers: LayerSensitivity[];
}

/** How a run ended (the results-run-end event's detail). */
export type RunEnd = "done" | "cancelled" | "error";

export class ResultsTable extends LitElement {
  static override properties = {
    client: { attribute: false },
    model: { attribute: false },
    active: { type: Boolean },
    choices: { state: true },
    picked: { state: true },
    metric: { state: true },
    reuseCached: { state: true },
    formats: { state: true },
    rows: { state: true },
    source: { state: true },
    running: { state: true },
    status: { state: true },
    error: { state: true },
    sort: { state: true },
  };
  declare client: LabClient | undefined;
  /** The model shown: { rows } of the tensor table (any object that changes when another model opens). */
  declare model: { rows: TensorRow[] } | undefined;
  /**
   * Whether the panel is shown: the cache and the formats are asked for only then (for a URL the quantization
   * worker opens the model, a header read), and at once when it is shown again after another model opened.
   */
  declare active: boolean;
  private readonly langController = new LangController(this);
  declare choices: FormatChoice[] | undefined;
  declare picked: ReadonlySet<string>;
  declare metric: CellMetric;
  declare reuseCached: boolean;
  /** The columns of the rows shown. */
  declare formats: string[];
  declare rows: TensorResults[];
  /** Where the rows came from: a run, or the cache when the model was opened. */
  declare source: "run" | "cache" | undefined;
  declare running: Running | undefined;
  declare status: string | undefined;
  declare error: string | undefined;
  declare sort: { key: SortKey; dir: "asc" | "desc" } | undefined;

  /** Rows that arrived since the last frame: the table is redrawn at most once a frame. */
  private pending: TensorResults[] = [];
  private frame: number | undefined;
  /** Bumped when the model changes, so late answers about the old one are dropped. */
  private generation = 0;
  /** The last progress, handed to the progress element directly (it redraws alone). */
  private progress: ModelProgress | undefined;
  private view: View | undefined;
  /** The model whose cached results and formats were asked for. */
  private loadedFor: object | undefined;

  constructor() {
    super();
    this.client = undefined;
    this.model = undefined;
    this.active = false;
    this.picked = new Set(DEFAULT_PICK);
    this.metric = "snr";
    this.reuseCached = true;
    this.formats = [];
    this.rows = [];
  }

  static override styles = [
    panelStyles,
    buttonStyles,
    figureTableStyles,
    css`
      :host {
        border: 1px solid var(--ql-border);
        border-radius: 8px;
        background: var(--ql-surface);
        padding: 0.6rem 0.85rem;
        /* The room the tensor table can spare. */
        flex: 2 1 18rem;
        min-height: 12rem;
        overflow: auto;
      }
      details.formats > summary {
        cursor: pointer;
        font-size: 0.82rem;
        margin: 0.4rem 0 0.2rem;
      }
      .head {
        display: flex;
        align-items: baseline;
        gap: 0.75rem;
        flex-wrap: wrap;
      }
      .head h2 {
        margin: 0;
      }
      .hint {
        color: var(--ql-muted);
        font-size: 0.82rem;
      }
      .controls {
        display: flex;
        flex-wrap: wrap;
        align-items: center;
        gap: 0.4rem 0.8rem;
        margin: 0.5rem 0;
        font-size: 0.82rem;
      }
      details.family summary {
        cursor: pointer;
        font-size: 0.8rem;
      }
      .chips {
        display: flex;
        flex-wrap: wrap;
        gap: 0.2rem 0.3rem;
        margin: 0.2rem 0 0.3rem 1rem;
      }
      .chips label {
        font-family: var(--ql-mono);
        font-size: 0.74rem;
        border: 1px solid var(--ql-border);
        border-radius: 999px;
        padding: 0 0.45rem 0 0.25rem;
        white-space: nowrap;
        cursor: pointer;
      }
      .chips label.on {
        background: var(--ql-accent-bg);
        border-color: var(--ql-accent);
      }
      .error {
        color: var(--ql-error);
        font-size: 0.85rem;
      }
      .status {
        font-size: 0.82rem;
        color: var(--ql-muted);
      }
      th button {
        all: unset;
        cursor: pointer;
      }
      th[aria-sort] button::after {
        content: " ▴";
      }
      th[aria-sort="descending"] button::after {
        content: " ▾";
      }
      td.name,
      th.name {
        text-align: left;
        font-family: var(--ql-mono);
      }
      td.b0 {
        background: #d6f0df;
      }
      td.b1 {
        background: #e9f5d0;
      }
      td.b2 {
        background: #fbf1c7;
      }
      td.b3 {
        background: #fbdcc0;
      }
      td.b4 {
        background: #f8c6c0;
      }
      td.failed {
        color: var(--ql-warn);
        font-family: inherit;
        font-size: 0.74rem;
        text-align: left;
      }
      td.failed .as {
        font-family: var(--ql-mono);
        font-weight: 700;
      }
      tfoot td,
      tfoot th {
        background: var(--ql-group-bg);
        font-weight: 600;
      }
      .synthetic {
        color: var(--ql-warn);
        font-weight: 700;
      }
      .notes {
        font-size: 0.76rem;
        color: var(--ql-muted);
        margin: 0.3rem 0 0.6rem;
      }
      .notes p {
        margin: 0.1rem 0;
      }
      h3 {
        font-size: 0.8rem;
        margin: 0.6rem 0 0.2rem;
      }
      .bar {
        display: inline-block;
        height: 0.55rem;
        background: var(--ql-error);
        opacity: 0.55;
        vertical-align: middle;
        margin-left: 0.3rem;
      }
      .rank {
        color: var(--ql-muted);
        margin-left: 0.25rem;
      }
      td.worst .rank {
        color: var(--ql-error);
        font-weight: 700;
      }
    `,
  ];

  override willUpdate(changed: Map<string, unknown>): void {
    if (["rows", "formats", "metric", "sort", "model"].some((k) => changed.has(k))) this.view = undefined;
    if (changed.has("model")) {
      // Another model: a run on the old one is moot, and its rows would sit next to the new model's tensors.
      void this.cancel();
      this.generation++;
      this.running = undefined;
      this.rows = [];
      this.formats = [];
      this.pending = [];
      this.source = undefined;
      this.status = undefined;
      this.error = undefined;
      this.choices = undefined;
      this.loadedFor = undefined;
    }
    if (this.active && this.model && this.loadedFor !== this.model) {
      this.loadedFor = this.model;
      void this.loadCached();
      void this.loadChoices();
    }
  }

  override disconnectedCallback(): void {
    if (this.frame !== undefined) cancelAnimationFrame(this.frame);
    super.disconnectedCallback();
  }

  /** The model's cached results, shown at once when there are any. */
  private async loadCached(): Promise<void> {
    const generation = this.generation;
    if (!this.client || !this.model) return;
    try {
      const cached = await this.client.cachedModelResults();
      if (generation !== this.generation || !cached || this.running) return;
      this.formats = cached.formats;
      this.rows = cached.rows;
      this.picked = new Set(cached.formats);
      this.source = "cache";
      this.status = `${RESULTS_STRINGS().fromCache(cached.rows.length, cached.tensors)} ${RESULTS_STRINGS().calibration(cached.calibration.label)}`;
    } catch (e) {
      // No cached results to show; a run still works.
      console.warn("Could not read the cached results:", e);
    }
  }

  /** The formats, asked about the model's largest tensor (only ids, families and descriptions are used). */
  private async loadChoices(): Promise<void> {
    const generation = this.generation;
    const largest = this.model?.rows.reduce<TensorRow | undefined>((a, b) => (!a || b.params > a.params ? b : a), undefined);
    if (!this.client || !largest) return;
    try {
      const choices = await this.client.quantFormats(largest);
      if (generation === this.generation) this.choices = choices;
    } catch (e) {
      if (generation === this.generation) this.error = errorText(e);
    }
  }

  /** Runs the picked formats over the whole model; a run already going is cancelled first. */
  async run(): Promise<void> {
    if (!this.client || this.picked.size === 0) return;
    if (this.running) await this.cancel();
    const formats = (this.choices?.map((c) => c.id) ?? [...this.picked]).filter((id) => this.picked.has(id));
    const generation = this.generation;
    this.formats = formats;
    this.rows = [];
    this.pending = [];
    this.source = "run";
    this.status = undefined;
    this.error = undefined;
    this.progress = undefined;
    const job = this.client.quantizeModel(formats, (event) => this.onEvent(event), { reuseCached: this.reuseCached });
    this.running = { jobId: job.jobId };
    let end: RunEnd | undefined;
    try {
      const report = await job.report;
      if (this.running?.jobId !== job.jobId || generation !== this.generation) return;
      this.flush();
      this.status = this.describeReport(report);
      end = "done";
    } catch (e) {
      if (this.running?.jobId !== job.jobId || generation !== this.generation) return;
      this.flush();
      if (e instanceof CancelledError) this.status = RESULTS_STRINGS().cancelled;
      else this.error = errorText(e);
      end = e instanceof CancelledError ? "cancelled" : "error";
    } finally {
      if (this.running?.jobId === job.jobId) this.running = undefined;
    }
    await this.updateComplete;
    // For whoever waits on the run (the e2e test waits without polling the page).
    this.dispatchEvent(new CustomEvent<RunEnd>("results-run-end", { detail: end, bubbles: true, composed: true }));
  }

  async cancel(): Promise<void> {
    const running = this.running;
    if (!running || !this.client) return;
    this.running = { ...running, cancelling: true };
    await this.client.cancelQuantize(running.jobId);
  }

  private onEvent(event: ModelRunEvent): void {
    if (this.running?.jobId !== event.jobId) return;
    if (event.kind === "progress") {
      this.progress = event.progress;
      const bar = this.renderRoot.querySelector<RunProgress>("ql-run-progress");
      if (bar) bar.progress = event.progress;
      return;
    }
    this.pending.push(event.row);
    this.frame ??= requestAnimationFrame(() => this.flush());
  }

  /** Moves the rows that arrived into the table (one redraw for all of them). */
  private flush(): void {
    if (this.frame !== undefined) cancelAnimationFrame(this.frame);
    this.frame = undefined;
    if (this.pending.length === 0) return;
    this.rows = [...this.rows, ...this.pending];
    this.pending = [];
  }

  private describeReport(report: ModelRunReport): string {
    const done = `${RESULTS_STRINGS().ran(report.computedCells, report.cachedCells)} ${RESULTS_STRINGS().calibration(report.calibration.label)}`;
    return report.cacheProblem ? `${done} ${RESULTS_STRINGS().cacheProblem(report.cacheProblem)}` : done;
  }

  /** Adds a calibrated setting from the settings form to the choices (asked of the worker about the largest tensor), picked. */
  private async addCalibrated(id: string): Promise<void> {
    const generation = this.generation;
    const largest = this.model?.rows.reduce<TensorRow | undefined>((a, b) => (!a || b.params > a.params ? b : a), undefined);
    if (!this.client || !largest) return;
    if (!this.choices?.some((c) => c.id === id)) {
      try {
        const choice = await this.client.calibratedChoice(id, largest);
        if (generation !== this.generation || !this.choices) return;
        this.choices = [...this.choices, choice];
      } catch (e) {
        if (generation === this.generation) this.error = errorText(e);
        return;
      }
    }
    this.toggle(id, true);
  }

  private toggle(id: string, on: boolean): void {
    const next = new Set(this.picked);
    if (on) next.add(id);
    else next.delete(id);
    this.picked = next;
  }

  private sortBy(key: SortKey): void {
    const same = this.sort && JSON.stringify(this.sort.key) === JSON.stringify(key);
    this.sort = { key, dir: same && this.sort!.dir === "asc" ? "desc" : "asc" };
  }

  override render() {
    return html`<div class="head">
        <h2>${RESULTS_STRINGS().title}</h2>
        <span class="hint">${RESULTS_STRINGS().intro}</span>
      </div>
      ${this.renderBody()}`;
  }

  private renderBody() {
    if (!this.model) return html`<p class="hint">${RESULTS_STRINGS().noModel}</p>`;
    const storedAs = quantizedSourceTypes(this.model.rows);
    return html`${storedAs.length > 0 ? html`<p class="hint" data-testid="relative-to-file">${RESULTS_STRINGS().relativeToFile(storedAs.join(", "))}</p>` : nothing}
      ${this.renderPicker()} ${this.renderControls()}
      ${this.error ? html`<p class="error" role="alert" data-testid="results-error">${this.error}</p>` : nothing}
      ${this.status ? html`<p class="status" data-testid="results-status" data-source=${this.source ?? ""}>${this.status}</p>` : nothing}
      ${this.formats.length > 0 && this.rows.length > 0 ? this.renderResults() : nothing}`;
  }

  private renderPicker() {
    const choices = this.choices;
    if (!choices) return html`<p class="hint"><ql-spinner></ql-spinner> ${RESULTS_STRINGS().loadingFormats}</p>`;
    const families = [...new Set(choices.map((c) => c.family))];
    // Folded once there are results, so the table has the room.
    return html`<details class="formats" data-testid="results-formats" ?open=${this.rows.length === 0}>
      <summary>${RESULTS_STRINGS().formats}: ${choices.filter((c) => this.picked.has(c.id)).map((c) => c.id).join(", ") || "—"}</summary>
      ${families.map((family) => {
        const members = choices.filter((c) => c.family === family);
        const picked = members.filter((c) => this.picked.has(c.id)).length;
        return html`<details class="family" data-family=${family} ?open=${picked > 0}>
          <summary>${RESULTS_STRINGS().families[family]} <span class="hint">${RESULTS_STRINGS().picked(picked)}</span></summary>
          <div class="chips">
            ${members.map(
              (c) => html`<label class=${this.picked.has(c.id) ? "on" : ""} title=${formatTooltip(c.id, c.description)} data-format=${c.id}
                ><input
                  type="checkbox"
                  .checked=${this.picked.has(c.id)}
                  @change=${(e: Event) => this.toggle(c.id, (e.target as HTMLInputElement).checked)}
                />${c.id}</label
              >`,
            )}
          </div>
          ${family === "calibrated"
            ? html`<ql-calibrated-settings @calibrated-add=${(e: CustomEvent<string>) => void this.addCalibrated(e.detail)}></ql-calibrated-settings>`
            : nothing}
        </details>`;
      })}
    </details>`;
  }

  private renderControls() {
    const running = this.running;
    return html`<div class="controls">
      <button
        class="primary"
        data-testid="results-run"
        ?disabled=${this.picked.size === 0 || running !== undefined || !this.choices}
        @click=${() => this.run()}
      >
        ${RESULTS_STRINGS().run(this.picked.size)}
      </button>
      <label><input type="checkbox" .checked=${this.reuseCached} @change=${(e: Event) => (this.reuseCached = (e.target as HTMLInputElement).checked)} />
        ${RESULTS_STRINGS().reuse}</label
      >
      <label
        >${RESULTS_STRINGS().show_metric}
        <select data-testid="results-metric" @change=${(e: Event) => (this.metric = (e.target as HTMLSelectElement).value as CellMetric)}>
          ${CELL_METRICS.map((m) => html`<option value=${m} ?selected=${m === this.metric}>${RESULTS_STRINGS().metrics[m]}</option>`)}
        </select></label
      >
      ${running
        ? html`<ql-run-progress
            data-testid="results-progress"
            role="status"
            .progress=${this.progress}
            ?cancelling=${running.cancelling === true}
            @cancel=${() => this.cancel()}
          ></ql-run-progress>`
        : nothing}
    </div>`;
  }

  private renderResults() {
    const formats = this.formats;
    this.view ??= {
      rows: this.sort ? sortResults(this.rows, formats, this.sort.key, this.sort.dir) : this.rows,
      scale: colourScale(this.rows, this.metric),
      totals: modelTotals(this.rows, formats),
      layers: layerSensitivity(this.rows, formats),
    };
    const { rows, scale, totals, layers } = this.view;
    return html`<table data-testid="results-table" data-metric=${this.metric} data-rows=${this.rows.length}>
        <thead>
          <tr>
            ${this.sortHeader(RESULTS_STRINGS().tensor, { by: "tensor" }, "name")}
            <th>${RESULTS_STRINGS().shape}</th>
            ${this.sortHeader(RESULTS_STRINGS().params, { by: "params" })}
            ${formats.map((f) => this.sortHeader(f, { by: "format", format: f, metric: this.metric }))}
          </tr>
        </thead>
        <tbody>
          ${rows.map((row) => this.renderRow(row, scale))}
        </tbody>
        <tfoot>
          ${this.renderTotals(totals)}
        </tfoot>
      </table>
      <div class="notes">
        <p>${RESULTS_STRINGS().totalsNote}</p>
        ${totals.flatMap((t) => this.substitutionNotes(t))}
      </div>
      ${this.renderSensitivity(layers)}`;
  }

  private sortHeader(label: string, key: SortKey, cls = "") {
    const active = this.sort && JSON.stringify(this.sort.key) === JSON.stringify(key);
    return html`<th
      class=${cls}
      aria-sort=${active ? (this.sort!.dir === "asc" ? "ascending" : "descending") : nothing}
      data-testid="results-sort"
      data-key=${key.by === "format" ? key.format : key.by}
    >
      <button title=${RESULTS_STRINGS().sortBy(label)} @click=${() => this.sortBy(key)}>${label}</button>
    </th>`;
  }

  private renderRow(row: TensorResults, scale: ColourScale) {
    return html`<tr data-testid="results-row" data-tensor=${row.tensor} data-bytes=${row.bytes}>
      <td class="name">${row.tensor}</td>
      <td>${formatShape([row.shape.rows, row.shape.cols])}</td>
      <td>${formatCount(row.params)}</td>
      ${row.cells.map((cell) => this.renderCell(cell, scale))}
    </tr>`;
  }

  private renderCell(cell: ModelCell, scale: ColourScale) {
    const stored = RESULTS_STRINGS().storedAs(cell.stored.as, cell.stored.kind);
    if (!cell.ok) {
      return html`<td
        class="failed"
        data-testid="results-cell"
        data-format=${cell.format}
        data-problem=${cell.error.problem}
        data-stored-bytes=${cell.stored.bytes}
        data-stored-as=${cell.stored.as}
        title=${RESULTS_STRINGS().failedTitle(cell.error.message, stored)}
      >
        ${RESULTS_STRINGS().cannot} → <span class="as">${cell.stored.as}</span>
      </td>`;
    }
    const value = cellValue(cell, this.metric);
    const bucket = colourBucket(value, scale);
    const m = cell.metrics;
    const out = cell.outputError;
    const outText = out
      ? ` · ${RESULTS_STRINGS().metrics.outErr} ${formatMeasure(out.calibration)}${out.heldOut !== undefined ? ` / ${formatMeasure(out.heldOut)}` : ""} (${out.source})`
      : "";
    const title = `${RESULTS_STRINGS().metrics.snr} ${formatMeasure(m.snrDb)} · ${RESULTS_STRINGS().metrics.rmse} ${formatMeasure(m.rmse)} · ${RESULTS_STRINGS().metrics.bpw} ${formatMeasure(cell.bitsPerWeight)}${outText} · ${formatBytes(cell.stored.bytes)} · ${cell.ranOn.toUpperCase()}${cell.why ? ` (${cell.why})` : ""}`;
    const synthetic = this.metric === "outErr" && out?.source === "synthetic";
    return html`<td
      class=${bucket === undefined ? "" : `b${bucket}`}
      data-testid="results-cell"
      data-format=${cell.format}
      data-value=${value ?? ""}
      data-stored-bytes=${cell.stored.bytes}
      data-bucket=${bucket ?? ""}
      data-source=${out?.source ?? ""}
      title=${title}
    >
      ${formatMeasure(value ?? NaN)}${synthetic ? html`<span class="synthetic" title=${RESULTS_STRINGS().synthetic}>*</span>` : nothing}
    </td>`;
  }

  private renderTotals(totals: FormatTotals[]) {
    const before = totals[0]?.bytesBefore ?? 0;
    const line = (label: string, testid: string, cell: (t: FormatTotals) => unknown, value: (t: FormatTotals) => number, first: unknown = "") =>
      html`<tr data-testid=${testid}>
        <th class="name">${label}</th>
        <td></td>
        <td>${first}</td>
        ${totals.map((t) => html`<td data-format=${t.format} data-value=${value(t)}>${cell(t)}</td>`)}
      </tr>`;
    return html`${line(
        RESULTS_STRINGS().bytesBefore,
        "total-bytes-before",
        (t) => html`<span title=${formatCount(t.bytesBefore)}>${formatBytes(t.bytesBefore)}</span>`,
        (t) => t.bytesBefore,
        html`<span data-testid="total-before" data-value=${before} title=${formatCount(before)}>${formatBytes(before)}</span>`,
      )}
      ${line(RESULTS_STRINGS().bytesAfter, "total-bytes-after", (t) => html`<span title=${formatCount(t.bytesAfter)}>${formatBytes(t.bytesAfter)}</span>`, (t) => t.bytesAfter)}
      ${line(RESULTS_STRINGS().saved, "total-saved", (t) => formatShare(t.shareSaved), (t) => t.shareSaved)}
      ${line(RESULTS_STRINGS().modelBpw, "total-bpw", (t) => formatMeasure(t.bitsPerWeight), (t) => t.bitsPerWeight)}
      ${line(RESULTS_STRINGS().modelSnr, "total-snr", (t) => formatMeasure(t.snrDb), (t) => t.snrDb)}
      ${line(RESULTS_STRINGS().modelRmse, "total-rmse", (t) => formatMeasure(t.rmse), (t) => t.rmse)}
      ${totals.some((t) => t.outputErrorSource !== undefined)
        ? line(
            RESULTS_STRINGS().modelOutputError,
            "total-output-error",
            (t) => html`${formatMeasure(t.meanOutputError)}${t.outputErrorSource === "synthetic" ? html`<span class="synthetic">*</span>` : nothing}`,
            (t) => t.meanOutputError,
          )
        : nothing}`;
  }

  private substitutionNotes(t: FormatTotals) {
    return substitutionGroups(t).map(
      (g) => html`<p data-testid="total-substitution" data-format=${t.format} data-as=${g.stored.as} data-tensors=${g.tensors}>
        ${RESULTS_STRINGS().substitutions(t.format, g.tensors, RESULTS_STRINGS().storedAs(g.stored.as, g.stored.kind))}
      </p>`,
    );
  }

  private renderSensitivity(layers: LayerSensitivity[]) {
    const formats = this.formats;
    return html`<h3>${RESULTS_STRINGS().sensitivity}</h3>
      <p class="notes">${RESULTS_STRINGS().sensitivityNote}</p>
      <table data-testid="sensitivity-table">
        <thead>
          <tr>
            <th class="name">${RESULTS_STRINGS().layer}</th>
            ${formats.map((f) => html`<th>${f}</th>`)}
          </tr>
        </thead>
        <tbody>
          ${layers.map(
            (layer) => html`<tr data-testid="sensitivity-row" data-group=${layer.group}>
              <td class="name">${layer.group}</td>
              ${layer.losses.map(
                (loss, i) => html`<td
                  class=${loss.rank === 1 ? "worst" : ""}
                  data-format=${formats[i]}
                  data-rank=${loss.rank ?? ""}
                  data-value=${loss.snrDb}
                  title=${loss.unmeasured > 0 ? RESULTS_STRINGS().unmeasured(loss.unmeasured) : ""}
                >
                  ${loss.rank === undefined
                    ? RESULTS_STRINGS().unmeasured(loss.unmeasured)
                    : html`${formatMeasure(loss.snrDb)}<span class="rank">${RESULTS_STRINGS().rank(loss.rank)}</span
                        ><span class="bar" style="width: ${(loss.barShare * 3).toFixed(2)}rem"></span>`}
                </td>`,
              )}
            </tr>`,
          )}
        </tbody>
      </table>`;
  }
}


customElements.define("ql-results-table", ResultsTable);

declare global {
  interface HTMLElementTagNameMap {
    "ql-results-table": ResultsTable;
  }
}
