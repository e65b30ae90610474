/**
 * The interface language: English or Simplified Chinese, switchable at any time.
 *
 * Each component keeps its strings in one table at the top,
 *     const TEXT = localized({ title: "Tensor", count: (n: number) => `${n} tensors` }, { title: "张量", ... });
 * reads `const t = TEXT()` in render, and holds a LangController so that a switch re-renders it. The Chinese
 * table must have every key of the English one (TypeScript checks it). Messages that come from the engine
 * (src/formats, src/quant, src/pipeline errors) are data and stay as they are.
 */
import type { ReactiveController, ReactiveControllerHost } from "lit";

export type Lang = "en" | "zh-CN";

export const LANGUAGES: readonly { id: Lang; label: string }[] = [
  { id: "en", label: "English" },
  { id: "zh-CN", label: "简体中文" },
];

export function isLang(s: string | undefined): s is Lang {
  return LANGUAGES.some((l) => l.id === s);
}

/** The language to start in: the page URL's, else the browser's when it is Chinese, else English. */
export function initialLang(urlLang: string | undefined, browserLang: string | undefined): Lang {
  if (isLang(urlLang)) return urlLang;
  return browserLang?.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

let lang: Lang = "en";
const listeners = new Set<() => void>();

export function currentLang(): Lang {
  return lang;
}

/** Switches the language: sets <html lang> and re-renders every component holding a LangController. */
export function setLang(next: Lang): void {
  if (typeof document !== "undefined") document.documentElement.lang = next;
  if (next === lang) return;
  lang = next;
  for (const listener of [...listeners]) listener();
}

/** Calls `listener` after every switch; returns the function that stops it. */
export function onLangChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** A string table in both languages; call the result for the current language's table. */
export function localized<T>(en: T, zh: NoInfer<T>): () => T {
  return () => (lang === "zh-CN" ? zh : en);
}

/** Re-renders its lit host when the language changes. */
export class LangController implements ReactiveController {
  private stop: (() => void) | undefined;

  constructor(private readonly host: ReactiveControllerHost) {
    host.addController(this);
  }

  hostConnected(): void {
    this.stop = onLangChange(() => this.host.requestUpdate());
  }

  hostDisconnected(): void {
    this.stop?.();
    this.stop = undefined;
  }
}
