/**
 * "Will it fit?": the memory estimator in the lab. Pick a preset or open a config.json, a precision, a
 * framework and a GPU; sliders for context, batch and GPU layers. Shows the components as a stacked bar
 * against the GPU presets, the answer (fits / does not fit / fits with n_gpu_layers = k), and the reference
 * measurements beside their estimates. Every number comes from src/memory; this component lays them out.
 */
import { LitElement, css, html, nothing } from "lit";
import { formatBytes } from "../common/format.ts";
import { isMemoryInputError, parseConfigText, type ModelConfig } from "../memory/config.ts";
import { estimateInference, FRAMEWORKS, type Framework, type MemoryEstimate } from "../memory/estimate.ts";
import { GPUS, resolveGpu } from "../memory/gpus.ts";
import { compareMeasurements, LONG_TEXT_TOKENS, MEASURED_VLLM_UTILIZATION } from "../memory/measurements.ts";
import { PRESETS, presetConfig } from "../memory/presets.ts";
import { resolvePrecision } from "../memory/precision.ts";
import { filePickerStyles, panelStyles } from "./styles.ts";
import { LangController, localized } from "./i18n.ts";

/** Every string the panel shows, in one place. */
export const MEMORY_STRINGS = localized(
  {
    title: "Will it fit?",
    model: "Model",
    openConfig: "Open config.json…",
    precision: "Precision",
    framework: "Framework",
    gpu: "GPU",
    context: "Context",
    batch: "Batch",
    gpuLayers: "GPU layers",
    tokens: "tokens",
    all: "all",
    fits: "fits",
    doesNotFit: "does not fit",
    params: "parameters",
    gpuTotal: "GPU",
    cpuTotal: "CPU",
    components: { weights: "weights", kv_cache: "KV cache", activations: "activations", overhead: "overhead" } as Record<string, string>,
    measurements: "Reference measurements (RTX 4090, MiB)",
    measurementsNote: `Long text assumed ${LONG_TEXT_TOKENS} tokens; vLLM at gpu_memory_utilization ${MEASURED_VLLM_UTILIZATION} (not recorded, inferred).`,
    setup: "setup",
    measured: "measured",
    estimate: "estimate",
    static: "static",
    peak: "peak",
    outOfMemory: "out of memory",
    badConfig: "Could not use that config",
    keptPrevious: "still showing the previous model.",
    sequences: (n: number) => `KV cache holds ${n} sequence${n === 1 ? "" : "s"} of this length`,
    /** The estimator's verdict ("fits", "fits with n_gpu_layers = 20", ...). */
    verdict: (v: string) => v,
  },
  {
    title: "放得下吗？",
    model: "模型",
    openConfig: "打开 config.json…",
    precision: "精度",
    framework: "框架",
    gpu: "GPU",
    context: "上下文",
    batch: "批大小",
    gpuLayers: "GPU 层数",
    tokens: "个词元",
    all: "全部",
    fits: "放得下",
    doesNotFit: "放不下",
    params: "参数",
    gpuTotal: "GPU",
    cpuTotal: "CPU",
    components: { weights: "权重", kv_cache: "KV 缓存", activations: "激活值", overhead: "额外开销" },
    measurements: "参考实测（RTX 4090，MiB）",
    measurementsNote: `长文本按 ${LONG_TEXT_TOKENS} 个词元计；vLLM 的 gpu_memory_utilization 为 ${MEASURED_VLLM_UTILIZATION}（未记录，为推断值）。`,
    setup: "配置",
    measured: "实测",
    estimate: "估算",
    static: "静态",
    peak: "峰值",
    outOfMemory: "显存不足",
    badConfig: "无法使用该配置",
    keptPrevious: "仍显示之前的模型。",
    sequences: (n: number) => `KV 缓存可容纳 ${n} 条此长度的序列`,
    verdict: (v: string) =>
      v
        .replace("does not fit (not even one layer on the GPU)", "放不下（GPU 上连一层都放不下）")
        .replace("does not fit (runs on the CPU)", "放不下（在 CPU 上运行）")
        .replace(/fits with n_gpu_layers = (\d+)/, "n_gpu_layers = $1 时放得下")
        .replace("does not fit;", "放不下；")
        .replace(/^does not fit$/, "放不下")
        .replace(/^fits$/, "放得下"),
  },
);

