/**
 * The tensor table: name, dtype, shape, parameters, bytes, share of the model; grouped by layer
 * (collapsible groups with subtotals), sortable by any column, filtered by text or /regex/, with totals.
 * Filtering, sorting and grouping come from src/formats/catalog.ts (the CLI uses the same functions);
 * this component only draws them. Clicking a tensor emits tensor-select (detail: its name).
 */
import { LitElement, css, html, nothing } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { filterRows, groupRows, OUTSIDE_LAYERS_GROUP, sortRows, type TensorRow, type Totals } from "../formats/catalog.ts";
import { formatBytes, formatCount, formatShape, formatShare } from "../common/format.ts";
import { LangController, localized } from "./i18n.ts";

type SortKey = "name" | "dtype" | "shape" | "params" | "bytes" | "share";
type SortDir = "asc" | "desc";

interface Column {
  key: SortKey;
  numeric: boolean;
}

const COLUMNS: Column[] = [
  { key: "name", numeric: false },
  { key: "dtype", numeric: false },
  { key: "shape", numeric: false },
  { key: "params", numeric: true },
  { key: "bytes", numeric: true },
  { key: "share", numeric: true },
];

const TEXT = localized(
  {
    columns: { name: "Name", dtype: "DType", shape: "Shape", params: "Parameters", bytes: "Bytes", share: "Share" } as Record<SortKey, string>,
    filterPlaceholder: "Filter: text, or /regex/",
    filterLabel: "Filter tensors by text or /regex/",
    groupByLayer: "Group by layer",
    outsideLayers: OUTSIDE_LAYERS_GROUP,
    tensors: (n: number) => `${formatCount(n)} ${n === 1 ? "tensor" : "tensors"}`,
    shownOf: (shown: number, total: number) => `${formatCount(shown)} of ${formatCount(total)} tensors`,
    noMatch: "No tensor matches this filter.",
    total: "Total:",
    tensorsUnit: "tensors",
    bytesExact: (n: number) => `${formatCount(n)} bytes`,
  },
  {
    columns: { name: "名称", dtype: "数据类型", shape: "形状", params: "参数量", bytes: "字节数", share: "占比" },
    filterPlaceholder: "筛选：文本或 /正则/",
    filterLabel: "按文本或 /正则/ 筛选张量",
    groupByLayer: "按层分组",
    outsideLayers: "嵌入层与输出头",
    tensors: (n: number) => `${formatCount(n)} 个张量`,
    shownOf: (shown: number, total: number) => `${formatCount(shown)} / ${formatCount(total)} 个张量`,
    noMatch: "没有张量匹配此筛选条件。",
    total: "合计：",
    tensorsUnit: "个张量",
    bytesExact: (n: number) => `${formatCount(n)} 字节`,
  },
);

/** Above this many tensors, groups start collapsed so the first render stays quick. */
const COLLAPSE_GROUPS_ABOVE = 2000;

