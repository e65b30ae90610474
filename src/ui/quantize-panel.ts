/**
 * The Quantize panel: for the selected tensor, pick formats (grouped by family, each with its bits per
 * weight on this tensor), run them in the quantization worker with a progress bar and Cancel, and read
 * what each costs and breaks. Every number comes from the worker; this component only lays them out.
 */
import { LitElement, css, html, nothing } from "lit";
import type { TensorRow } from "../formats/catalog.ts";
import type { FormatFamily } from "../quant/format.ts";
import { formatBytes, formatCount, formatMeasure, formatShape, formatShare } from "../common/format.ts";
import type { FormatChoice, FormatResult, QuantizeProgressEvent, QuantizeReport } from "../../workers/quant-worker-api.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import { buttonStyles, figureTableStyles, panelStyles } from "./styles.ts";
import "./spinner.ts";

const FAMILY_TITLES: Record<FormatFamily, string> = {
  gguf: "llama.cpp (GGUF) blocks",
  int: "integers (round to nearest)",
  bnb: "bitsandbytes",
  cast: "casts",
};

/** Families with many members start folded (the plain integers: 4 widths x 2 zero points x 5 scale groupings). */
const COLLAPSED_FAMILIES: ReadonlySet<FormatFamily> = new Set(["int"]);

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
      this.error = e instanceof CancelledError ? "Cancelled." : errorText(e);
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

  private toggle(id: string, on: boolean): void {
    const next = new Set(this.picked);
    if (on) next.add(id);
    else next.delete(id);
    this.picked = next;
  }

  override render() {
    const t = this.tensor;
    return html`<div class="head">
        <h2>Quantize</h2>
        ${t
          ? html`<span class="tensor" data-testid="quantize-tensor">${t.name}</span>
              <span class="hint">${formatShape(t.shape)} · ${t.dtype}</span>`
          : nothing}
      </div>
      ${t ? this.renderPicker() : html`<p class="hint">Select a tensor to quantize it in the formats you pick.</p>`}
      ${this.error ? html`<p class="error" role="alert" data-testid="quantize-error">${this.error}</p>` : nothing}
      ${this.report ? this.renderReport(this.report) : nothing}`;
  }

  private renderPicker() {
    const choices = this.choices;
    if (!choices) return html`<p class="hint"><ql-spinner></ql-spinner> Loading the formats…</p>`;
    const families = [...new Set(choices.map((c) => c.family))];
    const running = this.running;
    const progress = running?.progress;
    return html`<div class="families" data-testid="format-picker">
        ${families.map((family) => {
          const members = choices.filter((c) => c.family === family);
          const picked = members.filter((c) => this.picked.has(c.id)).map((c) => c.id);
          return html`<details data-family=${family} ?open=${!COLLAPSED_FAMILIES.has(family)}>
            <summary data-testid="family-toggle">
              <span class="family">${FAMILY_TITLES[family]}</span>
              <span class="hint">${members.length} formats${picked.length > 0 ? ` · picked: ${picked.join(", ")}` : ""}</span>
            </summary>
            <fieldset>${members.map((c) => this.renderChoice(c))}</fieldset>
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
          Quantize ${this.picked.size} format${this.picked.size === 1 ? "" : "s"}
        </button>
        <button class="link" data-testid="formats-all" @click=${() => (this.picked = new Set(choices.map((c) => c.id)))}>
          pick all
        </button>
        <button class="link" data-testid="formats-none" @click=${() => (this.picked = new Set())}>none</button>
        ${running
          ? html`<span class="progress" data-testid="quantize-progress" role="status">
              <progress max=${progress?.totalBytes ?? 1} value=${progress?.doneBytes ?? 0}></progress>
              ${progress
                ? html`${progress.format} · ${formatShare(progress.doneBytes / progress.totalBytes)}`
                : html`starting on ${running.tensor}…`}
              <button data-testid="quantize-cancel" ?disabled=${running.cancelling === true} @click=${() => this.cancel()}>
                Cancel
              </button>
            </span>`
          : nothing}
      </div>`;
  }

  private renderChoice(c: FormatChoice) {
    const on = this.picked.has(c.id);
    const misfit = c.rowLengthProblem;
    const title = misfit ? `${c.description}\n\nThis tensor: ${misfit.reason}` : c.description;
    return html`<label class="format ${on ? "on" : ""} ${misfit ? "misfit" : ""}" title=${title} data-format=${c.id}>
      <input
        type="checkbox"
        data-testid="format-choice"
        .checked=${on}
        @change=${(e: Event) => this.toggle(c.id, (e.target as HTMLInputElement).checked)}
      />${c.id} <span class="bpw" data-testid="choice-bpw">${formatMeasure(c.bitsPerWeight)}</span>
    </label>`;
  }

  private renderReport(report: QuantizeReport) {
    const device = report.device;
    return html`<div data-testid="quantize-report" data-tensor=${report.tensor}>
      <p class="hint">
        ${report.tensor} (${formatShape([report.shape.rows, report.shape.cols])}, ${report.dtype}) ·
        <span data-testid="quantize-device"
          >${device.kind === "gpu"
            ? `WebGPU: ${device.info.vendor} ${device.info.architecture}`
            : `no GPU: ${device.reason}`}</span
        >
      </p>
      <div class="table">
        <table data-testid="quantize-results">
          <thead>
            <tr>
              <th>format</th>
              <th>bits/weight</th>
              <th>bytes after</th>
              <th>saved</th>
              <th>MSE</th>
              <th>RMSE</th>
              <th>max |err|</th>
              <th>SNR dB</th>
              <th>cosine</th>
              <th class="where">ran on</th>
            </tr>
          </thead>
          <tbody>
            ${report.results.map((r) => this.renderResult(r))}
          </tbody>
        </table>
      </div>
    </div>`;
  }

  private renderResult(r: FormatResult) {
    if (!r.ok) {
      const { error } = r;
      return html`<tr class="failed" data-testid="quantize-result" data-format=${r.format} data-problem=${error.problem}>
        <td>${r.format}</td>
        <td class="message" colspan="9" data-testid="result-error">
          ${error.message}${error.fallback
            ? html` — use <span class="fallback" data-testid="result-fallback">${error.fallback}</span> instead`
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
              title=${m.firstNonFinite ? `the first at row ${m.firstNonFinite.row}, column ${m.firstNonFinite.col}` : ""}
            >
              ${formatCount(m.nonFinite)} decode to ±Inf: left out of the figures
            </div>`
          : nothing}
      </td>
      <td data-testid="result-bpw" data-value=${size.bitsPerWeight}>${formatMeasure(size.bitsPerWeight)}</td>
      <td data-testid="result-bytes" title=${`${formatCount(size.bytesAfter)} bytes (from ${formatCount(size.bytesBefore)})`}>
        ${formatBytes(size.bytesAfter)}
      </td>
      <td data-testid="result-saved">${formatShare(size.shareSaved)}</td>
      <td data-testid="result-mse" data-value=${m.mse}>${formatMeasure(m.mse)}</td>
      <td data-testid="result-rmse" data-value=${m.rmse}>${formatMeasure(m.rmse)}</td>
      <td
        data-testid="result-max-err"
        data-value=${m.maxAbsErr}
        title=${m.maxAbsErrAt ? `at row ${m.maxAbsErrAt.row}, column ${m.maxAbsErrAt.col}` : ""}
      >
        ${formatMeasure(m.maxAbsErr)}
      </td>
      <td data-testid="result-snr" data-value=${m.snrDb}>${formatMeasure(m.snrDb)}</td>
      <td data-testid="result-cosine" data-value=${m.cosine}>${formatMeasure(m.cosine, 7)}</td>
      <td class="where" data-testid="result-ran-on">
        <span class=${r.ranOn}>${r.ranOn.toUpperCase()}</span>
        ${r.why ? html`<span class="why" data-testid="result-why">${r.why}</span>` : nothing}
      </td>
    </tr>`;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

customElements.define("ql-quantize-panel", QuantizePanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-quantize-panel": QuantizePanel;
  }
}
