/**
 * The Quantize panel: for the selected tensor, pick formats (grouped by family, each with its bits per
 * weight on this tensor), run them in the quantization worker with a progress bar and Cancel, and read
 * what each costs and breaks. Every number comes from the worker; this component only lays them out.
 */
import { LitElement, css, html, nothing } from "lit";
import type { TensorRow } from "../formats/catalog.ts";
import { quantizedSourceTypes } from "../formats/tensor-data.ts";
import type { FormatFamily } from "../quant/format.ts";
import { formatBytes, formatCount, formatMeasure, formatShape, formatShare } from "../common/format.ts";
import type { ChoiceFamily, FormatChoice, FormatResult, OutputError, QuantizeProgressEvent, QuantizeReport } from "../../workers/quant-worker-api.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import { buttonStyles, figureTableStyles, panelStyles } from "./styles.ts";
import { familyTopic, formatTooltip } from "./explain.ts";
import { LangController, localized } from "./i18n.ts";
import "./explain-button.ts";
import "./spinner.ts";
import "./calibrated-settings.ts";

/** The columns of the results table, with the explanation each header links to. */
const COLUMNS = [
  { key: "format", topic: undefined },
  { key: "bpw", topic: "metric:bpw" },
  { key: "bytes", topic: "metric:bytes" },
  { key: "saved", topic: "metric:saved" },
  { key: "mse", topic: "metric:mse" },
  { key: "rmse", topic: "metric:rmse" },
  { key: "maxErr", topic: "metric:max-err" },
  { key: "snr", topic: "metric:snr" },
  { key: "cosine", topic: "metric:cosine" },
  { key: "outputError", topic: "metric:output-error" },
  { key: "ranOn", topic: undefined },
] as const;

type ColumnKey = (typeof COLUMNS)[number]["key"];

const TEXT = localized(
  {
    families: {
      gguf: "llama.cpp (GGUF) blocks",
      int: "integers (round to nearest)",
      bnb: "bitsandbytes",
      cast: "casts",
      calibrated: "GPTQ / AWQ (calibrated on the layer's inputs)",
    } as Record<ChoiceFamily, string>,
    title: "Quantize",
    pickTensor: "Select a tensor to quantize it in the formats you pick.",
    loading: "Loading the formats…",
    formatCount: (n: number) => `${n} formats`,
    picked: (ids: string) => ` · picked: ${ids}`,
    run: (n: number) => `Quantize ${n} format${n === 1 ? "" : "s"}`,
    all: "pick all",
    none: "none",
    startingOn: (tensor: string) => `starting on ${tensor}…`,
    cancel: "Cancel",
    cancelled: "Cancelled.",
    thisTensor: (reason: string) => `This tensor: ${reason}`,
    relativeToFile: (type: string) => `Errors are relative to the file's ${type} weights, not the original f32.`,
    noGpu: "no GPU: ",
    columns: {
      format: "format",
      bpw: "bits/weight",
      bytes: "bytes after",
      saved: "saved",
      mse: "MSE",
      rmse: "RMSE",
      maxErr: "max |err|",
      snr: "SNR dB",
      cosine: "cosine",
      outputError: "output error calib / held-out",
      ranOn: "ran on",
    } as Record<ColumnKey, string>,
    calibration: (label: string) => `Output errors on the layer's inputs: ${label}.`,
    sources: { model: "model run", synthetic: "synthetic", file: "file" },
    badSetting: (id: string, why: string) => `${id}: ${why}`,
    useInstead: [" — use ", " instead"] as [string, string],
    nonFinite: (n: string) => `${n} decode to ±Inf: left out of the figures`,
    at: (row: number, col: number) => `at row ${row}, column ${col}`,
    firstAt: (row: number, col: number) => `the first at row ${row}, column ${col}`,
    bytesFrom: (after: string, before: string) => `${after} bytes (from ${before})`,
  },
  {
    families: {
      gguf: "llama.cpp（GGUF）分块格式",
      int: "整数（就近舍入）",
      bnb: "bitsandbytes",
      cast: "浮点类型转换",
      calibrated: "GPTQ / AWQ（基于该层输入校准）",
    },
    title: "量化",
    pickTensor: "选择一个张量，用你勾选的格式对它进行量化。",
    loading: "正在加载格式…",
    formatCount: (n: number) => `${n} 种格式`,
    picked: (ids: string) => ` · 已选：${ids}`,
    run: (n: number) => `量化 ${n} 种格式`,
    all: "全选",
    none: "全不选",
    startingOn: (tensor: string) => `正在开始量化 ${tensor}…`,
    cancel: "取消",
    cancelled: "已取消。",
    thisTensor: (reason: string) => `此张量：${reason}`,
    relativeToFile: (type: string) => `误差是相对于文件中的 ${type} 权重计算的，而不是原始的 f32 权重。`,
    noGpu: "无 GPU：",
    columns: {
      format: "格式",
      bpw: "每权重比特数",
      bytes: "量化后大小",
      saved: "节省",
      mse: "MSE",
      rmse: "RMSE",
      maxErr: "最大 |误差|",
      snr: "信噪比 dB",
      cosine: "余弦相似度",
      outputError: "输出误差 校准 / 留出",
      ranOn: "运行于",
    },
    calibration: (label: string) => `输出误差基于该层的输入：${label}。`,
    sources: { model: "模型运行", synthetic: "合成", file: "文件" },
    badSetting: (id: string, why: string) => `${id}：${why}`,
    useInstead: ["——请改用 ", ""],
    nonFinite: (n: string) => `${n} 个值解码为 ±Inf：未计入统计`,
    at: (row: number, col: number) => `位于第 ${row} 行、第 ${col} 列`,
    firstAt: (row: number, col: number) => `第一个位于第 ${row} 行、第 ${col} 列`,
    bytesFrom: (after: string, before: string) => `${after} 字节（原为 ${before}）`,
  },
);

