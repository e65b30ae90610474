/**
 * The comparison workspace: one tensor's weights and up to four formats side by side as error heatmaps
 * that share one colour scale and one zoom/pan (wheel to zoom at the pointer, drag to pan, double-click to
 * reset), with a hover that shows the weight's numbers under every format. The worker pools the view down to
 * the canvas (src/pipeline/heatmap-tensor.ts) and reads the hovered weight (src/pipeline/inspect-weight.ts);
 * this component only draws what comes back (modes and the shared scale come from src/quant/heatmap.ts).
 */
import { LitElement, css, html, nothing } from "lit";
import { formatMeasure, formatShape, formatValue } from "../common/format.ts";
import type { TensorRow } from "../formats/catalog.ts";
import {
  domainPosition,
  heatmapValues,
  histogramBinEdge,
  histogramSpan,
  outlierLines,
  sharedDomain,
  type HeatmapDomain,
  type HeatmapPooling,
  type HeatmapQuantity,
  type HeatmapView,
} from "../quant/heatmap.ts";
import type { FormatChoice, HeatmapPanel, TensorHeatmap, WeightInspection } from "../../workers/quant-worker-api.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import { CALIBRATED_CHOICES, calibratedMethod } from "../pipeline/calibrated-tensor.ts";
import { colourTable, cssGradient, NON_FINITE_RGB, type ColourMapName } from "./heatmap-colors.ts";
import type { LabClient } from "./lab-client.ts";
import { panelStyles } from "./styles.ts";
import { LangController, localized } from "./i18n.ts";
import "./explain-button.ts";
import "./spinner.ts";

/** The settings a link or preset restores, and the workspace reports when they change. */
export interface HeatmapSettings {
  formats?: string[];
  quantity?: HeatmapQuantity;
  pooling?: HeatmapPooling;
  view?: HeatmapView;
}

/** The names src/quant/block-params.ts gives block scales, in Chinese. */
const ZH_SCALE_NAMES: Record<string, string> = {
  "d (fp16 block scale)": "d（fp16 块缩放因子）",
  "d (f32 block scale)": "d（f32 块缩放因子）",
  "d·scale of the sub-block": "d·子块缩放因子",
  "scale (fp16)": "缩放因子（fp16）",
  "SCB (row absmax; y = q·SCB/127)": "SCB（行绝对值最大值；y = q·SCB/127）",
  "absmax of the 64-block": "64 权重块的绝对值最大值",
  "absmax of the 64-block (double-quantized)": "64 权重块的绝对值最大值（双重量化）",
  "group scale": "分组缩放因子",
  "group scale of W·s (AWQ)": "W·s 的分组缩放因子（AWQ）",
};