const PRECISIONS = ["fp16", "bf16", "f32", "int8", "nf4", "gptq-int4", "gptq-int8", "awq-int4", "q8_0", "q6_K", "q5_K_M", "q4_K_M", "q3_K_M", "q2_K"];
const COLORS: Record<string, string> = { weights: "#4f7cff", kv_cache: "#f0a030", activations: "#39b37a", overhead: "#9a8fb0" };
const CONTEXTS = [0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072];

export class MemoryPanel extends LitElement {
  static override properties = {
    loadedConfig: { attribute: false },
    config: { state: true },
    precision: { state: true },
    framework: { state: true },
    gpuId: { state: true },
    contextIndex: { state: true },
    batch: { state: true },
    gpuLayers: { state: true },
    error: { state: true },
  };
  /** The opened model's config.json (picked with its shards, or next to its URL), used when it changes. */
  declare loadedConfig: { name: string; text: string } | undefined;
  declare config: ModelConfig;
  declare precision: string;
  declare framework: Framework;
  declare gpuId: string;
  declare contextIndex: number;
  declare batch: number;
  /** undefined: all layers (llama.cpp/ollama). */
  declare gpuLayers: number | undefined;
  declare error: string | undefined;

  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.config = presetConfig("qwen2.5-7b");
    this.precision = "q4_K_M";
    this.framework = "llama.cpp";
    this.gpuId = "rtx-4090";
    this.contextIndex = CONTEXTS.indexOf(4096);
    this.batch = 1;
    this.gpuLayers = undefined;
    this.error = undefined;
  }

  static override styles = [
    panelStyles,
    filePickerStyles,
    css`
      label {
        display: flex;
        justify-content: space-between;
        gap: 0.5rem;
        font-size: 0.8rem;
        margin: 0.2rem 0;
        align-items: center;
      }
      label.file {
        justify-content: flex-start;
      }
      select,
      input[type="range"] {
        max-width: 10rem;
      }
      .bar {
        position: relative;
        display: flex;
        height: 1.1rem;
        background: var(--ql-border);
        margin: 0.5rem 0 1.2rem;
      }
      .bar span {
        height: 100%;
      }
      .tick {
        position: absolute;
        top: -0.15rem;
        bottom: -0.15rem;
        width: 2px;
        background: var(--ql-text);
      }
      .tick i {
        position: absolute;
        top: 1.35rem;
        font-size: 0.6rem;
        font-style: normal;
        white-space: nowrap;
        transform: translateX(-50%);
        color: var(--ql-muted);
      }
      .legend,
      .totals {
        font-size: 0.75rem;
        display: flex;
        flex-wrap: wrap;
        gap: 0.2rem 0.6rem;
      }
      .legend b {
        display: inline-block;
        width: 0.6rem;
        height: 0.6rem;
        margin-right: 0.2rem;
      }
      .verdict {
        font-weight: 700;
        margin: 0.4rem 0;
      }
      .verdict[data-fits="true"] {
        color: var(--ql-ok);
      }
      .verdict[data-fits="false"] {
        color: var(--ql-error);
      }
      .error {
        color: var(--ql-error);
        font-size: 0.8rem;
      }
      table {
        border-collapse: collapse;
        font-size: 0.7rem;
        width: 100%;
      }
      td,
      th {
        padding: 0.05rem 0.2rem;
        text-align: right;
      }
      td:first-child,
      th:first-child {
        text-align: left;
      }
      details {
        font-size: 0.75rem;
        margin-top: 0.5rem;
        overflow-x: auto;
      }
    `,
  ];

  private get context(): number {
    return CONTEXTS[this.contextIndex]!;
  }

  private estimate(): MemoryEstimate | string {
    try {
      // A precision the framework cannot load is reported by the estimator in one line, shown in place.
      return estimateInference(this.config, {
        precision: resolvePrecision(this.precision),
        framework: this.framework,
        context: this.context,
        batch: this.batch,
        gpu: resolveGpu(this.gpuId),
        ...(this.gpuLayers === undefined ? {} : { gpuLayers: this.gpuLayers }),
      });
    } catch (e) {
      return (e as Error).message;
    }
  }

  private async openConfig(e: Event): Promise<void> {
    const input = e.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = "";
    if (!file) return;
    try {
      this.config = parseConfigText(await file.text(), file.name);
      this.gpuLayers = undefined;
      this.error = undefined;
    } catch (err) {
      // The previous model stays.
      this.error = isMemoryInputError(err) ? err.message : String(err);
    }
  }

  override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has("loadedConfig") && this.loadedConfig) {
      try {
        this.config = parseConfigText(this.loadedConfig.text, this.loadedConfig.name);
        this.gpuLayers = undefined;
        this.error = undefined;
      } catch (err) {
        // The previous model stays.
        this.error = isMemoryInputError(err) ? err.message : String(err);
      }
    }
  }

  private selectPreset(id: string): void {
    this.config = presetConfig(id);
    this.gpuLayers = undefined;
    this.error = undefined;
  }

  override render() {
    const s = MEMORY_STRINGS();
    const e = this.estimate();
    return html`<section data-testid="memory-panel">
      <h2>${s.title}</h2>
      <label
        >${s.model}
        <select data-testid="memory-preset" @change=${(ev: Event) => this.selectPreset((ev.target as HTMLSelectElement).value)}>
          ${PRESETS.some((p) => p.id === this.config.name) ? nothing : html`<option selected>${this.config.name}</option>`}
          ${PRESETS.map((p) => html`<option value=${p.id} ?selected=${p.id === this.config.name}>${p.id}</option>`)}
        </select></label
      >
      <label class="file"
        >${s.openConfig}<input data-testid="memory-config-file" type="file" accept=".json,application/json" @change=${this.openConfig}
      /></label>
      ${this.error
        ? html`<p class="error" role="alert" data-testid="memory-error">${s.badConfig}: ${this.error} — ${s.keptPrevious}</p>`
        : nothing}
      ${this.select(s.precision, "memory-precision", PRECISIONS, this.precision, (v) => (this.precision = v))}
      ${this.select(s.framework, "memory-framework", [...FRAMEWORKS], this.framework, (v) => (this.framework = v as Framework))}
      ${this.select(s.gpu, "memory-gpu", GPUS.map((g) => g.id), this.gpuId, (v) => (this.gpuId = v))}
      ${this.slider(s.context, "memory-context", 0, CONTEXTS.length - 1, this.contextIndex, `${this.context} ${s.tokens}`, (v) => (this.contextIndex = v))}
      ${this.slider(s.batch, "memory-batch", 1, 64, this.batch, String(this.batch), (v) => (this.batch = v))}
      ${this.slider(
        s.gpuLayers,
        "memory-gpu-layers",
        0,
        this.config.numLayers + 1,
        this.gpuLayers ?? this.config.numLayers + 1,
        this.gpuLayers === undefined ? s.all : String(this.gpuLayers),
        (v) => (this.gpuLayers = v > this.config.numLayers ? undefined : v),
      )}
      ${typeof e === "string" ? html`<p class="error" data-testid="memory-estimate-error">${e}</p>` : this.renderEstimate(e)}
      ${this.renderMeasurements()}
    </section>`;
  }

  private select(label: string, testid: string, options: string[], value: string, set: (v: string) => void) {
    return html`<label
      >${label}
      <select data-testid=${testid} @change=${(ev: Event) => set((ev.target as HTMLSelectElement).value)}>
        ${options.map((o) => html`<option value=${o} ?selected=${o === value}>${o}</option>`)}
      </select></label
    >`;
  }

  private slider(label: string, testid: string, min: number, max: number, value: number, shown: string, set: (v: number) => void) {
    return html`<label
      >${label} <span data-testid=${`${testid}-value`}>${shown}</span>
      <input type="range" data-testid=${testid} min=${min} max=${max} .value=${String(value)} @input=${(ev: Event) => set(Number((ev.target as HTMLInputElement).value))}
    /></label>`;
  }

  private renderEstimate(e: MemoryEstimate) {
    const s = MEMORY_STRINGS();
    const scale = Math.max(e.totalBytes, ...GPUS.filter((g) => !g.unified).map((g) => g.usableBytes)) * 1.02;
    const parts = Object.entries(e.components).filter(([, b]) => b > 0);
    return html`<div class="bar" data-testid="memory-bar">
        ${parts.map(([name, b]) => html`<span title=${`${s.components[name] ?? name}: ${formatBytes(b)}`} style=${`width:${(100 * b) / scale}%;background:${COLORS[name] ?? "#888"}`}></span>`)}
        ${GPUS.filter((g) => !g.unified && g.id !== "rtx-3090" && g.id !== "a100-80").map(
          (g) => html`<span class="tick" style=${`left:${(100 * g.usableBytes) / scale}%`}><i>${g.id}</i></span>`,
        )}
      </div>
      <div class="legend">
        ${parts.map(([name, b]) => html`<span><b style=${`background:${COLORS[name] ?? "#888"}`}></b>${s.components[name] ?? name} ${formatBytes(b)}</span>`)}
      </div>
      <div class="totals" data-testid="memory-totals">
        <span>${(e.params / 1e9).toFixed(2)} B ${s.params}</span><span>${s.gpuTotal} ${formatBytes(e.gpuBytes)}</span><span>${s.cpuTotal} ${formatBytes(e.cpuBytes)}</span>
      </div>
      <p class="verdict" data-testid="memory-verdict" data-fits=${String(e.fits)}>${this.gpuId}: ${s.verdict(e.verdict)}</p>
      ${e.maxSequences !== undefined ? html`<p class="totals">${s.sequences(e.maxSequences)}</p>` : nothing}`;
  }

  private renderMeasurements() {
    const s = MEMORY_STRINGS();
    const mib = (x: number | undefined) => (x === undefined ? "—" : String(Math.round(x)));
    const pct = (x: number | undefined) => (x === undefined ? "" : `${x > 0 ? "+" : ""}${(x * 100).toFixed(0)}%`);
    return html`<details data-testid="memory-measurements">
      <summary>${s.measurements}</summary>
      <table>
        <tr><th>${s.setup}</th><th>${s.static}</th><th>${s.estimate}</th><th>${s.peak}</th><th>${s.estimate}</th></tr>
        ${compareMeasurements().map(
          (r) => html`<tr data-testid="measurement-row">
            <td>${r.measurement.framework} ${r.measurement.label}</td>
            <td>${mib(r.measurement.staticMiB)}</td>
            <td>${mib(r.staticEstimateMiB)} ${pct(r.staticError)}</td>
            <td>${r.measurement.peakMiB === undefined ? s.outOfMemory : mib(r.measurement.peakMiB)}</td>
            <td>${r.peakEstimate.fits ? `${mib(r.peakEstimateMiB)} ${pct(r.peakError)}` : s.doesNotFit}</td>
          </tr>`,
        )}
      </table>
      <p>${s.measurementsNote}</p>
    </details>`;
  }
}

customElements.define("ql-memory-panel", MemoryPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-memory-panel": MemoryPanel;
  }
}
