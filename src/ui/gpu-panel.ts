/** Which WebGPU adapter the lab uses (vendor, architecture, f16, key limits), or why it uses the CPU. */
import { panelStyles } from "./styles.ts";
import { LitElement, css, html, nothing } from "lit";
import type { GpuStatus } from "../gpu/device.ts";
import { formatCount, formatMiB } from "../common/format.ts";

export class GpuPanel extends LitElement {
  static override properties = { status: { attribute: false } };
  /** undefined while the worker is still asking for an adapter. */
  declare status: GpuStatus | undefined;

  static override styles = [
    panelStyles,
    css`
    .adapter {
      font-weight: 600;
      margin-bottom: 0.4rem;
    }
    .badge {
      display: inline-block;
      font-size: 0.75rem;
      font-weight: 600;
      padding: 0.05rem 0.45rem;
      border-radius: 999px;
      margin-right: 0.35rem;
      background: var(--ql-ok-bg);
      color: var(--ql-ok);
    }
    dl {
      display: grid;
      grid-template-columns: auto 1fr;
      gap: 0.15rem 0.75rem;
      margin: 0;
      font-size: 0.85rem;
    }
    dt {
      color: var(--ql-muted);
    }
    dd {
      margin: 0;
      text-align: right;
      font-variant-numeric: tabular-nums;
    }
    .cpu {
      background: var(--ql-warn-bg);
      color: var(--ql-warn);
      border-radius: 6px;
      padding: 0.5rem 0.65rem;
      font-size: 0.85rem;
    }
    .pending {
      color: var(--ql-muted);
      font-size: 0.85rem;
    }
  `,
  ];

  override render() {
    return html`<h2>Compute</h2>
      ${this.renderStatus()}`;
  }

  private renderStatus() {
    const status = this.status;
    if (!status) return html`<div class="pending" data-testid="gpu-pending">Asking for a WebGPU adapter…</div>`;
    if (status.kind === "cpu") {
      return html`<div class="cpu" data-testid="gpu-cpu" role="status">
        <strong>CPU fallback.</strong> ${status.reason}
      </div>`;
    }
    const { info } = status;
    const l = info.limits;
    return html`<div data-testid="gpu-info">
      <div class="adapter">
        <span class="badge">WebGPU</span><span data-testid="gpu-vendor">${info.vendor}</span> ·
        <span data-testid="gpu-architecture">${info.architecture}</span>
      </div>
      ${info.description ? html`<div class="pending">${info.description}</div>` : nothing}
      <dl>
        <dt>shader-f16</dt>
        <dd data-testid="gpu-f16">${info.f16 ? "yes" : "no"}</dd>
        <dt>subgroups</dt>
        <dd>${info.subgroups ? "yes" : "no"}</dd>
        <dt>max buffer</dt>
        <dd>${formatMiB(l.maxBufferSize)}</dd>
        <dt>max storage binding</dt>
        <dd>${formatMiB(l.maxStorageBufferBindingSize)}</dd>
        <dt>workgroup storage</dt>
        <dd>${formatCount(l.maxComputeWorkgroupStorageSize / 1024)} KiB</dd>
        <dt>invocations / workgroup</dt>
        <dd>${formatCount(l.maxComputeInvocationsPerWorkgroup)}</dd>
        <dt>storage buffers / stage</dt>
        <dd>${formatCount(l.maxStorageBuffersPerShaderStage)}</dd>
      </dl>
    </div>`;
  }
}

customElements.define("ql-gpu-panel", GpuPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-gpu-panel": GpuPanel;
  }
}
