/**
 * Where a model comes in: a drop zone, a file picker (several files: one shard, shards, or an index
 * and its shards), a URL field, and the built-in demo. It only reports what the user chose:
 *   open-files (detail: File[]), open-url (detail: string), open-demo, workshop (the one-click preset).
 */
import { LitElement, css, html } from "lit";
import { LangController, localized } from "./i18n.ts";

const TEXT = localized(
  {
    chooseFiles: "Choose files…",
    dropBefore: "or drop a ",
    dropAfter: " file, several shards, or an index with its shards here (or a ",
    dropEnd: " file)",
    urlLabel: "URL of a safetensors file, an index, or a GGUF file",
    openUrl: "Open URL",
    demo: "Demo",
    workshop: "Workshop",
    workshopTitle: "Opens the demo, one layer, and int8 / int4 / Q4_K / GPTQ side by side in the heatmaps",
  },
  {
    chooseFiles: "选择文件…",
    dropBefore: "或将一个 ",
    dropAfter: " 文件、多个分片，或索引文件连同其分片拖放到这里（也可以是 ",
    dropEnd: " 文件）",
    urlLabel: "safetensors 文件、索引或 GGUF 文件的 URL",
    openUrl: "打开 URL",
    demo: "演示",
    workshop: "工作坊",
    workshopTitle: "打开演示模型的一层，并在热力图中并排比较 int8 / int4 / Q4_K / GPTQ",
  },
);

export class OpenPanel extends LitElement {
  static override properties = { dragging: { state: true } };
  declare dragging: boolean;

  private readonly langController = new LangController(this);

  constructor() {
    super();
    this.dragging = false;
  }

  static override styles = css`
    :host {
      display: grid;
      grid-template-columns: minmax(0, 1.3fr) minmax(0, 1.2fr) auto;
      gap: 0.75rem;
      align-items: stretch;
    }
    .drop {
      border: 2px dashed var(--ql-border-strong);
      border-radius: 8px;
      padding: 0.6rem 0.9rem;
      display: flex;
      align-items: center;
      gap: 0.75rem;
      background: var(--ql-surface);
      transition: background 0.1s, border-color 0.1s;
    }
    .drop.dragging {
      border-color: var(--ql-accent);
      background: var(--ql-accent-bg);
    }
    .drop p {
      margin: 0;
      font-size: 0.85rem;
      color: var(--ql-muted);
    }
    input[type="file"] {
      position: absolute;
      width: 1px;
      height: 1px;
      opacity: 0;
    }
    form {
      display: flex;
      gap: 0.5rem;
      align-items: center;
      border: 1px solid var(--ql-border);
      border-radius: 8px;
      padding: 0.6rem 0.75rem;
      background: var(--ql-surface);
    }
    input[type="url"] {
      flex: 1;
      min-width: 0;
      font: inherit;
      font-size: 0.85rem;
      padding: 0.4rem 0.5rem;
      border: 1px solid var(--ql-border-strong);
      border-radius: 6px;
    }
    button,
    label.button {
      font: inherit;
      font-size: 0.85rem;
      font-weight: 600;
      padding: 0.4rem 0.8rem;
      border-radius: 6px;
      border: 1px solid var(--ql-accent);
      background: var(--ql-accent);
      color: white;
      cursor: pointer;
      white-space: nowrap;
    }
    button.secondary {
      background: var(--ql-surface);
      color: var(--ql-accent);
    }
    label.button:focus-within {
      outline: 2px solid var(--ql-accent);
      outline-offset: 2px;
    }
    .demo {
      display: flex;
      align-items: center;
      gap: 0.4rem;
    }
  `;

  override render() {
    const t = TEXT();
    return html`
      <div
        class="drop ${this.dragging ? "dragging" : ""}"
        data-testid="drop-zone"
        @dragenter=${this.onDragOver}
        @dragover=${this.onDragOver}
        @dragleave=${this.onDragLeave}
        @drop=${this.onDrop}
      >
        <label class="button">
          ${t.chooseFiles}
          <input
            type="file"
            multiple
            accept=".safetensors,.gguf,.json"
            data-testid="file-input"
            @change=${this.onPick}
          />
        </label>
        <p>${t.dropBefore}<code>.safetensors</code>${t.dropAfter}<code translate="no">.gguf</code>${t.dropEnd}</p>
      </div>
      <form data-testid="url-form" @submit=${this.onSubmitUrl}>
        <input
          type="url"
          name="url"
          required
          aria-label=${t.urlLabel}
          placeholder="https://huggingface.co/…/resolve/main/model.safetensors"
          data-testid="url-input"
        />
        <button type="submit" data-testid="url-open">${t.openUrl}</button>
      </form>
      <div class="demo">
        <button class="secondary" type="button" data-testid="demo-button" @click=${this.onDemo}>${t.demo}</button>
        <button
          class="secondary"
          type="button"
          data-testid="workshop-button"
          title=${t.workshopTitle}
          @click=${() => this.emit("workshop", undefined)}
        >
          ${t.workshop}
        </button>
      </div>
    `;
  }

  private onPick(e: Event): void {
    const input = e.target as HTMLInputElement;
    const files = [...(input.files ?? [])];
    // Clear so that choosing the same file again still fires change.
    input.value = "";
    if (files.length > 0) this.emit("open-files", files);
  }

  private onDragOver(e: DragEvent): void {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    this.dragging = true;
  }

  private onDragLeave(e: DragEvent): void {
    // Moving onto the zone's own button or text is not leaving it.
    const to = e.relatedTarget as Node | null;
    if (to && (e.currentTarget as HTMLElement).contains(to)) return;
    this.dragging = false;
  }

  private onDrop(e: DragEvent): void {
    e.preventDefault();
    this.dragging = false;
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length > 0) this.emit("open-files", files);
  }

  private onSubmitUrl(e: SubmitEvent): void {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).elements.namedItem("url") as HTMLInputElement;
    const url = input.value.trim();
    if (url) this.emit("open-url", url);
  }

  private onDemo(): void {
    this.emit("open-demo", undefined);
  }

  private emit<T>(type: string, detail: T): void {
    this.dispatchEvent(new CustomEvent<T>(type, { detail, bubbles: true, composed: true }));
  }
}

customElements.define("ql-open-panel", OpenPanel);

declare global {
  interface HTMLElementTagNameMap {
    "ql-open-panel": OpenPanel;
  }
}
