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
