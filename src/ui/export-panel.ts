/**
 * The Export tab: the opened model as a GGUF file llama.cpp runs, in a llama-quantize file type. The file
 * is written by the quantization worker (workers/export-run.ts), straight into a file the user picks where
 * the browser has the File System Access API, else handed back for a download. This component only asks
 * and shows what the worker reports.
 */
import { LitElement, css, html, nothing } from "lit";
import { formatBytes } from "../common/format.ts";
import type { GgufExportProgress, GgufExportReport } from "../../workers/quant-worker-api.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import { LangController, localized } from "./i18n.ts";
import { buttonStyles, panelStyles } from "./styles.ts";
import "./spinner.ts";

/** The whole-model types the export offers (llama-quantize's names). */
export const GGUF_EXPORT_TYPES = ["F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "Q4_0"] as const;

const TEXT = localized(
  {
    title: "Export",
    intro:
      "Write the opened model as a GGUF file that llama.cpp (and Ollama, LM Studio, node-llama-cpp) loads. Each tensor gets the type llama-quantize's rules give it, with its fallbacks where a type cannot take the rows.",
    needs: "Needs the model's config.json and tokenizer.json: pick or drop them together with the safetensors (or open a URL that has them next to it).",
    type: "File type",
    run: "Export GGUF",
    cancel: "Cancel",
    cancelled: "Cancelled: nothing was written.",
    writing: (done: number, total: number, tensor: string) => `writing tensor ${done} of ${total} (${tensor})`,
    done: (bytes: string, tensors: number) => `Written: ${bytes}, ${tensors} tensors.`,
    downloaded: "The file was handed to the browser's download.",
    fallbacks: (n: number) => `${n} tensors took llama.cpp's fallback:`,
    fallback: (tensor: string, wanted: string, written: string) => `${tensor}: ${wanted} → ${written}`,
    noModel: "Open a model first.",
  },
  {
    title: "导出",
    intro: "把已打开的模型写成 llama.cpp 可以加载的 GGUF 文件。每个张量按 llama-quantize 的规则取类型；某类型无法处理其行长度时采用相应的回退类型。",
    needs: "需要模型的 config.json 和 tokenizer.json：与 safetensors 文件一起选择或拖入（或打开旁边带有它们的 URL）。",
    type: "文件类型",
    run: "导出 GGUF",
    cancel: "取消",
    cancelled: "已取消：没有写入任何内容。",
    writing: (done: number, total: number, tensor: string) => `正在写入第 ${done} / ${total} 个张量（${tensor}）`,
    done: (bytes: string, tensors: number) => `已写入：${bytes}，共 ${tensors} 个张量。`,
    downloaded: "文件已交给浏览器下载。",
    fallbacks: (n: number) => `${n} 个张量采用了 llama.cpp 的回退类型：`,
    fallback: (tensor: string, wanted: string, written: string) => `${tensor}：${wanted} → ${written}`,
    noModel: "请先打开一个模型。",
  },
);

type SavePicker = (options: { suggestedName: string; types: { description: string; accept: Record<string, string[]> }[] }) => Promise<FileSystemFileHandle>;

export class ExportPanel extends LitElement {
  static override properties = {
    client: { attribute: false },
    modelName: { attribute: false },
    fileType: { state: true },
    running: { state: true },
    progress: { state: true },
    report: { state: true },
    error: { state: true },
    note: { state: true },
  };
  declare client: LabClient | undefined;
  declare modelName: string | undefined;
  declare fileType: string;
  declare running: number | undefined;
  declare progress: GgufExportProgress | undefined;
  declare report: GgufExportReport | undefined;
  declare error: string | undefined;
  declare note: string | undefined;
  private readonly langController = new LangController(this);

  static override styles = [
    panelStyles,
    buttonStyles,
    css`
      p {
        font-size: 0.85rem;
        margin: 0.3rem 0;
      }
      .row {
        display: flex;
        gap: 0.6rem;
        align-items: center;
        flex-wrap: wrap;
        margin: 0.6rem 0;
      }
      .muted {
        color: var(--ql-muted);
      }
      .error {
        color: var(--ql-error);
      }
      ul {
        font-family: var(--ql-mono);
        font-size: 0.78rem;
        max-height: 12rem;
        overflow: auto;
      }
    `,
  ];

  constructor() {
    super();
    this.fileType = "Q4_K_M";
  }

  private async run(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.error = undefined;
    this.report = undefined;
    this.note = undefined;
    const base = (this.modelName ?? "model").replace(/\.(safetensors|json)$/, "").replace(/[^\w.-]+/g, "_");
    const suggestedName = `${base}-${this.fileType}.gguf`;
    // Where the browser lets us, the user picks the file first and the worker writes it directly.
    const picker = (globalThis as { showSaveFilePicker?: SavePicker }).showSaveFilePicker;
    let target: FileSystemFileHandle | undefined;
    if (picker) {
      try {
        target = await picker({ suggestedName, types: [{ description: "GGUF", accept: { "application/octet-stream": [".gguf"] } }] });
      } catch {
        return; // the user closed the picker
      }
    }
    const job = client.exportGguf(this.fileType, target, (p) => {
      if (this.running === job.jobId) this.progress = p;
    });
    this.running = job.jobId;
    this.progress = undefined;
    try {
      const report = await job.report;
      this.report = report;
      if (report.blob) {
        const url = URL.createObjectURL(report.blob);
        const a = document.createElement("a");
        a.href = url;
        a.download = suggestedName;
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
        this.note = TEXT().downloaded;
      }
    } catch (e) {
      this.error = e instanceof CancelledError ? TEXT().cancelled : e instanceof Error ? e.message : String(e);
    } finally {
      this.running = undefined;
      this.progress = undefined;
    }
  }

  private cancel(): void {
    if (this.running !== undefined) void this.client?.cancelQuantize(this.running);
  }

  override render() {
    const t = TEXT();
    const r = this.report;
    return html`
      <h2>${t.title}</h2>
      <p>${t.intro}</p>
      <p class="muted">${t.needs}</p>
      <div class="row">
        <label
          >${t.type}
          <select data-testid="export-type" ?disabled=${this.running !== undefined} @change=${(e: Event) => (this.fileType = (e.target as HTMLSelectElement).value)}>
            ${GGUF_EXPORT_TYPES.map((ft) => html`<option value=${ft} ?selected=${ft === this.fileType}>${ft}</option>`)}
          </select></label
        >
        ${this.running === undefined
          ? html`<button type="button" class="primary" data-testid="export-run" ?disabled=${!this.modelName} @click=${() => this.run()}>${t.run}</button>`
          : html`<button type="button" data-testid="export-cancel" @click=${() => this.cancel()}>${t.cancel}</button>
              <span role="status"><ql-spinner></ql-spinner> ${this.progress ? t.writing(this.progress.done, this.progress.total, this.progress.tensor) : ""}</span>`}
      </div>
      ${this.modelName ? nothing : html`<p class="muted">${t.noModel}</p>`}
      ${this.error ? html`<p class="error" role="alert" data-testid="export-error" translate="no">${this.error}</p>` : nothing}
      ${r
        ? html`<p data-testid="export-done" data-bytes=${r.bytes}>${t.done(formatBytes(r.bytes), r.tensors)} ${this.note ?? ""}</p>
            ${r.fallbacks.length > 0
              ? html`<p>${t.fallbacks(r.fallbacks.length)}</p>
                  <ul data-testid="export-fallbacks">
                    ${r.fallbacks.map((f) => html`<li>${t.fallback(f.tensor, f.wanted, f.written)}</li>`)}
                  </ul>`
              : nothing}`
        : nothing}
    `;
  }
}

customElements.define("ql-export-panel", ExportPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-export-panel": ExportPanel;
  }
}
