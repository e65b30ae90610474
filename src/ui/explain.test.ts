import { describe, expect, it } from "vitest";
import { formatBitsPerWeight } from "../common/format.ts";
import { bitsPerWeight } from "../quant/format.ts";
import { FORMATS } from "../quant/registry.ts";
import { allTopics, explanation, familyTopic } from "./explain.ts";
import { LANGUAGES } from "./i18n.ts";

const CJK = /[\u4e00-\u9fff]/;

describe("explanations", () => {
  const topics = allTopics();

  it("cover every format of the registry, every family, the metrics, GPTQ/AWQ and the heatmap modes", () => {
    for (const f of FORMATS) expect(topics, f.id).toContain(f.id);
    for (const family of new Set(FORMATS.map((f) => f.family))) expect(topics).toContain(familyTopic(family));
    for (const t of ["metric:mse", "metric:rmse", "metric:max-err", "metric:snr", "metric:cosine", "metric:bpw", "metric:saved", "metric:rel", "metric:block-scale", "metric:perplexity", "metric:kl", "metric:top1", "method:gptq", "method:awq", "double-quant", "heatmap:abs", "heatmap:rel", "heatmap:signed", "heatmap:scale", "heatmap:weights", "heatmap:pooling", "heatmap:log"]) {
      expect(topics).toContain(t);
    }
    expect(explanation("no-such-topic")).toBeUndefined();
  });

  it("has every topic in both languages: English without Chinese characters, Chinese with them", () => {
    for (const topic of topics) {
      for (const { id } of LANGUAGES) {
        const e = explanation(topic, id);
        expect(e, `${topic} ${id}`).toBeDefined();
        expect(e!.title.length).toBeGreaterThan(0);
        expect(e!.body.join(" ").length, `${topic} ${id}`).toBeGreaterThan(30);
        for (const p of e!.body) {
          if (id === "zh-CN") expect(p, topic).toMatch(CJK);
          else expect(p, topic).not.toMatch(CJK);
        }
      }
    }
  });

  it("quotes each format's bits per weight as the registry computes it, in both languages", () => {
    for (const f of FORMATS) {
      const bits = formatBitsPerWeight(bitsPerWeight(f, { rows: 4096, cols: 4096 }));
      for (const { id } of LANGUAGES) expect(explanation(f.id, id)!.body.join(" "), `${f.id} ${id}`).toContain(bits);
    }
  });

  it("describes the integer formats from their id", () => {
    expect(explanation("int4-asym-g32", "en")!.body.join(" ")).toMatch(/4-bit asymmetric.*codes 0…15.*group of 32/);
    expect(explanation("int8-channel", "en")!.body.join(" ")).toMatch(/codes −127…127.*per row/);
    expect(explanation("int3-tensor", "zh-CN")!.body.join(" ")).toMatch(/3 比特对称整数.*整个张量/);
  });
});
