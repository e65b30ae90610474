import path from "node:path";
import { describe, expect, it } from "vitest";
import { quantlabInProcess } from "../../test/quantlab-cli.ts";
import { readJson, REFERENCE_DIR } from "../../test/model-fixtures.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import type { EvalJson } from "./eval.ts";

describe("quantlab eval / generate", () => {
  it("prints the issue's JSON, f32 first with the reference perplexity", async () => {
    const r = await quantlabInProcess("eval", STORIES_DIR, "--precisions", "q8_0,int8", "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as EvalJson;
    expect(out.tokens).toBe(509);
    expect(out.precisions.map((p) => p.name)).toEqual(["f32", "q8_0", "int8-channel"]);
    const reference = readJson<{ perplexity: number }>(path.join(REFERENCE_DIR, "nll_eval.json"));
    expect(out.precisions[0]!.ppl).toBeCloseTo(reference.perplexity, 4);
    expect(Object.keys(out.precisions[1]!).sort()).toEqual(
      ["delta_ppl", "fallbacks", "kld_max", "kld_mean", "kld_median", "kld_p99", "name", "ppl", "top1_agree", "weights_bytes"],
    );
    expect(out.precisions[1]!.fallbacks).toHaveLength(5);
  });

  it("generates the reference greedy continuation", async () => {
    const greedy = readJson<{ text: string }>(path.join(REFERENCE_DIR, "greedy.json"));
    const r = await quantlabInProcess("generate", STORIES_DIR, "--prompt", "Once upon a time", "--tokens", "100", "--greedy");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${greedy.text}\n`);
  });

  it("exits 2 with one line on bad input", async () => {
    const unknown = await quantlabInProcess("eval", STORIES_DIR, "--precisions", "f32,q9_Z");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^quantlab eval: unknown precision "q9_Z"[^\n]*\n$/);
    const missing = await quantlabInProcess("eval", path.join(STORIES_DIR, "reference"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no config\.json in this folder/);
    const tooLong = await quantlabInProcess("generate", STORIES_DIR, "--prompt", "x", "--temperature", "0");
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(/--temperature must be a number above 0/);
  });
});