export class TensorTable extends LitElement {
  static override properties = {
    rows: { attribute: false },
    totals: { attribute: false },
    selected: { attribute: false },
    query: { state: true },
    sortKey: { state: true },
    sortDir: { state: true },
    grouped: { state: true },
    collapsed: { state: true },
  };
  declare rows: TensorRow[];
  declare totals: Totals | undefined;
  declare selected: string | undefined;
  declare query: string;
  declare sortKey: SortKey | undefined;
  declare sortDir: SortDir;
  declare grouped: boolean;
  declare collapsed: ReadonlySet<string>;

  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.rows = [];
    this.query = "";
    this.sortKey = undefined;
    this.sortDir = "asc";
    this.grouped = true;
    this.collapsed = new Set();
  }

  protected override willUpdate(changed: Map<PropertyKey, unknown>): void {
    if (changed.has("rows")) {
      // A new model: start with every group open, unless there are very many tensors.
      this.collapsed =
        this.rows.length > COLLAPSE_GROUPS_ABOVE ? new Set(groupRows(this.rows).map((g) => g.group)) : new Set();
    }
  }

  static override styles = css`
    :host {
      display: flex;
      flex-direction: column;
      min-height: 0;
    }
    .toolbar {
      display: flex;
      align-items: center;
      gap: 0.9rem;
      margin-bottom: 0.35rem;
      font-size: 0.85rem;
    }
    .toolbar input[type="search"] {
      font: inherit;
      width: 22rem;
      padding: 0.35rem 0.5rem;
      border: 1px solid var(--ql-border-strong);
      border-radius: 6px;
    }
    .toolbar input[aria-invalid="true"] {
      border-color: var(--ql-error);
    }
    .count {
      color: var(--ql-muted);
      margin-left: auto;
    }
    .filter-error {
      color: var(--ql-error);
      font-size: 0.8rem;
      margin: 0 0 0.35rem;
    }
    .scroll {
      overflow: auto;
      border: 1px solid var(--ql-border);
      border-radius: 8px;
      background: var(--ql-surface);
      min-height: 0;
      flex: 1;
    }
    table {
      border-collapse: collapse;
      width: 100%;
      font-size: 0.83rem;
      font-variant-numeric: tabular-nums;
    }
    th,
    td {
      padding: 0.28rem 0.6rem;
      border-bottom: 1px solid var(--ql-border);
      text-align: left;
      white-space: nowrap;
    }
    th.num,
    td.num {
      text-align: right;
    }
    thead th {
      position: sticky;
      top: 0;
      background: var(--ql-header-bg);
      z-index: 1;
      padding: 0;
    }
    thead button {
      all: unset;
      box-sizing: border-box;
      display: block;
      width: 100%;
      padding: 0.4rem 0.6rem;
      cursor: pointer;
      font-weight: 600;
      color: var(--ql-text);
    }
    thead th.num button {
      text-align: right;
    }
    thead button:focus-visible {
      outline: 2px solid var(--ql-accent);
      outline-offset: -2px;
    }
    .arrow {
      color: var(--ql-accent);
      display: inline-block;
      width: 0.9em;
    }
    tr.group td {
      background: var(--ql-group-bg);
      font-weight: 600;
    }
    tr.group button {
      all: unset;
      cursor: pointer;
    }
    tr.group button:focus-visible {
      outline: 2px solid var(--ql-accent);
    }
    .caret {
      display: inline-block;
      width: 1em;
      color: var(--ql-muted);
    }
    .members {
      font-weight: 400;
      color: var(--ql-muted);
      margin-left: 0.4rem;
    }
    tr.tensor {
      cursor: pointer;
    }
    tr.tensor:focus-visible {
      outline: 2px solid var(--ql-accent);
      outline-offset: -2px;
    }
    tr.tensor:hover td {
      background: var(--ql-hover-bg);
    }
    tr.tensor[aria-selected="true"] td {
      background: var(--ql-accent-bg);
    }
    tr.tensor td.name {
      font-family: var(--ql-mono);
      font-size: 0.8rem;
    }
    tr.tensor.in-group td.name {
      padding-left: 1.6rem;
    }
    .dtype {
      font-family: var(--ql-mono);
      font-size: 0.78rem;
      padding: 0 0.3rem;
      border-radius: 4px;
      background: var(--ql-group-bg);
    }
    .dtype.undecodable {
      text-decoration: line-through;
      opacity: 0.7;
    }
    tfoot td {
      position: sticky;
      bottom: 0;
      background: var(--ql-header-bg);
      font-weight: 600;
      border-top: 2px solid var(--ql-border-strong);
    }
    .empty {
      padding: 1rem;
      color: var(--ql-muted);
    }
  `;

  override render() {
    const filtered = filterRows(this.rows, this.query);
    const shown = this.sortKey ? sortRows(filtered.rows, this.sortKey, this.sortDir) : filtered.rows;
    const t = TEXT();
    return html`
      <div class="toolbar">
        <input
          type="search"
          placeholder=${t.filterPlaceholder}
          aria-label=${t.filterLabel}
          aria-invalid=${filtered.error ? "true" : "false"}
          data-testid="filter"
          .value=${this.query}
          @input=${(e: Event) => (this.query = (e.target as HTMLInputElement).value)}
        />
        <label>
          <input
            type="checkbox"
            data-testid="group-toggle"
            .checked=${this.grouped}
            @change=${(e: Event) => (this.grouped = (e.target as HTMLInputElement).checked)}
          />
          ${t.groupByLayer}
        </label>
        <span class="count" data-testid="shown-count">
          ${shown.length === this.rows.length
            ? t.tensors(this.rows.length)
            : t.shownOf(shown.length, this.rows.length)}
        </span>
      </div>
      ${filtered.error ? html`<p class="filter-error" role="alert" data-testid="filter-error">${filtered.error}</p>` : nothing}
      <div class="scroll">
        <table data-testid="tensor-table">
          <thead>
            <tr>
              ${COLUMNS.map((c) => this.renderHeader(c))}
            </tr>
          </thead>
          <tbody>
            ${this.grouped ? this.renderGrouped(shown) : this.renderRows(shown, false)}
          </tbody>
          ${this.renderTotals()}
        </table>
        ${shown.length === 0 && this.rows.length > 0 ? html`<div class="empty">${t.noMatch}</div>` : nothing}
      </div>
    `;
  }

  private renderHeader(c: Column) {
    const active = this.sortKey === c.key;
    const ariaSort = active ? (this.sortDir === "asc" ? "ascending" : "descending") : "none";
    return html`<th class=${c.numeric ? "num" : ""} aria-sort=${ariaSort} data-testid=${`sort-${c.key}`} scope="col">
      <button type="button" @click=${() => this.sortBy(c)}>
        ${TEXT().columns[c.key]}<span class="arrow" aria-hidden="true">${active ? (this.sortDir === "asc" ? "▲" : "▼") : ""}</span>
      </button>
    </th>`;
  }

  private sortBy(c: Column): void {
    if (this.sortKey === c.key) {
      this.sortDir = this.sortDir === "asc" ? "desc" : "asc";
    } else {
      this.sortKey = c.key;
      // Numbers are most interesting largest first; names alphabetically.
      this.sortDir = c.numeric ? "desc" : "asc";
    }
  }

  private renderGrouped(rows: TensorRow[]) {
    const t = TEXT();
    return groupRows(rows).map((g) => {
      const open = !this.collapsed.has(g.group);
      return html`
        <tr class="group" data-testid="group-row" data-group=${g.group}>
          <td>
            <button type="button" aria-expanded=${open ? "true" : "false"} @click=${() => this.toggleGroup(g.group)}>
              <span class="caret" aria-hidden="true">${open ? "▾" : "▸"}</span>${g.group === OUTSIDE_LAYERS_GROUP ? t.outsideLayers : g.group}
            </button>
            <span class="members">${t.tensors(g.rows.length)}</span>
          </td>
          <td></td>
          <td></td>
          <td class="num">${formatCount(g.params)}</td>
          <td class="num" title=${t.bytesExact(g.bytes)}>${formatBytes(g.bytes)}</td>
          <td class="num">${formatShare(g.share)}</td>
        </tr>
        ${open ? this.renderRows(g.rows, true) : nothing}
      `;
    });
  }

  private renderRows(rows: TensorRow[], inGroup: boolean) {
    const t = TEXT();
    return repeat(
      rows,
      (r) => r.name,
      (r) => html`<tr
        class="tensor ${inGroup ? "in-group" : ""}"
        data-testid="tensor-row"
        data-name=${r.name}
        aria-selected=${r.name === this.selected ? "true" : "false"}
        tabindex="0"
        @click=${() => this.select(r.name)}
        @keydown=${(e: KeyboardEvent) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            this.select(r.name);
          }
        }}
      >
        <td class="name">${r.name}</td>
        <td>
          <span class="dtype ${r.undecodable ? "undecodable" : ""}" data-testid="dtype" title=${r.undecodable ?? ""}>${r.dtype}</span>
        </td>
        <td>${formatShape(r.shape)}</td>
        <td class="num">${formatCount(r.params)}</td>
        <td class="num" title=${t.bytesExact(r.bytes)}>${formatBytes(r.bytes)}</td>
        <td class="num">${formatShare(r.share)}</td>
      </tr>`,
    );
  }

  private renderTotals() {
    const t = this.totals;
    if (!t) return nothing;
    const text = TEXT();
    return html`<tfoot>
      <tr data-testid="totals">
        <td>${text.total} <span data-testid="total-tensors">${formatCount(t.tensors)}</span> ${text.tensorsUnit}</td>
        <td></td>
        <td></td>
        <td class="num" data-testid="total-params">${formatCount(t.params)}</td>
        <td class="num" data-testid="total-bytes" title=${text.bytesExact(t.bytes)}>${formatBytes(t.bytes)}</td>
        <td class="num">${formatShare(t.share)}</td>
      </tr>
    </tfoot>`;
  }

  private toggleGroup(group: string): void {
    const next = new Set(this.collapsed);
    if (!next.delete(group)) next.add(group);
    this.collapsed = next;
  }

  private select(name: string): void {
    this.dispatchEvent(new CustomEvent<string>("tensor-select", { detail: name, bubbles: true, composed: true }));
  }
}

customElements.define("ql-tensor-table", TensorTable);

declare global {
  interface HTMLElementTagNameMap {
    "ql-tensor-table": TensorTable;
  }
}
