/**
 * The Export tab: the opened model as a GGUF file llama.cpp runs (a llama-quantize file type), as a GPTQ or
 * AWQ safetensors checkpoint, or as the ONNX graph the lab runs at a precision. The GGUF is written by the
 * quantization worker (workers/export-run.ts) straight into a file the user picks where the browser has the
 * File System Access API, else handed back for a download; GPTQ / AWQ / ONNX files are built by the worker
 * (workers/export-checkpoint.ts) and saved here into a folder the user picks, or downloaded one by one. This
 * component only asks and shows what the worker reports.
 */
import { LitElement, css, html, nothing } from "lit";
import { formatBytes } from "../common/format.ts";
import type { CheckpointExportReport, CheckpointTarget, GgufExportProgress, GgufExportReport } from "../../workers/quant-worker-api.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import type { LabClient } from "./lab-client.ts";
import { LangController, localized } from "./i18n.ts";
import { buttonStyles, panelStyles } from "./styles.ts";
import "./spinner.ts";

/** What the tab writes. */
export const EXPORT_TARGETS = ["gguf", "gptq", "awq", "onnx"] as const;
type ExportTarget = (typeof EXPORT_TARGETS)[number];
/** The precisions the ONNX export offers (the lab's model-run precisions). */
export const ONNX_EXPORT_PRECISIONS = ["f32", "f16", "int8", "int4-g32", "q8_0", "q4_K", "nf4", "gptq4", "awq4-g32"] as const;

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
    target: "Format",
    targets: { gguf: "GGUF (llama.cpp)", gptq: "GPTQ safetensors", awq: "AWQ safetensors", onnx: "ONNX (the lab's graph)" } as Record<ExportTarget, string>,
    checkpointIntro:
      "GPTQ and AWQ calibrate on the inputs of every linear layer in the model's own run on the bundled calibration text, then pack them as AutoGPTQ (v1) and AutoAWQ (GEMM) do; layers the layout cannot take stay unquantized and are listed. AWQ folds its scales into the norms before the layers.",
    onnxIntro: "The graph the lab runs at this precision, weights inline (MatMulNBits for int4/int8 groups). At most 2 GB.",
    bits: "Bits",
    group: "Group",
    perChannel: "per channel",
    sym: "symmetric",
    actOrder: "act-order",
    precision: "Precision",
    runTarget: (target: string) => `Export ${target}`,
    stage: (stage: string) => ({ calibrating: "calibrating on the model's run…", quantizing: "quantizing…", packing: "packing…" })[stage] ?? stage,
    saved: (n: number) => `${n} files written into the folder you picked.`,
    downloadedFiles: (n: number) => (n === 1 ? "The file was handed to the browser's download." : `${n} files were handed to the browser's download: keep them together in one folder.`),
    checkpointDone: (bytes: string, packed: number, kept: number) => `Written: ${bytes}; ${packed} layers packed, ${kept} kept unquantized.`,
    onnxDone: (bytes: string) => `Written: ${bytes}.`,
    unconverted: (module: string, reason: string) => `${module}: ${reason}`,
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
    target: "格式",
    targets: { gguf: "GGUF（llama.cpp）", gptq: "GPTQ safetensors", awq: "AWQ safetensors", onnx: "ONNX（实验室的计算图）" } as Record<ExportTarget, string>,
    checkpointIntro:
      "GPTQ 和 AWQ 以模型自身在内置校准文本上运行时每个线性层的输入进行校准，再按 AutoGPTQ（v1）和 AutoAWQ（GEMM）的方式打包；布局无法容纳的层保持未量化并列出。AWQ 把缩放因子折叠进层前的归一化权重。",
    onnxIntro: "实验室在该精度下运行的计算图，权重内嵌（int4/int8 分组使用 MatMulNBits）。最大 2 GB。",
    bits: "位数",
    group: "分组",
    perChannel: "按通道",
    sym: "对称",
    actOrder: "act-order",
    precision: "精度",
    runTarget: (target: string) => `导出 ${target}`,
    stage: (stage: string) => ({ calibrating: "正在用模型运行校准…", quantizing: "正在量化…", packing: "正在打包…" })[stage] ?? stage,
    saved: (n: number) => `已将 ${n} 个文件写入所选文件夹。`,
    downloadedFiles: (n: number) => (n === 1 ? "文件已交给浏览器下载。" : `${n} 个文件已交给浏览器下载：请把它们放在同一个文件夹中。`),
    checkpointDone: (bytes: string, packed: number, kept: number) => `已写入：${bytes}；打包 ${packed} 层，${kept} 层保持未量化。`,
    onnxDone: (bytes: string) => `已写入：${bytes}。`,
    unconverted: (module: string, reason: string) => `${module}：${reason}`,
  },
);

