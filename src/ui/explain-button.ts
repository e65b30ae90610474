/**
 * <ql-explain topic="q4_K">: a small "?" button that opens the topic's explanation (src/ui/explain.ts) in a
 * popover beside it, in the interface language. The popover lives in the top layer, so scrolling panels
 * and sticky table headers do not clip it; a click elsewhere or Escape closes it.
 */
import { LitElement, css, html, nothing } from "lit";
import { explanation } from "./explain.ts";
import { LangController, localized } from "./i18n.ts";

const TEXT = localized({ explain: (what: string) => `Explain: ${what}` }, { explain: (what: string) => `说明：${what}` });

export class ExplainButton extends LitElement {
  static override properties = { topic: { type: String } };
  declare topic: string;

  private readonly langController = new LangController(this);
  /** When the popover last closed: a click on the button that closed it (light dismiss) must not reopen it. */
  private closedAt = -Infinity;

  constructor() {
    super();
    this.topic = "";
  }

  static override styles = css`
    :host {
      display: inline-block;
      vertical-align: middle;
      line-height: 1;
    }
    button {
      all: unset;
      box-sizing: border-box;
      display: inline-flex;
      align-items: center;
      justify-content: center;
      width: 1.05em;
      height: 1.05em;
      border-radius: 50%;
      border: 1px solid currentColor;
      color: var(--ql-muted);
      font-size: 0.72rem;
      font-weight: 700;
      font-family: var(--ql-sans, inherit);
      cursor: help;
    }
    button:hover,
    button:focus-visible {
      color: var(--ql-accent);
    }
    [popover] {
      margin: 0;
      inset: auto;
      max-width: 24rem;
      padding: 0.6rem 0.75rem;
      border: 1px solid var(--ql-border-strong);
      border-radius: 8px;
      background: var(--ql-surface, white);
      color: var(--ql-text, black);
      box-shadow: 0 6px 24px rgba(0, 0, 0, 0.18);
      font-size: 0.82rem;
      font-weight: 400;
      font-family: var(--ql-sans, system-ui, sans-serif);
      line-height: 1.45;
      text-align: left;
      white-space: normal;
      text-transform: none;
      letter-spacing: normal;
      cursor: auto;
    }
    strong {
      display: block;
      margin-bottom: 0.3rem;
    }
    p {
      margin: 0.3rem 0 0;
    }
  `;

  override render() {
    const e = explanation(this.topic);
    if (!e) return nothing;
    return html`<button
        type="button"
        aria-label=${TEXT().explain(e.title)}
        aria-haspopup="dialog"
        data-testid="explain-button"
        data-topic=${this.topic}
        @click=${this.onClick}
      >
        ?
      </button>
      <div
        popover="auto"
        role="dialog"
        aria-label=${e.title}
        data-testid="explain-popover"
        @click=${(ev: Event) => ev.preventDefault()}
        @toggle=${(ev: ToggleEvent) => {
          if (ev.newState === "closed") this.closedAt = performance.now();
        }}
      >
        <strong>${e.title}</strong>
        ${e.body.map((p) => html`<p>${p}</p>`)}
      </div>`;
  }

  /** Inside a <label> or <summary> the click must not also tick the box or fold the section. */
  private onClick(ev: MouseEvent): void {
    ev.preventDefault();
    ev.stopPropagation();
    const pop = this.renderRoot.querySelector<HTMLElement>("[popover]");
    const button = ev.currentTarget as HTMLElement;
    if (!pop) return;
    if (pop.matches(":popover-open")) {
      pop.hidePopover();
      return;
    }
    if (performance.now() - this.closedAt < 300) return;
    pop.showPopover();
    // Below the button, kept inside the window.
    const at = button.getBoundingClientRect();
    const box = pop.getBoundingClientRect();
    const left = Math.max(8, Math.min(at.left, window.innerWidth - box.width - 8));
    const below = at.bottom + 6;
    const top = below + box.height > window.innerHeight - 8 ? Math.max(8, at.top - box.height - 6) : below;
    pop.style.left = `${left}px`;
    pop.style.top = `${top}px`;
  }
}

customElements.define("ql-explain", ExplainButton);

declare global {
  interface HTMLElementTagNameMap {
    "ql-explain": ExplainButton;
  }
}