const TEXT = localized(
  {
    title: "Error heatmaps",
    pickTensor: "Select a tensor in the table to see its heatmaps.",
    formats: "Formats",
    none: "—",
    quantity: "Show",
    quantities: { abs: "|error|", rel: "relative error", signed: "signed error", scale: "block scales", weights: "weights" } as Record<HeatmapQuantity, string>,
    pooling: "Pool",
    poolings: { max: "max", mean: "mean" } as Record<HeatmapPooling, string>,
    colours: "Colours",
    log: "log scale",
    reset: "Reset zoom",
    weightsPanel: "original weights",
    computing: "Pooling the view on the GPU…",
    view: (v: HeatmapView, cellsR: number, cellsC: number) =>
      `rows ${v.row0}–${v.row0 + v.rows - 1}, columns ${v.col0}–${v.col0 + v.cols - 1} (${v.rows}×${v.cols} weights in ${cellsR}×${cellsC} cells)`,
    nonFinite: (n: number) => `${n} non-finite cell${n === 1 ? "" : "s"}`,
    ranOnCpu: "CPU reference",
    ranOnGpu: "GPU",
    calibratedGroup: "GPTQ / AWQ (calibrated)",
    synthetic: "synthetic calibration",
    syntheticWhy: "Calibrated on synthetic activations (random, with a few high-variance channels), not on the model's own layer inputs: open the model with its config.json and tokenizer.json for real ones.",
    modelRun: "model run",
    modelRunTitle: (tokens: number) => `Calibrated on the model's own layer inputs over its calibration text, ${tokens} tokens.`,
    fileRun: "activation file",
    fileRunTitle: (tokens: number) => `Calibrated on the layer inputs read from the activation files chosen above, ${tokens} tokens.`,
    syntheticTokens: (tokens: number) => `${tokens} synthetic tokens.`,
    cannot: "Cannot quantize this tensor:",
    fallback: (f: string) => `llama.cpp would use ${f} instead.`,
    hoverRow: "row",
    hoverCol: "column",
    hoverOriginal: "original",
    hoverValue: "decoded",
    hoverError: "error",
    hoverBlock: "block",
    hoverScale: "scale",
    hoverMin: "min",
    /** What a block's scale is (src/quant/block-params.ts names it). */
    scaleName: (name: string) => name,
    exportPng: "PNG",
    exportCsv: "CSV",
    exportJson: "JSON",
    exportTitle: (kind: string) => `Export this panel as ${kind}`,
    histogram: (weights: boolean): string => (weights ? "weights" : "errors (y − x)"),
    histogramAxis: "magnitude, log scale, 4 bins per octave; negative values left of the centre line",
    logCounts: "log counts",
    noScales: "This format has no blocks: no scales to map.",
    outliers: (rows: number, cols: number) => `outlier lines (largest |weight| ≥ 4× the median line): ${rows} row, ${cols} column groups`,
    hint: "Wheel: zoom at the pointer · drag: pan · double-click: reset. Every panel shares the zoom and the colour scale.",
  },
  {
    title: "误差热力图",
    pickTensor: "在表格中选择一个张量以查看其热力图。",
    formats: "格式",
    none: "—",
    quantity: "显示",
    quantities: { abs: "|误差|", rel: "相对误差", signed: "带符号误差", scale: "块缩放因子", weights: "权重" },
    pooling: "池化",
    poolings: { max: "最大值", mean: "均值" },
    colours: "配色",
    log: "对数刻度",
    reset: "重置缩放",
    weightsPanel: "原始权重",
    computing: "正在 GPU 上对视图做池化…",
    view: (v: HeatmapView, cellsR: number, cellsC: number) =>
      `第 ${v.row0}–${v.row0 + v.rows - 1} 行，第 ${v.col0}–${v.col0 + v.cols - 1} 列（${v.rows}×${v.cols} 个权重，${cellsR}×${cellsC} 个单元格）`,
    nonFinite: (n: number) => `${n} 个非有限值单元格`,
    ranOnCpu: "CPU 参考实现",
    ranOnGpu: "GPU",
    calibratedGroup: "GPTQ / AWQ（校准量化）",
    synthetic: "合成校准数据",
    syntheticWhy: "使用合成激活值（随机生成，含少数高方差通道）校准，而不是模型本身的层输入：连同 config.json 和 tokenizer.json 一起打开模型可获得真实激活值。",
    modelRun: "模型运行",
    modelRunTitle: (tokens: number) => `使用模型在校准文本上的各层输入校准，共 ${tokens} 个词元。`,
    fileRun: "激活文件",
    fileRunTitle: (tokens: number) => `使用上方所选激活文件中的层输入校准，共 ${tokens} 个词元。`,
    syntheticTokens: (tokens: number) => `共 ${tokens} 个合成词元。`,
    cannot: "无法量化此张量：",
    fallback: (f: string) => `llama.cpp 会改用 ${f}。`,
    hoverRow: "行",
    hoverCol: "列",
    hoverOriginal: "原值",
    hoverValue: "解码值",
    hoverError: "误差",
    hoverBlock: "块",
    hoverScale: "缩放因子",
    hoverMin: "最小值",
    scaleName: (name: string) => ZH_SCALE_NAMES[name] ?? name,
    exportPng: "PNG",
    exportCsv: "CSV",
    exportJson: "JSON",
    exportTitle: (kind: string) => `导出此面板为 ${kind}`,
    histogram: (weights: boolean) => (weights ? "权重" : "误差（y − x）"),
    histogramAxis: "幅值，对数刻度，每倍频程 4 个区间；负值位于中线左侧",
    logCounts: "计数取对数",
    noScales: "此格式没有分块：没有可绘制的缩放因子。",
    outliers: (rows: number, cols: number) => `离群行/列（最大 |权重| ≥ 中位行的 4 倍）：${rows} 行、${cols} 列组`,
    hint: "滚轮：以指针为中心缩放 · 拖动：平移 · 双击：重置。所有面板共享缩放和色标。",
  },
);

/** Formats shown first, where the tensor's rows allow them (int4 next to int8, as people compare). */
const DEFAULT_FORMATS = ["int4-g128", "int4-g32", "q4_K", "q4_0", "int8-channel", "nf4"];
const MAX_FORMATS = 4;
/** Canvas size in cells (CSS pixels); the view is pooled to at most this. */
const CANVAS_COLS = 320;
const CANVAS_ROWS = 200;
const ZOOM_STEP = 1.25;

export class HeatmapWorkspace extends LitElement {
  static override properties = {
    client: { attribute: false },
    tensor: { attribute: false },
    initial: { attribute: false },
    choices: { state: true },
    formats: { state: true },
    quantity: { state: true },
    pooling: { state: true },
    colours: { state: true },
    log: { state: true },
    logCounts: { state: true },
    view: { state: true },
    map: { state: true },
    progress: { state: true },
    error: { state: true },
    hover: { state: true },
  };
  declare client: LabClient | undefined;
  declare tensor: TensorRow | undefined;
  /** Settings to apply to the next tensor shown (once). */
  declare initial: HeatmapSettings | undefined;
  /** Every format with its row-length problem on this tensor (from the worker). */
  declare choices: FormatChoice[] | undefined;
  declare formats: string[];
  declare quantity: HeatmapQuantity;
  declare pooling: HeatmapPooling;
  declare colours: ColourMapName;
  declare log: boolean;
  declare logCounts: boolean;
  declare view: HeatmapView | undefined;
  declare map: TensorHeatmap | undefined;
  declare progress: number | undefined;
  declare error: string | undefined;
  declare hover: WeightInspection | undefined;

