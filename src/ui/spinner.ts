/** A small busy indicator, shown while the worker reads or computes. */
import { LitElement, css, html } from "lit";

export class Spinner extends LitElement {
  static override styles = css`
    :host {
      display: inline-block;
      width: 0.9em;
      height: 0.9em;
      vertical-align: -0.1em;
    }
    span {
      display: block;
      box-sizing: border-box;
      width: 100%;
      height: 100%;
      border: 2px solid var(--ql-border-strong);
      border-top-color: var(--ql-accent);
      border-radius: 50%;
      animation: spin 0.7s linear infinite;
    }
    @keyframes spin {
      to {
        transform: rotate(360deg);
      }
    }
  `;

  override render() {
    return html`<span aria-hidden="true"></span>`;
  }
}

customElements.define("ql-spinner", Spinner);

declare global {
  interface HTMLElementTagNameMap {
    "ql-spinner": Spinner;
  }
}
