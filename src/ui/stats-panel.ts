/** The selected tensor: where it lives and the statistics the worker streamed out of it. */
import { panelStyles } from "./styles.ts";
import { LitElement, css, html, nothing } from "lit";
import type { TensorStatsResult } from "../../workers/model-worker-api.ts";
import { formatBytes, formatCount, formatShape, formatValue } from "../common/format.ts";
import "./spinner.ts";

export class StatsPanel extends LitElement {
  static override properties = {
    result: { attribute: false },
    loading: { attribute: false },
    error: { attribute: false },
  };
  /** The statistics to show, or undefined when no tensor is selected. */
  declare result: TensorStatsResult | undefined;
  /** Name of the tensor being read, while the worker works. */
  declare loading: string | undefined;
  declare error: string | undefined;

  static override styles = [
    panelStyles,
    css`
    .name {
      font-family: var(--ql-mono);
      font-size: 0.8rem;
      word-break: break-all;
      font-weight: 600;
      margin-bottom: 0.5rem;
    }
    dl {
      display: grid;
      grid-template-columns: auto 1fr;
      gap: 0.15rem 0.75rem;
      margin: 0 0 0.6rem;
      font-size: 0.85rem;
    }
    dt {
      color: var(--ql-muted);
    }
    dd {
      margin: 0;
      text-align: right;
      font-variant-numeric: tabular-nums;
      font-family: var(--ql-mono);
      font-size: 0.8rem;
    }
    .first {
      display: flex;
      flex-wrap: wrap;
      gap: 0.1rem 0.8rem;
      font-family: var(--ql-mono);
      font-size: 0.78rem;
      background: var(--ql-group-bg);
      border-radius: 6px;
      padding: 0.4rem 0.5rem;
      margin: 0.2rem 0 0;
    }
    .first span {
      white-space: nowrap;
    }
    .device {
      margin-bottom: 0.5rem;
    }
    .hint,
    .loading {
      color: var(--ql-muted);
      font-size: 0.85rem;
    }
    .error {
      color: var(--ql-error);
      font-size: 0.85rem;
    }
    .warn {
      color: var(--ql-warn);
      font-weight: 600;
    }
  `,
  ];

  override render() {
    return html`<h2>Tensor</h2>
      ${this.renderBody()}`;
  }

  private renderBody() {
    if (this.loading) {
      return html`<div class="name">${this.loading}</div>
        <div class="loading" data-testid="stats-loading" role="status"><ql-spinner></ql-spinner> Streaming the tensor…</div>`;
    }
    if (this.error) return html`<div class="error" role="alert" data-testid="stats-error">${this.error}</div>`;
    const result = this.result;
    if (!result) return html`<p class="hint">Click a tensor in the table to stream it and see its statistics.</p>`;
    const { tensor: t, stats: s, computedOn } = result;
    return html`<div data-testid="stats-panel" data-name=${t.name}>
      <div class="name">${t.name}</div>
      <dl>
        <dt>dtype</dt>
        <dd>${t.dtype}</dd>
        <dt>shape</dt>
        <dd>${formatShape(t.shape)}</dd>
        <dt>file</dt>
        <dd>${t.file}</dd>
        <dt>offset</dt>
        <dd title=${`${formatCount(t.offset)} bytes`}>${formatCount(t.offset)}</dd>
        <dt>bytes</dt>
        <dd title=${`${formatCount(t.bytes)} bytes`}>${formatBytes(t.bytes)}</dd>
      </dl>
      <dl>
        <dt>values</dt>
        <dd data-testid="stat-count">${formatCount(s.count)}</dd>
        <dt>min</dt>
        <dd data-testid="stat-min">${formatValue(s.min)}</dd>
        <dt>max</dt>
        <dd data-testid="stat-max">${formatValue(s.max)}</dd>
        <dt>mean</dt>
        <dd data-testid="stat-mean">${formatValue(s.mean)}</dd>
        <dt>std</dt>
        <dd data-testid="stat-std">${formatValue(s.std)}</dd>
        <dt>zeros</dt>
        <dd data-testid="stat-zeros">${formatCount(s.zeros)}</dd>
        <dt>NaN</dt>
        <dd data-testid="stat-nan" class=${s.nan > 0 ? "warn" : ""}>${formatCount(s.nan)}</dd>
        <dt>±Inf</dt>
        <dd data-testid="stat-inf" class=${s.inf > 0 ? "warn" : ""}>${formatCount(s.inf)}</dd>
      </dl>
      <div class="hint device" data-testid="stats-device">
        computed on the ${computedOn === "gpu" ? "GPU (WebGPU, shaders/stats.wgsl)" : "CPU (reference)"}
      </div>
      ${s.first.length > 0
        ? html`<div class="hint">first ${s.first.length} values</div>
            <p class="first" data-testid="stat-first">${s.first.map((v) => html`<span>${formatValue(v)} </span>`)}</p>`
        : nothing}
    </div>`;
  }
}

customElements.define("ql-stats-panel", StatsPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-stats-panel": StatsPanel;
  }
}
