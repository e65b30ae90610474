/**
 * The settings of a GPTQ / AWQ / AWQ+GPTQ run, as a compact form beside the ready-made ones: method, bits,
 * group, act-order, static groups, symmetric, dampening (GPTQ), clipping (AWQ). "Add" hands the setting's id
 * (src/quant/calibrated.ts's grammar, e.g. "gptq3-g64-act-sym") to the panel in a `calibrated-add` event;
 * the panel asks the worker about it like any format.
 */
import { LitElement, css, html, nothing } from "lit";
import { calibratedId, type CalibratedKind } from "../quant/calibrated.ts";
import { LangController, localized } from "./i18n.ts";
import { buttonStyles } from "./styles.ts";

const TEXT = localized(
  {
    method: "method",
    bits: "bits",
    group: "group",
    channel: "per channel",
    act: "act-order",
    static: "static groups",
    sym: "symmetric (no zero point)",
    clip: "clip search",
    damp: "damp",
    add: "Add",
  },
  {
    method: "方法",
    bits: "比特",
    group: "分组",
    channel: "按通道",
    act: "act-order",
    static: "静态分组",
    sym: "对称（无零点）",
    clip: "裁剪搜索",
    damp: "阻尼",
    add: "添加",
  },
);

const METHODS: { id: CalibratedKind; label: string }[] = [
  { id: "gptq", label: "GPTQ" },
  { id: "awq", label: "AWQ" },
  { id: "awqgptq", label: "AWQ+GPTQ" },
];

export class CalibratedSettings extends LitElement {
  static override properties = {
    method: { state: true },
    bits: { state: true },
    group: { state: true },
    actOrder: { state: true },
    staticGroups: { state: true },
    sym: { state: true },
    clip: { state: true },
    percDamp: { state: true },
  };
  declare method: CalibratedKind;
  declare bits: number;
  declare group: number;
  declare actOrder: boolean;
  declare staticGroups: boolean;
  declare sym: boolean;
  declare clip: boolean;
  declare percDamp: number;
  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.method = "gptq";
    this.bits = 4;
    this.group = 128;
    this.actOrder = false;
    this.staticGroups = false;
    this.sym = false;
    this.clip = true;
    this.percDamp = 0.01;
  }

  static override styles = [
    buttonStyles,
    css`
      :host {
        display: flex;
        flex-wrap: wrap;
        align-items: center;
        gap: 0.25rem 0.6rem;
        font-size: 0.76rem;
      }
      label {
        display: inline-flex;
        align-items: center;
        gap: 0.2rem;
      }
      input[type="number"] {
        width: 4.5rem;
      }
      code {
        font-family: var(--ql-mono);
        color: var(--ql-muted);
      }
    `,
  ];

  /** The id of the setting the form shows. */
  get settingId(): string {
    return calibratedId({
      method: this.method,
      bits: this.bits,
      group: this.group,
      actOrder: this.actOrder,
      staticGroups: this.staticGroups,
      sym: this.sym,
      clip: this.clip,
      percDamp: this.percDamp,
    });
  }

  private add(): void {
    this.dispatchEvent(new CustomEvent<string>("calibrated-add", { detail: this.settingId, bubbles: true, composed: true }));
  }

  override render() {
    const t = TEXT();
    const gptq = this.method !== "awq";
    const awq = this.method !== "gptq";
    const checkbox = (key: "actOrder" | "staticGroups" | "sym" | "clip", label: string) =>
      html`<label
        ><input type="checkbox" data-setting=${key} .checked=${this[key]} @change=${(e: Event) => (this[key] = (e.target as HTMLInputElement).checked)} />${label}</label
      >`;
    return html`<label
        >${t.method}
        <select data-setting="method" @change=${(e: Event) => (this.method = (e.target as HTMLSelectElement).value as CalibratedKind)}>
          ${METHODS.map((m) => html`<option value=${m.id} ?selected=${m.id === this.method}>${m.label}</option>`)}
        </select></label
      >
      <label
        >${t.bits}
        <select data-setting="bits" @change=${(e: Event) => (this.bits = Number((e.target as HTMLSelectElement).value))}>
          ${[2, 3, 4, 8].map((b) => html`<option value=${b} ?selected=${b === this.bits}>${b}</option>`)}
        </select></label
      >
      <label
        >${t.group}
        <select data-setting="group" @change=${(e: Event) => (this.group = Number((e.target as HTMLSelectElement).value))}>
          ${[32, 64, 128, -1].map((g) => html`<option value=${g} ?selected=${g === this.group}>${g === -1 ? t.channel : g}</option>`)}
        </select></label
      >
      ${gptq ? html`${checkbox("actOrder", t.act)} ${checkbox("staticGroups", t.static)}` : nothing} ${checkbox("sym", t.sym)}
      ${awq ? checkbox("clip", t.clip) : nothing}
      ${gptq
        ? html`<label
            >${t.damp}
            <input
              type="number"
              data-setting="damp"
              min="0"
              step="0.01"
              .value=${String(this.percDamp)}
              @change=${(e: Event) => {
                const v = Number((e.target as HTMLInputElement).value);
                if (v >= 0 && Number.isFinite(v)) this.percDamp = v;
              }}
          /></label>`
        : nothing}
      <button data-testid="calibrated-add" @click=${() => this.add()}>${t.add} <code>${this.settingId}</code></button>`;
  }
}

customElements.define("ql-calibrated-settings", CalibratedSettings);

declare global {
  interface HTMLElementTagNameMap {
    "ql-calibrated-settings": CalibratedSettings;
  }
}