  private shownTensor: TensorRow | undefined;
  private appliedInitial: HeatmapSettings | undefined;
  private reported = "";
  private jobId: number | undefined;
  private requestTimer: ReturnType<typeof setTimeout> | undefined;
  private hoverSeq = 0;
  private drag: { x: number; y: number; view: HeatmapView } | undefined;
  private readonly langController = new LangController(this);

  static override styles = [
    panelStyles,
    css`
      .controls {
        display: flex;
        flex-wrap: wrap;
        gap: 0.4rem 0.9rem;
        align-items: center;
        font-size: 0.82rem;
        margin-bottom: 0.5rem;
      }
      .controls label {
        display: inline-flex;
        gap: 0.3rem;
        align-items: center;
      }
      select,
      button {
        font: inherit;
        font-size: 0.8rem;
      }
      .panels {
        display: grid;
        grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));
        gap: 0.7rem;
      }
      figure {
        margin: 0;
        border: 1px solid var(--ql-border);
        border-radius: 6px;
        padding: 0.4rem;
        background: var(--ql-bg, transparent);
      }
      figcaption {
        display: flex;
        justify-content: space-between;
        gap: 0.5rem;
        font-size: 0.78rem;
        margin-bottom: 0.3rem;
      }
      figcaption strong {
        font-family: var(--ql-mono);
      }
      figcaption span {
        color: var(--ql-muted);
      }
      canvas {
        width: 320px; /* CANVAS_COLS */
        height: 200px; /* CANVAS_ROWS */
        image-rendering: pixelated;
        cursor: crosshair;
        display: block;
        touch-action: none;
      }
      .failed {
        width: 320px;
        min-height: 200px;
        font-size: 0.8rem;
        color: var(--ql-error);
        display: flex;
        flex-direction: column;
        justify-content: center;
        gap: 0.3rem;
      }
      .legend {
        display: flex;
        align-items: center;
        gap: 0.5rem;
        font-size: 0.78rem;
        margin: 0.5rem 0;
        flex-wrap: wrap;
      }
      .bar {
        width: 220px;
        height: 12px;
        border-radius: 2px;
        border: 1px solid var(--ql-border);
      }
      .swatch {
        display: inline-block;
        width: 12px;
        height: 12px;
        background: rgb(255, 0, 255); /* NON_FINITE_RGB */
        vertical-align: middle;
        margin-right: 0.2rem;
      }
      .meta {
        font-size: 0.78rem;
        color: var(--ql-muted);
      }
      .tooltip {
        font-size: 0.78rem;
        font-family: var(--ql-mono);
        border: 1px solid var(--ql-border);
        border-radius: 6px;
        padding: 0.35rem 0.5rem;
        margin-top: 0.5rem;
      }
      .tooltip table {
        border-collapse: collapse;
      }
      .tooltip td,
      .tooltip th {
        padding: 0 0.6rem 0 0;
        text-align: right;
      }
      .tooltip th:first-child,
      .tooltip td:first-child {
        text-align: left;
      }
      .synthetic,
      .model-run {
        font-size: 0.7rem;
        font-weight: 700;
        padding: 0 0.4rem;
        border-radius: 999px;
        background: var(--ql-warn-bg);
        color: var(--ql-warn);
      }
      .model-run {
        background: none;
        color: var(--ql-ok);
      }
      .plot {
        position: relative;
        width: 320px;
      }
      canvas.strip {
        height: 32px;
      }
      .tick {
        position: absolute;
        background: var(--ql-error);
      }
      .tick.row {
        left: -6px;
        width: 5px;
        height: 2px;
      }
      .tick.col {
        top: -6px;
        width: 2px;
        height: 5px;
      }
      .hist {
        margin-top: 0.35rem;
        width: 320px;
      }
      .hist svg {
        display: block;
        fill: var(--ql-accent);
      }
      .hist line.zero {
        stroke: var(--ql-muted);
        stroke-dasharray: 2 2;
      }
      .hist .axis {
        display: flex;
        justify-content: space-between;
        font-size: 0.7rem;
        color: var(--ql-muted);
      }
      .export button {
        padding: 0 0.3rem;
      }
    `,
  ];

  constructor() {
    super();
    this.formats = [];
    this.quantity = "abs";
    this.pooling = "max";
    this.colours = "viridis";
    this.log = false;
    this.logCounts = true;
  }

  override disconnectedCallback(): void {
    this.stopJob();
    super.disconnectedCallback();
  }