type SavePicker = (options: { suggestedName: string; types: { description: string; accept: Record<string, string[]> }[] }) => Promise<FileSystemFileHandle>;
type DirectoryPicker = (options: { mode: "readwrite" }) => Promise<FileSystemDirectoryHandle>;

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export class ExportPanel extends LitElement {
  static override properties = {
    client: { attribute: false },
    modelName: { attribute: false },
    fileType: { state: true },
    target: { state: true },
    bits: { state: true },
    group: { state: true },
    sym: { state: true },
    actOrder: { state: true },
    precision: { state: true },
    stage: { state: true },
    checkpoint: { state: true },
    running: { state: true },
    progress: { state: true },
    report: { state: true },
    error: { state: true },
    note: { state: true },
  };
  declare client: LabClient | undefined;
  declare modelName: string | undefined;
  declare fileType: string;
  declare target: ExportTarget;
  declare bits: number;
  declare group: number;
  declare sym: boolean;
  declare actOrder: boolean;
  declare precision: string;
  declare stage: string | undefined;
  declare checkpoint: CheckpointExportReport | undefined;
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
    this.target = "gguf";
    this.bits = 4;
    this.group = 128;
    this.sym = false;
    this.actOrder = false;
    this.precision = "int4-g32";
  }

  private chooseTarget(target: ExportTarget): void {
    this.target = target;
    if (target === "awq" && this.group === -1) this.group = 128; // AWQ has no per-channel layout
  }

  /** Clears the last run's outcome; gives the model's name as a file-name stem. */
  private startRun(): string {
    this.error = undefined;
    this.report = undefined;
    this.checkpoint = undefined;
    this.note = undefined;
    return (this.modelName ?? "model").replace(/\.(safetensors|json)$/, "").replace(/[^\w.-]+/g, "_");
  }

  private checkpointTarget(): CheckpointTarget {
    if (this.target === "onnx") return { kind: "onnx", precision: this.precision };
    return { kind: this.target === "awq" ? "awq" : "gptq", bits: this.target === "awq" ? 4 : this.bits, group: this.group, sym: this.sym, actOrder: this.target === "gptq" && this.actOrder };
  }

  private async runCheckpoint(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const base = this.startRun();
    const target = this.checkpointTarget();
    const folderName = target.kind === "onnx" ? "" : `${base}-${target.kind}${target.bits}-g${target.group}`;
    // A folder of files: where the browser lets us, the user picks where it goes first.
    const dirPicker = (globalThis as { showDirectoryPicker?: DirectoryPicker }).showDirectoryPicker;
    let folder: FileSystemDirectoryHandle | undefined;
    if (target.kind !== "onnx" && dirPicker) {
      try {
        folder = await dirPicker({ mode: "readwrite" });
      } catch {
        return; // the user closed the picker
      }
    }
    const job = client.exportCheckpoint(target, (stage) => {
      if (this.running === job.jobId) this.stage = stage;
    });
    this.running = job.jobId;
    this.stage = undefined;
    try {
      const report = await job.report;
      if (folder) {
        const dir = await folder.getDirectoryHandle(folderName, { create: true });
        for (const f of report.files) {
          const writable = await (await dir.getFileHandle(f.name, { create: true })).createWritable();
          await writable.write(f.blob);
          await writable.close();
        }
        this.note = TEXT().saved(report.files.length);
      } else {
        for (const f of report.files) download(f.blob, f.name);
        this.note = TEXT().downloadedFiles(report.files.length);
      }
      this.checkpoint = report;
    } catch (e) {
      this.error = e instanceof CancelledError ? TEXT().cancelled : errorText(e);
    } finally {
      this.running = undefined;
      this.stage = undefined;
    }
  }

  private async run(): Promise<void> {
    if (this.target !== "gguf") return this.runCheckpoint();
    const client = this.client;
    if (!client) return;
    const base = this.startRun();
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
        download(report.blob, suggestedName);
        this.note = TEXT().downloaded;
      }
    } catch (e) {
      this.error = e instanceof CancelledError ? TEXT().cancelled : errorText(e);
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
      <div class="row">
        <label
          >${t.target}
          <select data-testid="export-target" ?disabled=${this.running !== undefined} @change=${(e: Event) => this.chooseTarget((e.target as HTMLSelectElement).value as ExportTarget)}>
            ${EXPORT_TARGETS.map((x) => html`<option value=${x} ?selected=${x === this.target}>${t.targets[x]}</option>`)}
          </select></label
        >
      </div>
      <p>${this.target === "gguf" ? t.intro : this.target === "onnx" ? t.onnxIntro : t.checkpointIntro}</p>
      <p class="muted">${t.needs}</p>
      <div class="row">
        ${this.renderSettings()}
        ${this.running === undefined
          ? html`<button type="button" class="primary" data-testid="export-run" ?disabled=${!this.modelName} @click=${() => this.run()}>
              ${this.target === "gguf" ? t.run : t.runTarget(this.target.toUpperCase())}
            </button>`
          : html`<button type="button" data-testid="export-cancel" @click=${() => this.cancel()}>${t.cancel}</button>
              <span role="status"
                ><ql-spinner></ql-spinner> ${this.progress ? t.writing(this.progress.done, this.progress.total, this.progress.tensor) : this.stage ? t.stage(this.stage) : ""}</span
              >`}
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
      ${this.renderCheckpoint()}
    `;
  }

  private renderSettings() {
    const t = TEXT();
    const disabled = this.running !== undefined;
    const number = (e: Event) => Number((e.target as HTMLSelectElement).value);
    const choice = (label: string, testId: string, options: readonly string[], selected: string, set: (v: string) => void) =>
      html`<label
        >${label}
        <select data-testid=${testId} ?disabled=${disabled} @change=${(e: Event) => set((e.target as HTMLSelectElement).value)}>
          ${options.map((o) => html`<option value=${o} ?selected=${o === selected}>${o}</option>`)}
        </select></label
      >`;
    if (this.target === "gguf") return choice(t.type, "export-type", GGUF_EXPORT_TYPES, this.fileType, (v) => (this.fileType = v));
    if (this.target === "onnx") return choice(t.precision, "export-precision", ONNX_EXPORT_PRECISIONS, this.precision, (v) => (this.precision = v));
    const groups = this.target === "gptq" ? [32, 64, 128, -1] : [32, 64, 128];
    return html`${this.target === "gptq"
        ? html`<label
            >${t.bits}
            <select data-testid="export-bits" ?disabled=${disabled} @change=${(e: Event) => (this.bits = number(e))}>
              ${[2, 4, 8].map((b) => html`<option value=${b} ?selected=${b === this.bits}>${b}</option>`)}
            </select></label
          >`
        : nothing}
      <label
        >${t.group}
        <select data-testid="export-group" ?disabled=${disabled} @change=${(e: Event) => (this.group = number(e))}>
          ${groups.map((g) => html`<option value=${g} ?selected=${g === this.group}>${g === -1 ? t.perChannel : g}</option>`)}
        </select></label
      >
      <label><input type="checkbox" data-testid="export-sym" ?disabled=${disabled} .checked=${this.sym} @change=${(e: Event) => (this.sym = (e.target as HTMLInputElement).checked)} /> ${t.sym}</label>
      ${this.target === "gptq"
        ? html`<label
            ><input type="checkbox" data-testid="export-act-order" ?disabled=${disabled} .checked=${this.actOrder} @change=${(e: Event) => (this.actOrder = (e.target as HTMLInputElement).checked)} />
            ${t.actOrder}</label
          >`
        : nothing}`;
  }

  private renderCheckpoint() {
    const t = TEXT();
    const r = this.checkpoint;
    if (!r) return nothing;
    const bytes = formatBytes(r.bytes);
    return html`<p data-testid="export-done" data-bytes=${r.bytes}>
        ${r.packed > 0 ? t.checkpointDone(bytes, r.packed, r.unconverted.length) : t.onnxDone(bytes)} ${this.note ?? ""}
      </p>
      ${r.unconverted.length > 0
        ? html`<ul data-testid="export-unconverted">
            ${r.unconverted.map((u) => html`<li>${t.unconverted(u.module, u.reason)}</li>`)}
          </ul>`
        : nothing}
      ${r.fallbacks.length > 0
        ? html`<ul data-testid="export-fallbacks">
            ${r.fallbacks.map((f) => html`<li>${f.tensor} → ${f.to}</li>`)}
          </ul>`
        : nothing}`;
  }
}

customElements.define("ql-export-panel", ExportPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-export-panel": ExportPanel;
  }
}
