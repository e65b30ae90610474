import { css } from "lit";

/** What every side panel shares: a block host and the small uppercase heading. */
export const panelStyles = css`
  :host {
    display: block;
  }
  h2 {
    font-size: 0.8rem;
    text-transform: uppercase;
    letter-spacing: 0.06em;
    color: var(--ql-muted);
    margin: 0 0 0.5rem;
  }
`;

/** Buttons: plain, `.primary` for the panel's main action, and disabled. */
export const buttonStyles = css`
  button {
    font: inherit;
    font-size: 0.85rem;
    padding: 0.25rem 0.8rem;
    border-radius: 6px;
    border: 1px solid var(--ql-border-strong);
    background: var(--ql-surface);
    cursor: pointer;
  }
  button.primary {
    background: var(--ql-accent);
    border-color: var(--ql-accent);
    color: white;
    font-weight: 600;
  }
  button:disabled {
    opacity: 0.5;
    cursor: default;
  }
`;

/** Tables of figures: ruled rows, a header that stays on top, numbers right-aligned in tabular digits. */
export const figureTableStyles = css`
  table {
    border-collapse: collapse;
    font-size: 0.8rem;
  }
  th,
  td {
    padding: 0.2rem 0.5rem;
    border-bottom: 1px solid var(--ql-border);
    text-align: right;
    white-space: nowrap;
  }
  th {
    background: var(--ql-header-bg);
    font-weight: 600;
    position: sticky;
    top: 0;
  }
  td {
    font-variant-numeric: tabular-nums;
    font-family: var(--ql-mono);
  }
`;

/**
 * A file picker drawn as its label (`<label class="file">text<input type="file"></label>`): the browser's own
 * file button speaks the browser's language, not the lab's.
 */
export const filePickerStyles = css`
  label.file {
    cursor: pointer;
    color: var(--ql-accent);
  }
  label.file:focus-within {
    outline: 2px solid var(--ql-accent);
  }
  input[type="file"] {
    position: absolute;
    width: 1px;
    height: 1px;
    opacity: 0;
  }
`;
