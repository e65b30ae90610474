/**
 * The progress of a whole-model run: a bar, the tensor count, the share done, the time left, and Cancel.
 * Its own element, so progress events (several a second) redraw only this line, not the results table.
 */
import { LitElement, css, html } from "lit";
import { formatDuration, formatShare } from "../common/format.ts";
import type { ModelProgress } from "../../workers/quant-worker-api.ts";
import { buttonStyles } from "./styles.ts";
import { LangController, localized } from "./i18n.ts";

/** Every string the element shows, in both interface languages. */
export const RUN_PROGRESS_STRINGS = localized(
  {
    starting: "starting…",
    progress: (done: number, total: number) => `tensor ${done} of ${total}`,
    eta: (time: string) => `about ${time} left`,
    elapsed: (time: string) => `${time} so far`,
    cancel: "Cancel",
    cancelling: "cancelling…",
  },
  {
    starting: "正在开始…",
    progress: (done: number, total: number) => `第 ${done} / ${total} 个张量`,
    eta: (time: string) => `约剩 ${time}`,
    elapsed: (time: string) => `已用 ${time}`,
    cancel: "取消",
    cancelling: "正在取消…",
  },
);

export class RunProgress extends LitElement {
  static override properties = {
    progress: { attribute: false },
    cancelling: { type: Boolean },
  };
  declare progress: ModelProgress | undefined;
  declare cancelling: boolean;
  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.progress = undefined;
    this.cancelling = false;
  }

  static override styles = [
    buttonStyles,
    css`
      :host {
        display: inline-flex;
        align-items: center;
        gap: 0.5rem;
        font-size: 0.82rem;
      }
      progress {
        width: 12rem;
      }
    `,
  ];

  override render() {
    const p = this.progress;
    return html`<progress max=${p?.totalBytes || 1} value=${p?.doneBytes ?? 0}></progress>
      ${p
        ? html`<span data-testid="results-count">${RUN_PROGRESS_STRINGS().progress(p.tensorsDone, p.tensorsTotal)}</span> ·
            ${formatShare(p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 1)}
            <span data-testid="results-eta">${p.etaMs !== undefined ? RUN_PROGRESS_STRINGS().eta(formatDuration(p.etaMs)) : RUN_PROGRESS_STRINGS().elapsed(formatDuration(p.elapsedMs))}</span>`
        : RUN_PROGRESS_STRINGS().starting}
      <button data-testid="results-cancel" ?disabled=${this.cancelling} @click=${() => this.dispatchEvent(new CustomEvent("cancel"))}>
        ${this.cancelling ? RUN_PROGRESS_STRINGS().cancelling : RUN_PROGRESS_STRINGS().cancel}
      </button>`;
  }
}

customElements.define("ql-run-progress", RunProgress);

declare global {
  interface HTMLElementTagNameMap {
    "ql-run-progress": RunProgress;
  }
}
