import { describe, expect, it } from "vitest";
import path from "node:path";
import { quantlab, quantlabInProcess } from "../../test/quantlab-cli.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";

describe("quantlab memory", () => {
  it("prints the issue's JSON shape for inference and training", async () => {
    const r = await quantlab("memory", "--config", "qwen2.5-7b", "--precision", "q4_K_M", "--context", "4096", "--batch", "1", "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(j)).toEqual(["params", "components", "total_bytes", "gpu_bytes", "cpu_bytes", "fits"]);
    expect(Object.keys(j["components"] as object)).toEqual(["weights", "kv_cache", "activations", "overhead"]);
    expect(j["params"]).toBe(7_615_616_512);
    expect((j["components"] as Record<string, number>)["kv_cache"]).toBe(234_881_024);
    expect(j["fits"]).toBe(true);

    const t = await quantlabInProcess("memory", "--config", path.join(STORIES_DIR, "config.json"), "--precision", "bf16", "--train", "qlora", "--seq", "256", "--recompute", "full", "--json");
    expect(t.code).toBe(0);
    const tj = JSON.parse(t.stdout) as { components: Record<string, number>; params: number };
    expect(Object.keys(tj.components)).toEqual(["weights", "kv_cache", "activations", "overhead", "gradients", "optimizer"]);
    expect(tj.params).toBe(260_032);
  });

  it("answers fits with n_gpu_layers = k, and --context 0 gives the static footprint", async () => {
    const r = await quantlabInProcess("memory", "--config", "qwen2.5-72b", "--precision", "q4_K_M", "--framework", "ollama", "--gpu", "4090");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/FITS: fits with n_gpu_layers = \d+/);
    const s = await quantlabInProcess("memory", "--config", "qwen2.5-7b", "--precision", "fp16", "--context", "0", "--json");
    const j = JSON.parse(s.stdout) as { components: Record<string, number> };
    expect(j.components["kv_cache"]).toBe(0);
    expect(j.components["activations"]).toBe(0);
  });

  it("prints the GGUF size table", async () => {
    const r = await quantlabInProcess("memory", "--gguf-table", "--json");
    expect(r.code).toBe(0);
    const rows = (JSON.parse(r.stdout) as { rows: { model: string; type: string; bytes: number }[] }).rows;
    expect(rows.length).toBe(24);
    expect(rows.find((x) => x.model === "qwen2.5-7b" && x.type === "q4_K_M")!.bytes / 1e9).toBeCloseTo(4.68, 2);
    const text = await quantlabInProcess("memory", "--gguf-table");
    expect(text.stdout).toMatch(/qwen2\.5-72b\s+77\.26 GB/);
  });

  it("exits 2 with one line on bad input", async () => {
    const cases: [string[], RegExp][] = [
      [["--config", "nope", "--precision", "fp16"], /nope: no such file, and not a preset/],
      [["--config", "qwen2.5-7b", "--precision", "zz"], /unknown precision "zz"/],
      [["--config", "qwen2.5-7b", "--precision", "fp16", "--context=-5"], /--context must be an integer >= 0, got "-5"/],
      [["--config", "qwen2.5-7b", "--precision", "fp16", "--framework", "tgi"], /--framework must be one of/],
      [["--config", "qwen2.5-7b"], /--precision is required/],
      [["--config", STORIES_DIR, "--precision", "fp16"], /is a folder, expected a config\.json/],
    ];
    for (const [args, message] of cases) {
      const r = await quantlabInProcess("memory", ...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
  });
});
