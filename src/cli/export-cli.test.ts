import { cp, mkdtemp, readdir, rm, writeFile, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufHeader } from "../formats/gguf.ts";
import { NodeFileSource } from "../node/file-source.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { quantlabInProcess } from "../../test/quantlab-cli.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-export-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("quantlab export", () => {
  it("writes a GGUF our reader opens, and lists the fallbacks", async () => {
    const out = path.join(dir, "q4.gguf");
    const run = await quantlabInProcess("export", STORIES_DIR, "--to", "gguf", "--type", "Q4_K_M", "--out", out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/47 tensors, q4_K_M/);
    expect(run.stderr).toContain("blk.0.ffn_down.weight: q4_K does not fit rows of 172; written as F16");
    const source = await NodeFileSource.open(out);
    const header = await readGgufHeader(source);
    await source.close();
    expect(header.tensors).toHaveLength(47);
    expect(await readdir(dir)).toEqual(["q4.gguf"]);
  });

  it("stops with exit 2 and one line, writing nothing, on a model it cannot express or a bad target", async () => {
    const model = path.join(dir, "gemma-like");
    await cp(STORIES_DIR, model, { recursive: true });
    const config = JSON.parse(await readFile(path.join(model, "config.json"), "utf8"));
    await writeFile(path.join(model, "config.json"), JSON.stringify({ ...config, model_type: "gemma" }));
    const out = path.join(dir, "never.gguf");
    const bad = await quantlabInProcess("export", model, "--to", "gguf", "--type", "Q8_0", "--out", out);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/writes llama, mistral, qwen2 models; this config is "gemma"/);
    await rm(path.join(model, "tokenizer.json"));
    await writeFile(path.join(model, "config.json"), JSON.stringify(config));
    const noTokenizer = await quantlabInProcess("export", model, "--to", "gguf", "--type", "Q8_0", "--out", out);
    expect(noTokenizer.code).toBe(2);
    expect(noTokenizer.stderr).toMatch(/no tokenizer\.json/);
    const noDir = await quantlabInProcess("export", STORIES_DIR, "--to", "gguf", "--type", "Q8_0", "--out", path.join(dir, "missing/x.gguf"));
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toMatch(/cannot write/);
    expect((await readdir(dir)).filter((f) => f.includes("never") || f.includes("partial"))).toEqual([]);
  });
});