/** Families with many members start folded (the plain integers: 4 widths x 2 zero points x 5 scale groupings). */
const COLLAPSED_FAMILIES: ReadonlySet<ChoiceFamily> = new Set(["int"]);

/** Picked when the panel first shows: one format of each kind people usually compare. */
const DEFAULT_PICK = ["q8_0", "q4_K", "int8-channel", "int4-g128", "nf4"];

interface Running {
  jobId: number;
  tensor: string;
  progress?: QuantizeProgressEvent;
  cancelling?: boolean;
}

export class QuantizePanel extends LitElement {
  static override properties = {
    client: { attribute: false },
    model: { attribute: false },
    tensor: { attribute: false },
    choices: { state: true },
    picked: { state: true },
    running: { state: true },
    report: { state: true },
    error: { state: true },
  };
  declare client: LabClient | undefined;
  /** The model shown (any object that changes when another model opens): its results go when it does. */
  declare model: object | undefined;
  /** The selected tensor, or undefined. */
  declare tensor: TensorRow | undefined;
  /** The formats with their bits per weight on the selected tensor (from the worker). */
  declare choices: FormatChoice[] | undefined;
  declare picked: ReadonlySet<string>;
  declare running: Running | undefined;
  declare report: QuantizeReport | undefined;
  declare error: string | undefined;

