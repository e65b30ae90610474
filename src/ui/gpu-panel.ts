/** Which WebGPU adapter the lab uses (vendor, architecture, f16, key limits), or why it uses the CPU. */
import { panelStyles } from "./styles.ts";
import { LitElement, css, html, nothing } from "lit";
import type { GpuStatus } from "../gpu/device.ts";
import { formatCount, formatMiB } from "../common/format.ts";
import { LangController, localized } from "./i18n.ts";

const TEXT = localized(
  {
    title: "Compute",
    pending: "Asking for a WebGPU adapter…",
    cpuFallback: "CPU fallback.",
    subgroups: "subgroups",
    yes: "yes",
    no: "no",
    maxBuffer: "max buffer",
    maxStorageBinding: "max storage binding",
    workgroupStorage: "workgroup storage",
    invocations: "invocations / workgroup",
    storageBuffers: "storage buffers / stage",
  },
  {
    title: "计算设备",
    pending: "正在请求 WebGPU 适配器…",
    cpuFallback: "回退到 CPU。",
    subgroups: "子组",
    yes: "是",
    no: "否",
    maxBuffer: "最大缓冲区",
    maxStorageBinding: "最大存储绑定",
    workgroupStorage: "工作组共享存储",
    invocations: "每工作组调用数",
    storageBuffers: "每阶段存储缓冲区数",
  },
);

export class GpuPanel extends LitElement {
  static override properties = { status: { attribute: false } };
  /** undefined while the worker is still asking for an adapter. */
  declare status: GpuStatus | undefined;

  private readonly langController = new LangController(this);

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
    return html`<h2>${TEXT().title}</h2>
      ${this.renderStatus()}`;
  }

  private renderStatus() {
    const status = this.status;
    const t = TEXT();
    if (!status) return html`<div class="pending" data-testid="gpu-pending">${t.pending}</div>`;
    if (status.kind === "cpu") {
      return html`<div class="cpu" data-testid="gpu-cpu" role="status">
        <strong>${t.cpuFallback}</strong> <span translate="no">${status.reason}</span>
      </div>`;
    }
    const { info } = status;
    const l = info.limits;
    return html`<div data-testid="gpu-info">
      <div class="adapter">
        <span class="badge">WebGPU</span><span data-testid="gpu-vendor" translate="no">${info.vendor}</span> ·
        <span data-testid="gpu-architecture" translate="no">${info.architecture}</span>
      </div>
      ${info.description ? html`<div class="pending" translate="no">${info.description}</div>` : nothing}
      <dl>
        <dt>shader-f16</dt>
        <dd data-testid="gpu-f16">${info.f16 ? t.yes : t.no}</dd>
        <dt>${t.subgroups}</dt>
        <dd>${info.subgroups ? t.yes : t.no}</dd>
        <dt>${t.maxBuffer}</dt>
        <dd>${formatMiB(l.maxBufferSize)}</dd>
        <dt>${t.maxStorageBinding}</dt>
        <dd>${formatMiB(l.maxStorageBufferBindingSize)}</dd>
        <dt>${t.workgroupStorage}</dt>
        <dd>${formatCount(l.maxComputeWorkgroupStorageSize / 1024)} KiB</dd>
        <dt>${t.invocations}</dt>
        <dd>${formatCount(l.maxComputeInvocationsPerWorkgroup)}</dd>
        <dt>${t.storageBuffers}</dt>
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
