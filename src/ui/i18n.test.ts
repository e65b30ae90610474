import { describe, expect, it } from "vitest";
import { currentLang, initialLang, localized, onLangChange, setLang } from "./i18n.ts";

describe("interface language", () => {
  it("starts in the link's language, else Chinese for a Chinese browser, else English", () => {
    expect(initialLang("zh-CN", "en-US")).toBe("zh-CN");
    expect(initialLang("en", "zh-TW")).toBe("en");
    expect(initialLang(undefined, "zh-CN")).toBe("zh-CN");
    expect(initialLang(undefined, "zh")).toBe("zh-CN");
    expect(initialLang("fr", "de-DE")).toBe("en");
    expect(initialLang(undefined, undefined)).toBe("en");
  });

  it("switches every table at once and tells listeners", () => {
    const TEXT = localized({ title: "Tensor", count: (n: number) => `${n} tensors` }, { title: "张量", count: (n: number) => `${n} 个张量` });
    const seen: string[] = [];
    const stop = onLangChange(() => seen.push(currentLang()));
    try {
      setLang("en");
      expect(TEXT().title).toBe("Tensor");
      setLang("zh-CN");
      expect(TEXT().title).toBe("张量");
      expect(TEXT().count(3)).toBe("3 个张量");
      setLang("zh-CN"); // no change, no call
      setLang("en");
      expect(TEXT().count(3)).toBe("3 tensors");
      expect(seen).toEqual(["zh-CN", "en"]);
    } finally {
      stop();
      setLang("en");
    }
  });
});