  /** The tensor `choices` were asked for (rows are new objects for every model), so a late answer is dropped. */
  private choicesFor: TensorRow | undefined;
  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.client = undefined;
    this.model = undefined;
    this.tensor = undefined;
    this.picked = new Set(DEFAULT_PICK);
  }

  static override styles = [
    panelStyles,
    buttonStyles,
    figureTableStyles,
    css`
      .head {
        display: flex;
        align-items: baseline;
        gap: 0.75rem;
        flex-wrap: wrap;
        margin-bottom: 0.4rem;
      }
      .head h2 {
        margin: 0;
      }
      .tensor {
        font-family: var(--ql-mono);
        font-size: 0.8rem;
        font-weight: 600;
      }
      .hint {
        color: var(--ql-muted);
        font-size: 0.85rem;
      }
      .families {
        display: flex;
        flex-direction: column;
        gap: 0.35rem;
        margin-bottom: 0.5rem;
      }
      summary {
        cursor: pointer;
        font-size: 0.8rem;
      }
      summary .family {
        font-weight: 600;
        margin-right: 0.5rem;
      }
      summary .hint {
        font-size: 0.76rem;
      }
      fieldset {
        border: none;
        margin: 0.25rem 0 0.2rem 1rem;
        padding: 0;
        display: flex;
        flex-wrap: wrap;
        align-items: center;
        gap: 0.25rem 0.35rem;
      }
      label.format {
        display: inline-flex;
        align-items: center;
        gap: 0.25rem;
        font-family: var(--ql-mono);
        font-size: 0.76rem;
        border: 1px solid var(--ql-border);
        border-radius: 999px;
        padding: 0.05rem 0.5rem 0.05rem 0.3rem;
        cursor: pointer;
        white-space: nowrap;
      }
      label.format.on {
        background: var(--ql-accent-bg);
        border-color: var(--ql-accent);
      }
      label.format.misfit {
        border-style: dashed;
      }
      label.format input {
        margin: 0;
      }
      .bpw {
        color: var(--ql-muted);
      }
      .actions {
        display: flex;
        align-items: center;
        gap: 0.6rem;
        flex-wrap: wrap;
        margin-bottom: 0.5rem;
      }
      button.link {
        border: none;
        background: none;
        color: var(--ql-accent);
        padding: 0;
      }
      progress {
        width: 14rem;
      }
      .progress {
        display: inline-flex;
        align-items: center;
        gap: 0.5rem;
        font-size: 0.82rem;
      }
      .error {
        color: var(--ql-error);
        font-size: 0.85rem;
      }
      .table {
        overflow: auto;
      }
      table {
        width: 100%;
      }
      th:first-child,
      td:first-child,
      td.where,
      th.where {
        text-align: left;
      }
      td.where {
        font-family: inherit;
        white-space: normal;
        min-width: 12rem;
      }
      .gpu {
        color: var(--ql-ok);
        font-weight: 700;
      }
      .cpu {
        color: var(--ql-warn);
        font-weight: 700;
      }
      .why {
        color: var(--ql-muted);
        font-size: 0.76rem;
      }
      tr.failed td.message {
        color: var(--ql-error);
        text-align: left;
        white-space: normal;
        font-family: inherit;
      }
      .warn {
        color: var(--ql-warn);
        font-family: inherit;
        font-size: 0.74rem;
        white-space: normal;
      }
      .fallback {
        font-family: var(--ql-mono);
        font-weight: 700;
      }
      .source {
        font-size: 0.72rem;
        font-weight: 700;
        font-family: inherit;
      }
      .source.synthetic {
        color: var(--ql-warn);
      }
      .source.model {
        color: var(--ql-ok);
      }
      ql-calibrated-settings {
        margin: 0.3rem 0 0.2rem 1rem;
      }
    `,
  ];

  override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has("model") && changed.get("model") !== undefined) {
      // Another model: a run on the old one is moot, and its results would sit next to the new model's tensors.
      void this.cancel();
      this.running = undefined;
      this.report = undefined;
      this.error = undefined;
    }
    if (changed.has("tensor") || changed.has("client")) void this.loadChoices();
  }

  /** Asks the worker for the formats and their bits per weight on the selected tensor. */
  private async loadChoices(): Promise<void> {
    const t = this.tensor;
    if (!t || !this.client || this.choicesFor === t) return;
    this.choicesFor = t;
    this.choices = undefined;
    try {
      const choices = await this.client.quantFormats(t);
      if (this.choicesFor === t) this.choices = choices;
    } catch (e) {
      if (this.choicesFor === t) this.error = errorText(e);
    }
  }

  /** Runs the picked formats on the selected tensor; a run already going is cancelled first. */
  async run(): Promise<void> {
    const t = this.tensor;
    if (!t || !this.client || this.picked.size === 0) return;
    if (this.running) await this.cancel();
    // In registry order, whatever order they were clicked in.
    const formats = (this.choices ?? []).map((c) => c.id).filter((id) => this.picked.has(id));
    const job = this.client.quantize(t.name, formats, (progress) => {
      if (this.running?.jobId === progress.jobId) this.running = { ...this.running, progress };
    });
    this.running = { jobId: job.jobId, tensor: t.name };
    this.error = undefined;
    try {
      const report = await job.report;
      if (this.running?.jobId !== job.jobId) return;
      this.report = report;
      await this.updateComplete;
      this.renderRoot.querySelector("[data-testid=quantize-report]")?.scrollIntoView({ block: "nearest" });
    } catch (e) {
      if (this.running?.jobId !== job.jobId) return;
      this.error = e instanceof CancelledError ? TEXT().cancelled : errorText(e);
    } finally {
      if (this.running?.jobId === job.jobId) this.running = undefined;
    }
  }

  async cancel(): Promise<void> {
    const running = this.running;
    if (!running || !this.client) return;
    this.running = { ...running, cancelling: true };
    await this.client.cancelQuantize(running.jobId);
  }

  /** Adds a calibrated setting from the settings form to the choices (asked of the worker), picked. */
  private async addCalibrated(id: string): Promise<void> {
    const t = this.tensor;
    if (!t || !this.client) return;
    if (!this.choices?.some((c) => c.id === id)) {
      try {
        const choice = await this.client.calibratedChoice(id, t);
        if (this.tensor !== t || !this.choices) return;
        this.choices = [...this.choices, choice];
      } catch (e) {
        this.error = TEXT().badSetting(id, errorText(e));
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

  override render() {
    const t = this.tensor;
    const text = TEXT();
    return html`<div class="head">
        <h2>${text.title}</h2>
        ${t
          ? html`<span class="tensor" data-testid="quantize-tensor">${t.name}</span>
              <span class="hint">${formatShape(t.shape)} · ${t.dtype}</span>`
          : nothing}
      </div>
      ${t && quantizedSourceTypes([t]).length > 0
        ? html`<p class="hint" data-testid="relative-to-file">${text.relativeToFile(t.dtype)}</p>`
        : nothing}
      ${t ? this.renderPicker() : html`<p class="hint">${text.pickTensor}</p>`}
      ${this.error ? html`<p class="error" role="alert" data-testid="quantize-error">${this.error}</p>` : nothing}
      ${this.report ? this.renderReport(this.report) : nothing}`;
  }

  private renderPicker() {
    const choices = this.choices;
    const t = TEXT();
    if (!choices) return html`<p class="hint"><ql-spinner></ql-spinner> ${t.loading}</p>`;
    const families = [...new Set(choices.map((c) => c.family))];
    const running = this.running;
    const progress = running?.progress;
    return html`<div class="families" data-testid="format-picker">
        ${families.map((family) => {
          const members = choices.filter((c) => c.family === family);
          const picked = members.filter((c) => this.picked.has(c.id)).map((c) => c.id);
          return html`<details data-family=${family} ?open=${!COLLAPSED_FAMILIES.has(family)}>
            <summary data-testid="family-toggle">
              <span class="family">${t.families[family]}</span>
              <ql-explain topic=${familyTopic(family)}></ql-explain>
              <span class="hint">${t.formatCount(members.length)}${picked.length > 0 ? t.picked(picked.join(", ")) : ""}</span>
            </summary>
            <fieldset>${members.map((c) => this.renderChoice(c))}</fieldset>
            ${family === "calibrated"
              ? html`<ql-calibrated-settings
                  data-testid="calibrated-settings"
                  @calibrated-add=${(e: CustomEvent<string>) => void this.addCalibrated(e.detail)}
                ></ql-calibrated-settings>`
              : nothing}
          </details>`;
        })}
      </div>
      <div class="actions">
        <button
          class="primary"
          data-testid="quantize-run"
          ?disabled=${this.picked.size === 0 || running !== undefined}
          @click=${() => this.run()}
        >
          ${t.run(this.picked.size)}
        </button>
        <button class="link" data-testid="formats-all" @click=${() => (this.picked = new Set(choices.map((c) => c.id)))}>
          ${t.all}
        </button>
        <button class="link" data-testid="formats-none" @click=${() => (this.picked = new Set())}>${t.none}</button>
        ${running
          ? html`<span class="progress" data-testid="quantize-progress" role="status">
              <progress max=${progress?.totalBytes ?? 1} value=${progress?.doneBytes ?? 0}></progress>
              ${progress
                ? html`${progress.format} · ${formatShare(progress.doneBytes / progress.totalBytes)}`
                : t.startingOn(running.tensor)}
              <button data-testid="quantize-cancel" ?disabled=${running.cancelling === true} @click=${() => this.cancel()}>
                ${t.cancel}
              </button>
            </span>`
          : nothing}
      </div>`;
  }

  private renderChoice(c: FormatChoice) {
    const on = this.picked.has(c.id);
    const misfit = c.rowLengthProblem;
    const t = TEXT();
    const description = formatTooltip(c.id, c.description);
    const title = misfit ? `${description}\n\n${t.thisTensor(misfit.reason)}` : description;
    return html`<label class="format ${on ? "on" : ""} ${misfit ? "misfit" : ""}" title=${title} data-format=${c.id}>
      <input
        type="checkbox"
        data-testid="format-choice"
        .checked=${on}
        @change=${(e: Event) => this.toggle(c.id, (e.target as HTMLInputElement).checked)}
      />${c.id} <span class="bpw" data-testid="choice-bpw">${formatMeasure(c.bitsPerWeight)}</span>
      <ql-explain topic=${c.id}></ql-explain>
    </label>`;
  }

  private renderReport(report: QuantizeReport) {
    const device = report.device;
    const t = TEXT();
    return html`<div data-testid="quantize-report" data-tensor=${report.tensor}>
      <p class="hint">
        ${report.tensor} (${formatShape([report.shape.rows, report.shape.cols])}, ${report.dtype}) ·
        <span data-testid="quantize-device"
          >${device.kind === "gpu"
            ? html`WebGPU: <span translate="no">${device.info.vendor} ${device.info.architecture}</span>`
            : html`${t.noGpu}<span translate="no">${device.reason}</span>`}</span
        >
      </p>
      ${report.calibration
        ? html`<p class="hint" data-testid="quantize-calibration" data-source=${report.calibration.source}>
            <span class="source ${report.calibration.source}">${t.sources[report.calibration.source]}</span>
            ${t.calibration(report.calibration.label)}
            ${report.calibration.warnings.map((w) => html`<span class="warn" role="alert" data-testid="calibration-warning">${w}</span>`)}
          </p>`
        : nothing}
      <div class="table">
        <table data-testid="quantize-results">
          <thead>
            <tr>
              ${COLUMNS.map(
                (c) => html`<th class=${c.key === "ranOn" ? "where" : ""}>
                  ${t.columns[c.key]}${c.topic ? html` <ql-explain topic=${c.topic}></ql-explain>` : nothing}
                </th>`,
              )}
            </tr>
          </thead>
          <tbody>
            ${report.results.map((r) => this.renderResult(r))}
          </tbody>
        </table>
      </div>
    </div>`;
  }

  private renderOutputError(e: OutputError | undefined) {
    if (!e) return html`<td data-testid="result-output-error">—</td>`;
    const t = TEXT();
    return html`<td
      data-testid="result-output-error"
      data-value=${e.calibration}
      data-held-out=${e.heldOut ?? ""}
      data-source=${e.source}
      class="output"
    >
      ${formatMeasure(e.calibration)}${e.heldOut !== undefined ? html` / <span data-testid="result-held-out">${formatMeasure(e.heldOut)}</span>` : nothing}
      ${e.source === "synthetic" ? html`<div class="source synthetic" data-testid="result-synthetic">${t.sources.synthetic}</div>` : nothing}
    </td>`;
  }

  private renderResult(r: FormatResult) {
    const t = TEXT();
    if (!r.ok) {
      const { error } = r;
      return html`<tr class="failed" data-testid="quantize-result" data-format=${r.format} data-problem=${error.problem}>
        <td>${r.format}</td>
        <td class="message" colspan="10" data-testid="result-error">
          <span translate="no">${error.message}</span>${error.fallback
            ? html`${t.useInstead[0]}<span class="fallback" data-testid="result-fallback">${error.fallback}</span>${t.useInstead[1]}`
            : nothing}
        </td>
      </tr>`;
    }
    const { metrics: m, size } = r;
    return html`<tr data-testid="quantize-result" data-format=${r.format} data-ran-on=${r.ranOn}>
      <td>
        ${r.format}
        ${m.nonFinite > 0
          ? html`<div
              class="warn"
              data-testid="result-non-finite"
              title=${m.firstNonFinite ? t.firstAt(m.firstNonFinite.row, m.firstNonFinite.col) : ""}
            >
              ${t.nonFinite(formatCount(m.nonFinite))}
            </div>`
          : nothing}
      </td>
      <td data-testid="result-bpw" data-value=${size.bitsPerWeight}>${formatMeasure(size.bitsPerWeight)}</td>
      <td data-testid="result-bytes" title=${t.bytesFrom(formatCount(size.bytesAfter), formatCount(size.bytesBefore))}>
        ${formatBytes(size.bytesAfter)}
      </td>
      <td data-testid="result-saved">${formatShare(size.shareSaved)}</td>
      <td data-testid="result-mse" data-value=${m.mse}>${formatMeasure(m.mse)}</td>
      <td data-testid="result-rmse" data-value=${m.rmse}>${formatMeasure(m.rmse)}</td>
      <td
        data-testid="result-max-err"
        data-value=${m.maxAbsErr}
        title=${m.maxAbsErrAt ? t.at(m.maxAbsErrAt.row, m.maxAbsErrAt.col) : ""}
      >
        ${formatMeasure(m.maxAbsErr)}
      </td>
      <td data-testid="result-snr" data-value=${m.snrDb}>${formatMeasure(m.snrDb)}</td>
      <td data-testid="result-cosine" data-value=${m.cosine}>${formatMeasure(m.cosine, 7)}</td>
      ${this.renderOutputError(r.outputError)}
      <td class="where" data-testid="result-ran-on">
        <span class=${r.ranOn}>${r.ranOn.toUpperCase()}</span>
        ${r.why ? html`<span class="why" data-testid="result-why" translate="no">${r.why}</span>` : nothing}
        ${(r.warnings ?? []).map((w) => html`<div class="warn" data-testid="result-warning" translate="no">${w}</div>`)}
      </td>
    </tr>`;
  }
}


customElements.define("ql-quantize-panel", QuantizePanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-quantize-panel": QuantizePanel;
  }
}