  override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has("tensor") && this.tensor !== this.shownTensor) {
      this.shownTensor = this.tensor;
      this.stopJob();
      this.map = undefined;
      this.hover = undefined;
      this.error = undefined;
      if (this.tensor) void this.start(this.tensor);
    }
  }

  /** A new tensor: its format choices, the formats to show (the previous ones where they fit), the whole view. */
  private async start(tensor: TensorRow): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      const choices = await client.quantFormats({ shape: tensor.shape, params: tensor.params });
      if (tensor !== this.tensor) return;
      this.choices = choices;
      const fits = (id: string) => choices.some((c) => c.id === id && !c.rowLengthProblem);
      const known = (f: string) => choices.some((c) => c.id === f) || calibratedMethod(f) !== undefined;
      const initial = this.initial !== this.appliedInitial ? this.initial : undefined;
      this.appliedInitial = this.initial;
      const keep = (initial?.formats ?? this.formats).filter(known).slice(0, MAX_FORMATS);
      this.formats = keep.length > 0 ? keep : pickDefaults(fits);
      if (initial?.quantity) this.quantity = initial.quantity;
      if (initial?.pooling) this.pooling = initial.pooling;
      const full = fullView(tensor);
      const v = initial?.view;
      this.view = v && v.row0 + v.rows <= full.rows && v.col0 + v.cols <= full.cols ? v : full;
      this.scheduleRequest(0);
    } catch (e) {
      if (tensor === this.tensor) this.error = errorText(e);
    }
  }

  override updated(): void {
    this.draw();
    // The lab keeps these in the page URL.
    const settings: HeatmapSettings = { formats: this.formats, quantity: this.quantity, pooling: this.pooling, view: this.view };
    const key = JSON.stringify(settings);
    if (this.tensor && key !== this.reported) {
      this.reported = key;
      this.dispatchEvent(new CustomEvent<HeatmapSettings>("heatmap-settings", { detail: settings, bubbles: true, composed: true }));
    }
  }

  /** Asks the worker for the current view (debounced while zooming and panning). */
  private scheduleRequest(delayMs = 120): void {
    clearTimeout(this.requestTimer);
    this.requestTimer = setTimeout(() => void this.request(), delayMs);
  }

  private stopJob(): void {
    clearTimeout(this.requestTimer);
    if (this.jobId !== undefined) void this.client?.cancelQuantize(this.jobId).catch(() => {});
    this.jobId = undefined;
  }

  private async request(): Promise<void> {
    const { client, tensor, view } = this;
    if (!client || !tensor || !view) return;
    this.stopJob();
    this.progress = 0;
    const job = client.heatmap(
      { tensor: tensor.name, formats: this.formats, view, canvas: { cols: CANVAS_COLS, rows: CANVAS_ROWS } },
      (done) => {
        if (this.jobId === job.jobId) this.progress = done;
      },
    );
    this.jobId = job.jobId;
    try {
      const map = await job.result;
      if (this.jobId !== job.jobId) return;
      this.map = map;
      this.error = undefined;
    } catch (e) {
      if (this.jobId !== job.jobId || e instanceof CancelledError) return;
      this.error = errorText(e);
    } finally {
      if (this.jobId === job.jobId) {
        this.jobId = undefined;
        this.progress = undefined;
      }
    }
  }

  /** The values of every panel in the current mode (the weights panel shows weights whatever the mode). */
  private panelValues(): Array<{ panel: HeatmapPanel; values?: Float32Array }> {
    if (!this.map) return [];
    return this.map.panels.map((panel, i) => ({
      panel,
      values: panel.ok ? heatmapValues(panel.cells, i === 0 ? "weights" : this.quantity, this.pooling) : undefined,
    }));
  }

  private domains(): { weights?: HeatmapDomain; formats?: HeatmapDomain } {
    const all = this.panelValues();
    const weights = all[0]?.values;
    const formats = all.slice(1).flatMap((p) => (p.values ? [p.values] : []));
    return {
      weights: weights ? sharedDomain([weights], "weights", false) : undefined,
      formats: formats.length > 0 ? sharedDomain(formats, this.quantity, this.log) : undefined,
    };
  }

  private draw(): void {
    if (!this.map) return;
    const { gridRows, gridCols } = this.map.grid;
    const domains = this.domains();
    this.panelValues().forEach(({ panel, values }, i) => {
      const canvas = this.renderRoot.querySelector<HTMLCanvasElement>(`canvas[data-panel="${i}"]`);
      if (!canvas || !values) return;
      const domain = i === 0 ? domains.weights! : domains.formats!;
      const quantity = i === 0 ? "weights" : this.quantity;
      const lut = colourTable(this.colours, quantity === "weights" || quantity === "signed");
      canvas.width = gridCols;
      canvas.height = gridRows;
      const ctx = canvas.getContext("2d");
      if (!ctx) return;
      const image = ctx.createImageData(gridCols, gridRows);
      for (let k = 0; k < values.length; k++) {
        const t = domainPosition(values[k]!, domain);
        const o = k * 4;
        if (Number.isNaN(t)) image.data.set(NON_FINITE_RGB, o);
        else image.data.set(lut.subarray(Math.round(t * 255) * 3, Math.round(t * 255) * 3 + 3), o);
        image.data[o + 3] = 255;
      }
      ctx.putImageData(image, 0, 0);
      canvas.dataset["format"] = panel.format;
    });
  }

  // ---- zoom, pan, hover -------------------------------------------------------------------------------

  /** The weight under a pointer position on a canvas. */
  private weightAt(canvas: HTMLCanvasElement, clientX: number, clientY: number): { row: number; col: number } | undefined {
    const view = this.map?.grid.view;
    if (!view) return undefined;
    const box = canvas.getBoundingClientRect();
    const fx = (clientX - box.left) / box.width;
    const fy = (clientY - box.top) / box.height;
    if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) return undefined;
    return { row: view.row0 + Math.floor(fy * view.rows), col: view.col0 + Math.floor(fx * view.cols) };
  }

  private onWheel(e: WheelEvent): void {
    const canvas = e.currentTarget as HTMLCanvasElement;
    const { tensor, view } = this;
    if (!tensor || !view) return;
    e.preventDefault();
    const box = canvas.getBoundingClientRect();
    const fx = Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
    const fy = Math.min(1, Math.max(0, (e.clientY - box.top) / box.height));
    const factor = e.deltaY < 0 ? 1 / ZOOM_STEP : ZOOM_STEP;
    this.setView(zoomed(fullView(tensor), view, factor, fx, fy));
  }

  private onPointerDown(e: PointerEvent): void {
    if (!this.view) return;
    (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
    this.drag = { x: e.clientX, y: e.clientY, view: this.view };
  }

  private onPointerMove(e: PointerEvent): void {
    const canvas = e.currentTarget as HTMLCanvasElement;
    if (this.drag && this.tensor && e.buttons & 1) {
      const box = canvas.getBoundingClientRect();
      const { view } = this.drag;
      const dRows = Math.round(((e.clientY - this.drag.y) / box.height) * view.rows);
      const dCols = Math.round(((e.clientX - this.drag.x) / box.width) * view.cols);
      if (dRows !== 0 || dCols !== 0) this.setView(clampView(fullView(this.tensor), { ...view, row0: view.row0 - dRows, col0: view.col0 - dCols }));
      return;
    }
    const at = this.weightAt(canvas, e.clientX, e.clientY);
    if (at) void this.inspect(at.row, at.col);
  }

  private onPointerUp(): void {
    this.drag = undefined;
  }

  private setView(view: HeatmapView): void {
    const v = this.view;
    if (v && v.row0 === view.row0 && v.col0 === view.col0 && v.rows === view.rows && v.cols === view.cols) return;
    this.view = view;
    this.scheduleRequest();
  }

  private async inspect(row: number, col: number): Promise<void> {
    const { client, tensor } = this;
    if (!client || !tensor) return;
    if (this.hover && this.hover.row === row && this.hover.col === col) return;
    const seq = ++this.hoverSeq;
    try {
      const result = await client.inspectWeight(tensor.name, this.formats, row, col);
      if (seq === this.hoverSeq) this.hover = result;
    } catch {
      // A hover that fails (the model changed under it) shows nothing.
    }
  }

  // ---- export -----------------------------------------------------------------------------------------

  private download(name: string, href: string): void {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    a.click();
  }

  private exportPng(i: number): void {
    const canvas = this.renderRoot.querySelector<HTMLCanvasElement>(`canvas[data-panel="${i}"]`);
    if (canvas) this.download(`${this.baseName(i)}.png`, canvas.toDataURL("image/png"));
  }

  private exportNumbers(i: number, kind: "csv" | "json"): void {
    const map = this.map;
    const entry = this.panelValues()[i];
    if (!map || !entry?.values) return;
    const { gridRows, gridCols, view } = map.grid;
    const quantity = i === 0 ? "weights" : this.quantity;
    let text: string;
    if (kind === "json") {
      text = JSON.stringify({ tensor: map.tensor, format: entry.panel.format, quantity, pooling: this.pooling, view, gridRows, gridCols, values: Array.from(entry.values, (v) => (Number.isNaN(v) ? null : v)) });
    } else {
      const lines = [`# ${map.tensor} ${entry.panel.format} ${quantity} ${this.pooling}; rows ${view.row0}+${view.rows}, cols ${view.col0}+${view.cols}; ${gridRows}x${gridCols} cells`];
      for (let r = 0; r < gridRows; r++) lines.push(Array.from(entry.values.subarray(r * gridCols, (r + 1) * gridCols), (v) => (Number.isNaN(v) ? "NaN" : String(v))).join(","));
      text = lines.join("\n");
    }
    const url = URL.createObjectURL(new Blob([text], { type: kind === "json" ? "application/json" : "text/csv" }));
    this.download(`${this.baseName(i)}.${kind}`, url);
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  private baseName(i: number): string {
    const format = this.map?.panels[i]?.format ?? "panel";
    return `${this.map?.tensor ?? "tensor"}-${format}-${i === 0 ? "weights" : this.quantity}`.replace(/[^\w.-]+/g, "_");
  }

  // ---- rendering --------------------------------------------------------------------------------------

  override render() {
    const t = TEXT();
    const tensor = this.tensor;
    if (!tensor) return html`<h2>${t.title}</h2><p class="meta">${t.pickTensor}</p>`;
    const domains = this.domains();
    return html`
      <h2>${t.title} · <span>${tensor.name}</span> <span class="meta">${formatShape(tensor.shape)}</span></h2>
      ${this.renderControls()}
      ${this.renderLegend(domains)}
      ${this.progress !== undefined
        ? html`<p class="meta" role="status"><ql-spinner></ql-spinner> ${t.computing} ${Math.round(this.progress * 100)}%</p>`
        : nothing}
      ${this.error ? html`<p class="failed" role="alert" translate="no">${this.error}</p>` : nothing}
      ${this.map
        ? html`<p class="meta" data-testid="heatmap-view">${t.view(this.map.grid.view, this.map.grid.gridRows, this.map.grid.gridCols)} · ${t.hint}</p>
            ${this.renderOutlierSummary()}
            <div class="panels">${this.map.panels.map((p, i) => this.renderPanel(p, i))}</div>`
        : nothing}
      ${this.renderHover()}
    `;
  }

  private renderControls() {
    const t = TEXT();
    const choices = this.choices ?? [];
    const slots = Array.from({ length: MAX_FORMATS }, (_, i) => this.formats[i] ?? "");
    return html`<div class="controls">
      <span>${t.formats}</span>
      ${slots.map(
        (current, slot) => html`<span
          ><select
            data-testid=${`heatmap-format-${slot}`}
            aria-label=${`${t.formats} ${slot + 1}`}
            @change=${(e: Event) => this.setFormat(slot, (e.target as HTMLSelectElement).value)}
          >
            <option value="" ?selected=${current === ""}>${t.none}</option>
            ${choices.map((c) => html`<option value=${c.id} ?selected=${c.id === current}>${c.id}${c.rowLengthProblem ? " ⚠" : ""}</option>`)}
            <optgroup label=${t.calibratedGroup}>
              ${CALIBRATED_CHOICES.map((id) => html`<option value=${id} ?selected=${id === current}>${id}</option>`)}
            </optgroup>
          </select>
          ${current ? html`<ql-explain topic=${current}></ql-explain>` : nothing}</span
        >`,
      )}
      <label
        >${t.quantity}
        <select data-testid="heatmap-quantity" @change=${(e: Event) => (this.quantity = (e.target as HTMLSelectElement).value as HeatmapQuantity)}>
          ${(Object.keys(t.quantities) as HeatmapQuantity[]).map(
            (q) => html`<option value=${q} ?selected=${q === this.quantity}>${t.quantities[q]}</option>`,
          )}
        </select></label
      ><ql-explain data-testid="explain-quantity" topic=${`heatmap:${this.quantity}`}></ql-explain>
      <label
        >${t.pooling}
        <select data-testid="heatmap-pooling" @change=${(e: Event) => (this.pooling = (e.target as HTMLSelectElement).value as HeatmapPooling)}>
          ${(Object.keys(t.poolings) as HeatmapPooling[]).map((p) => html`<option value=${p} ?selected=${p === this.pooling}>${t.poolings[p]}</option>`)}
        </select></label
      ><ql-explain topic="heatmap:pooling"></ql-explain>
      <label
        >${t.colours}
        <select @change=${(e: Event) => (this.colours = (e.target as HTMLSelectElement).value as ColourMapName)}>
          ${(["viridis", "inferno", "cividis"] as const).map((c) => html`<option value=${c} ?selected=${c === this.colours}>${c}</option>`)}
        </select></label
      >
      <label><input type="checkbox" .checked=${this.log} @change=${(e: Event) => (this.log = (e.target as HTMLInputElement).checked)} />${t.log}</label
      ><ql-explain topic="heatmap:log"></ql-explain>
      <label
        ><input type="checkbox" .checked=${this.logCounts} @change=${(e: Event) => (this.logCounts = (e.target as HTMLInputElement).checked)} />${t.logCounts}</label
      >
      <button type="button" @click=${() => this.tensor && this.setView(fullView(this.tensor))}>${t.reset}</button>
    </div>`;
  }

  private setFormat(slot: number, id: string): void {
    const next = [...this.formats];
    if (id === "") next.splice(slot, 1);
    else next[Math.min(slot, next.length)] = id;
    this.formats = [...new Set(next)];
    this.hover = undefined;
    this.scheduleRequest(0);
  }

  private renderLegend(d: { weights?: HeatmapDomain; formats?: HeatmapDomain }) {
    const t = TEXT();
    const f = d.formats;
    if (!f) return nothing;
    const lut = colourTable(this.colours, f.signed);
    const nonFinite = f.nonFinite + (d.weights?.nonFinite ?? 0);
    return html`<div class="legend" data-testid="heatmap-legend">
      <span>${t.quantities[this.quantity]} (${t.poolings[this.pooling]})</span>
      <span data-testid="legend-lo">${formatMeasure(f.log ? f.lo : f.lo)}</span>
      <div class="bar" style="background: ${cssGradient(lut)}"></div>
      <span data-testid="legend-hi">${formatMeasure(f.hi)}</span>
      ${f.log ? html`<span class="meta">(${t.log})</span>` : nothing}
      ${nonFinite > 0 ? html`<span data-testid="legend-nonfinite"><span class="swatch"></span>${t.nonFinite(nonFinite)}</span>` : nothing}
    </div>`;
  }

  private renderPanel(panel: HeatmapPanel, i: number) {
    const t = TEXT();
    const title = i === 0 ? t.weightsPanel : panel.format;
    if (!panel.ok) {
      return html`<figure data-testid="heatmap-panel" data-format=${panel.format}>
        <figcaption><strong>${title}</strong></figcaption>
        <div class="failed" role="note" data-testid="heatmap-failure">
          <span>${t.cannot}</span><span translate="no">${panel.error.message}</span>
          ${panel.error.fallback ? html`<span>${t.fallback(panel.error.fallback)}</span>` : nothing}
        </div>
      </figure>`;
    }
    return html`<figure data-testid="heatmap-panel" data-format=${panel.format}>
      <figcaption>
        <strong>${title} ${i > 0 ? html`<ql-explain topic=${panel.format}></ql-explain>` : nothing}</strong>
        <span title=${panel.why ?? ""} translate="no">${panel.ranOn === "gpu" ? t.ranOnGpu : t.ranOnCpu}</span>
        ${calibratedMethod(panel.format)
          ? panel.calibration?.kind === "model"
            ? html`<span class="model-run" data-testid="model-calibration" title=${t.modelRunTitle(panel.calibration.tokens)}>${t.modelRun}</span>`
            : panel.calibration?.kind === "file"
            ? html`<span class="model-run" data-testid="file-calibration" title=${t.fileRunTitle(panel.calibration.tokens)}>${t.fileRun}</span>`
            : html`<span class="synthetic" data-testid="synthetic-calibration" title=${`${t.syntheticWhy}${panel.calibration ? `\n${t.syntheticTokens(panel.calibration.tokens)}` : ""}`}>${t.synthetic}</span>`
          : nothing}
        <span class="export">
          <button type="button" title=${t.exportTitle(t.exportPng)} @click=${() => this.exportPng(i)}>${t.exportPng}</button>
          <button type="button" title=${t.exportTitle(t.exportCsv)} @click=${() => this.exportNumbers(i, "csv")}>${t.exportCsv}</button>
          <button type="button" title=${t.exportTitle(t.exportJson)} @click=${() => this.exportNumbers(i, "json")}>${t.exportJson}</button>
        </span>
      </figcaption>
      <div class="plot">
      ${this.renderOutlierTicks()}
      <canvas
        class=${this.map?.grid.view.rows === 1 ? "strip" : ""}
        data-panel=${i}
        data-testid="heatmap-canvas"
        @wheel=${(e: WheelEvent) => this.onWheel(e)}
        @pointerdown=${(e: PointerEvent) => this.onPointerDown(e)}
        @pointermove=${(e: PointerEvent) => this.onPointerMove(e)}
        @pointerup=${() => this.onPointerUp()}
        @pointerleave=${() => this.onPointerUp()}
        @dblclick=${() => this.tensor && this.setView(fullView(this.tensor))}
      ></canvas>
      </div>
      ${i > 0 && this.quantity === "scale" && !panel.cells.scaleCount ? html`<p class="meta">${t.noScales}</p>` : nothing}
      ${this.renderHistogram(panel.histogram, i === 0)}
    </figure>`;
  }

  private renderOutlierSummary() {
    const t = TEXT();
    const weights = this.map?.panels[0];
    if (!weights?.ok) return nothing;
    const { rows, cols } = outlierLines(weights.cells);
    if (rows.length + cols.length === 0) return nothing;
    return html`<p class="meta" data-testid="outlier-summary">${t.outliers(rows.length, cols.length)}</p>`;
  }

  /** Marks beside every panel for the outlier rows (left edge) and columns (top edge) of the weights. */
  private renderOutlierTicks() {
    const weights = this.map?.panels[0];
    if (!weights?.ok) return nothing;
    const { rows, cols } = outlierLines(weights.cells);
    const { gridRows, gridCols } = this.map!.grid;
    return html`${rows.map((r) => html`<div class="tick row" data-testid="outlier-row" style="top: ${((r + 0.5) / gridRows) * 100}%"></div>`)}
    ${cols.map((c) => html`<div class="tick col" data-testid="outlier-col" style="left: ${((c + 0.5) / gridCols) * 100}%"></div>`)}`;
  }

  /** Bars over the bins every panel's histogram spans (so panels compare), counts linear or log. */
  private renderHistogram(bins: Float64Array, isWeights: boolean) {
    const t = TEXT();
    const span = this.histogramRange(isWeights);
    if (!span) return nothing;
    const n = span.last - span.first + 1;
    const height = 48;
    const scale = (c: number) => (this.logCounts ? Math.log10(1 + c) / Math.log10(1 + span.max) : c / span.max);
    const bars: ReturnType<typeof html>[] = [];
    for (let b = span.first; b <= span.last; b++) {
      const c = bins[b]!;
      if (c === 0) continue;
      const h = Math.max(1, scale(c) * height);
      bars.push(html`<rect x=${((b - span.first) / n) * 320} y=${height - h} width=${Math.max(1, 320 / n)} height=${h}><title>${histogramLabel(b)}: ${c}</title></rect>`);
    }
    return html`<div class="hist" data-testid="heatmap-histogram" title=${t.histogramAxis}>
      <svg viewBox="0 0 320 ${height}" width="320" height=${height} preserveAspectRatio="none">
        <line x1=${((1024 - span.first) / n) * 320} x2=${((1024 - span.first) / n) * 320} y1="0" y2=${height} class="zero"></line>
        ${bars}
      </svg>
      <div class="axis"><span>${histogramLabel(span.first)}</span><span>${t.histogram(isWeights)}</span><span>${histogramLabel(span.last)}</span></div>
    </div>`;
  }

  /** The bins shown: the union of the format panels' spans (errors), or the weights panel's own. */
  private histogramRange(isWeights: boolean): { first: number; last: number; max: number } | undefined {
    const panels = (this.map?.panels ?? []).filter((p, i) => p.ok && (i === 0) === isWeights);
    let first = Infinity;
    let last = -Infinity;
    let max = 0;
    for (const p of panels) {
      if (!p.ok) continue;
      const s = histogramSpan(p.histogram);
      if (!s) continue;
      first = Math.min(first, s.first);
      last = Math.max(last, s.last);
      for (let b = s.first; b <= s.last; b++) max = Math.max(max, p.histogram[b]!);
    }
    return Number.isFinite(first) ? { first, last, max } : undefined;
  }

  private renderHover() {
    const t = TEXT();
    const h = this.hover;
    if (!h) return nothing;
    return html`<div class="tooltip" data-testid="heatmap-hover" data-row=${h.row} data-col=${h.col}>
      ${t.hoverRow} ${h.row}, ${t.hoverCol} ${h.col} · ${t.hoverOriginal}
      <span data-testid="hover-original">${formatValue(h.value)}</span>
      <table>
        <tr><th></th><th>${t.hoverValue}</th><th>${t.hoverError}</th><th>${t.hoverBlock}</th><th>${t.hoverScale}</th><th>${t.hoverMin}</th></tr>
        ${h.formats.map((f) =>
          f.ok
            ? html`<tr data-testid="hover-format" data-format=${f.format} data-value=${String(f.value)} data-error=${String(f.error)}>
                <td>${f.format}</td>
                <td>${formatValue(f.value)}</td>
                <td>${formatValue(f.error)}</td>
                <td>${f.block ? `${f.block.index}${f.block.sub !== undefined ? `.${f.block.sub}` : ""}` : t.none}</td>
                <td title=${f.block ? t.scaleName(f.block.scaleName) : ""}>${f.block ? formatValue(f.block.scale) : t.none}</td>
                <td>${f.block?.min !== undefined ? formatValue(f.block.min) : t.none}</td>
              </tr>`
            : html`<tr data-testid="hover-format" data-format=${f.format}><td>${f.format}</td><td colspan="5" translate="no">${f.error.message}</td></tr>`,
        )}
      </table>
    </div>`;
  }
}

/** "−1.2e-3" for a negative bin's edge, "+4.5e-1" for a positive one. */
function histogramLabel(bin: number): string {
  const edge = histogramBinEdge(bin);
  return `${bin < 1024 ? "−" : "+"}${edge === 0 ? "0" : edge.toExponential(1)}`;
}

function pickDefaults(fits: (id: string) => boolean | undefined): string[] {
  const out: string[] = [];
  for (const id of DEFAULT_FORMATS) {
    if (out.length >= MAX_FORMATS) break;
    // One int4 grouping is enough; int8 always.
    if (id === "int4-g32" && out.includes("int4-g128")) continue;
    if (fits(id)) out.push(id);
  }
  return out;
}

/** The whole tensor as a view (a 1-D tensor is one row: a strip). */
function fullView(t: TensorRow): HeatmapView {
  const cols = t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
  const rows = cols === 0 ? 0 : t.params / cols;
  return { row0: 0, col0: 0, rows, cols };
}

/** A view zoomed by `factor` (<1 zooms in) about the point at fractions (fx, fy) of the current one. */
function zoomed(full: HeatmapView, v: HeatmapView, factor: number, fx: number, fy: number): HeatmapView {
  const rows = Math.max(1, Math.min(full.rows, Math.round(v.rows * factor)));
  const cols = Math.max(1, Math.min(full.cols, Math.round(v.cols * factor)));
  const row0 = Math.round(v.row0 + fy * v.rows - fy * rows);
  const col0 = Math.round(v.col0 + fx * v.cols - fx * cols);
  return clampView(full, { row0, col0, rows, cols });
}

function clampView(full: HeatmapView, v: HeatmapView): HeatmapView {
  return {
    rows: v.rows,
    cols: v.cols,
    row0: Math.max(0, Math.min(full.rows - v.rows, v.row0)),
    col0: Math.max(0, Math.min(full.cols - v.cols, v.col0)),
  };
}

customElements.define("ql-heatmap-workspace", HeatmapWorkspace);

declare global {
  interface HTMLElementTagNameMap {
    "ql-heatmap-workspace": HeatmapWorkspace;
  }
}
