/**
 * What the opened model calibrates on (GPTQ / AWQ and the output errors of the Quantize, Heatmaps and Whole
 * model views): by default the model run on the lab's calibration text; the user may pick a text of their own
 * (the model is run on it) or raw activation files (float32 [tokens, in], one per layer input, named after the
 * layer). The worker checks the choice (workers/worker-calibration.ts); a choice it refuses shows why and the
 * previous calibration stays. Results already shown keep the label of what they were computed on.
 */
import { LitElement, css, html, nothing, type PropertyValues } from "lit";
import type { CalibrationChoice, CalibrationChosen } from "../../workers/quant-worker-api.ts";
import { errorText } from "../common/error-text.ts";
import { CancelledError } from "../../workers/wire-error.ts";
import { LangController, localized } from "./i18n.ts";
import type { LabClient } from "./lab-client.ts";
import "./spinner.ts";
import { buttonStyles, filePickerStyles } from "./styles.ts";

const TEXT = localized(
  {
    heading: "Calibration",
    what: "what GPTQ / AWQ and the output errors use",
    defaultLabel: "the model run on the lab's calibration text (synthetic activations when the model cannot run)",
    text: "Use a text…",
    files: "Use activation files…",
    filesHint:
      "float32 [tokens, in], named after the layer (model.layers.0.self_attn.q_proj.weight.f32, or layers.0.attn_in.f32); a file named otherwise calibrates the selected tensor",
    reset: "Back to the default",
    refused: (why: string) => `Not used: ${why}. The previous calibration stays.`,
    checking: "checking…",
  },
  {
    heading: "校准",
    what: "GPTQ / AWQ 与输出误差所用的激活",
    defaultLabel: "模型在实验室自带校准文本上的运行（模型无法运行时使用合成激活）",
    text: "使用文本…",
    files: "使用激活文件…",
    filesHint: "float32 [词元数, 输入宽度]，以层命名（model.layers.0.self_attn.q_proj.weight.f32 或 layers.0.attn_in.f32）；其他名称的文件用于当前选中的张量",
    reset: "恢复默认",
    refused: (why: string) => `未采用：${why}。仍使用之前的校准。`,
    checking: "检查中…",
  },
);

export class CalibrationSource extends LitElement {
  static override properties = {
    client: { attribute: false },
    modelId: { attribute: false },
    selected: { attribute: false },
    chosen: { state: true },
    error: { state: true },
    busy: { state: true },
  };
  declare client: LabClient | undefined;
  /** Changes with every open: the choice belongs to one opened model. */
  declare modelId: unknown;
  /** The tensor shown: a file named after no layer calibrates it. */
  declare selected: string | undefined;
  declare chosen: CalibrationChosen | undefined;
  declare error: string | undefined;
  declare busy: boolean;

  static override styles = [
    buttonStyles,
    filePickerStyles,
    css`
      :host {
        display: block;
        font-size: 0.85rem;
        margin: 0.25rem 0 0.5rem;
      }
      .row {
        display: flex;
        flex-wrap: wrap;
        gap: 0.4rem 0.9rem;
        align-items: baseline;
      }
      strong {
        font-weight: 600;
      }
      .current {
        color: var(--ql-muted);
      }
      .current.chosen {
        color: inherit;
      }
      .error {
        color: var(--ql-error);
        margin: 0.25rem 0 0;
      }
      button {
        padding: 0.1rem 0.6rem;
      }
    `,
  ];

  constructor() {
    super();
    new LangController(this);
    this.busy = false;
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("modelId")) {
      this.chosen = undefined;
      this.error = undefined;
    }
  }

  private async choose(choice: CalibrationChoice): Promise<void> {
    if (!this.client) return;
    const modelId = this.modelId;
    this.busy = true;
    this.error = undefined;
    try {
      const chosen = await this.client.chooseCalibration(choice);
      if (modelId !== this.modelId) return;
      this.chosen = chosen.source === "bundled" ? undefined : chosen;
      this.dispatchEvent(new CustomEvent<CalibrationChosen>("calibration-change", { detail: chosen, bubbles: true, composed: true }));
    } catch (e) {
      if (modelId !== this.modelId || e instanceof CancelledError) return;
      this.error = errorText(e);
    } finally {
      this.busy = false;
    }
  }

  private async pickText(e: Event): Promise<void> {
    const input = e.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = "";
    if (file) await this.choose({ kind: "text", name: file.name, text: await file.text() });
  }

  private async pickFiles(e: Event): Promise<void> {
    const input = e.target as HTMLInputElement;
    const files = [...(input.files ?? [])];
    input.value = "";
    if (files.length > 0) await this.choose({ kind: "files", files, ...(this.selected ? { selected: this.selected } : {}) });
  }

  override render() {
    const t = TEXT();
    return html`<div class="row">
        <span><strong>${t.heading}</strong> <span class="current">(${t.what})</span>:</span>
        <span class="current ${this.chosen ? "chosen" : ""}" data-testid="calibration-current" data-source=${this.chosen?.source ?? "bundled"}
          >${this.chosen?.label ?? t.defaultLabel}</span
        >
        <label class="file"
          >${t.text}<input type="file" accept=".txt,text/plain" data-testid="calibration-text-input" ?disabled=${this.busy} @change=${this.pickText}
        /></label>
        <label class="file" title=${t.filesHint}
          >${t.files}<input type="file" accept=".f32" multiple data-testid="calibration-files-input" ?disabled=${this.busy} @change=${this.pickFiles}
        /></label>
        ${this.chosen
          ? html`<button type="button" data-testid="calibration-reset" ?disabled=${this.busy} @click=${() => void this.choose({ kind: "bundled" })}>${t.reset}</button>`
          : nothing}
        ${this.busy ? html`<span role="status"><ql-spinner></ql-spinner>${t.checking}</span>` : nothing}
      </div>
      ${this.error ? html`<p class="error" role="alert" data-testid="calibration-error">${t.refused(this.error)}</p>` : nothing}`;
  }
}

customElements.define("ql-calibration-source", CalibrationSource);

declare global {
  interface HTMLElementTagNameMap {
    "ql-calibration-source": CalibrationSource;
  }
}
