/** The selected tensor: where it lives and the statistics the worker streamed out of it. */
import { panelStyles } from "./styles.ts";
import { LitElement, css, html, nothing } from "lit";
import type { TensorStatsResult } from "../../workers/model-worker-api.ts";
import { formatBytes, formatCount, formatShape, formatValue } from "../common/format.ts";
import { LangController, localized } from "./i18n.ts";
import "./spinner.ts";

const TEXT = localized(
  {
    title: "Tensor",
    streaming: "Streaming the tensor…",
    hint: "Click a tensor in the table to stream it and see its statistics.",
    dtype: "dtype",
    shape: "shape",
    file: "file",
    offset: "offset",
    bytes: "bytes",
    bytesExact: (n: string) => `${n} bytes`,
    values: "values",
    min: "min",
    max: "max",
    mean: "mean",
    std: "std",
    zeros: "zeros",
    computedOnGpu: "computed on the GPU (WebGPU, shaders/stats.wgsl)",
    computedOnCpu: "computed on the CPU (reference)",
    first: (n: number) => `first ${n} values`,
  },
  {
    title: "张量",
    streaming: "正在流式读取张量…",
    hint: "在表格中点击一个张量，流式读取它并查看统计信息。",
    dtype: "数据类型",
    shape: "形状",
    file: "文件",
    offset: "偏移",
    bytes: "字节数",
    bytesExact: (n: string) => `${n} 字节`,
    values: "数值个数",
    min: "最小值",
    max: "最大值",
    mean: "均值",
    std: "标准差",
    zeros: "零值个数",
    computedOnGpu: "在 GPU 上计算（WebGPU，shaders/stats.wgsl）",
    computedOnCpu: "在 CPU 上计算（参考实现）",
    first: (n: number) => `前 ${n} 个数值`,
  },
);

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

  private readonly langController = new LangController(this);

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
    return html`<h2>${TEXT().title}</h2>
      ${this.renderBody()}`;
  }

  private renderBody() {
    const text = TEXT();
    if (this.loading) {
      return html`<div class="name">${this.loading}</div>
        <div class="loading" data-testid="stats-loading" role="status"><ql-spinner></ql-spinner> ${text.streaming}</div>`;
    }
    if (this.error) return html`<div class="error" role="alert" data-testid="stats-error" translate="no">${this.error}</div>`;
    const result = this.result;
    if (!result) return html`<p class="hint">${text.hint}</p>`;
    const { tensor: t, stats: s, computedOn } = result;
    return html`<div data-testid="stats-panel" data-name=${t.name}>
      <div class="name">${t.name}</div>
      <dl>
        <dt>${text.dtype}</dt>
        <dd>${t.dtype}</dd>
        <dt>${text.shape}</dt>
        <dd>${formatShape(t.shape)}</dd>
        <dt>${text.file}</dt>
        <dd>${t.file}</dd>
        <dt>${text.offset}</dt>
        <dd title=${text.bytesExact(formatCount(t.offset))}>${formatCount(t.offset)}</dd>
        <dt>${text.bytes}</dt>
        <dd title=${text.bytesExact(formatCount(t.bytes))}>${formatBytes(t.bytes)}</dd>
      </dl>
      <dl>
        <dt>${text.values}</dt>
        <dd data-testid="stat-count">${formatCount(s.count)}</dd>
        <dt>${text.min}</dt>
        <dd data-testid="stat-min">${formatValue(s.min)}</dd>
        <dt>${text.max}</dt>
        <dd data-testid="stat-max">${formatValue(s.max)}</dd>
        <dt>${text.mean}</dt>
        <dd data-testid="stat-mean">${formatValue(s.mean)}</dd>
        <dt>${text.std}</dt>
        <dd data-testid="stat-std">${formatValue(s.std)}</dd>
        <dt>${text.zeros}</dt>
        <dd data-testid="stat-zeros">${formatCount(s.zeros)}</dd>
        <dt>NaN</dt>
        <dd data-testid="stat-nan" class=${s.nan > 0 ? "warn" : ""}>${formatCount(s.nan)}</dd>
        <dt>±Inf</dt>
        <dd data-testid="stat-inf" class=${s.inf > 0 ? "warn" : ""}>${formatCount(s.inf)}</dd>
      </dl>
      <div class="hint device" data-testid="stats-device">
        ${computedOn === "gpu" ? text.computedOnGpu : text.computedOnCpu}
      </div>
      ${s.first.length > 0
        ? html`<div class="hint">${text.first(s.first.length)}</div>
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
