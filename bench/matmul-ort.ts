/**
 * (f2) Runs bench/matmul-ort.browser.bench.ts in Chromium (vitest browser mode, bench/vitest.bench.config.ts)
 * and turns its "matmul-ort {json}" lines into a table: our matmul kernel's time over onnxruntime-web's
 * WebGPU MatMul on the same adapter (below 1: ours is faster).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface MatmulOrtRow {
  m: number;
  k: number;
  n: number;
  oursMs: number;
  ortMs: number;
  ratio: number;
  adapter: string;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function matmulOrtBench(): Promise<MatmulOrtRow[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, "node_modules/vitest/vitest.mjs"), "run", "-c", "bench/vitest.bench.config.ts"], { cwd: repoRoot, env: process.env });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const rows = [...out.matchAll(/matmul-ort (\{.*\})/g)].map((m) => JSON.parse(m[1]!) as MatmulOrtRow);
      if (code !== 0 || rows.length === 0) reject(new Error(`the Chromium matmul bench failed (exit ${code}):\n${out.slice(-2000)}`));
      else resolve(rows);
    });
  });
}

export function matmulOrtTable(rows: MatmulOrtRow[]): string {
  const header = ["shape (m x k @ k x n)", "ours", "onnxruntime-web", "ours/ORT"];
  const lines = rows.map((r) => [`${r.m} x ${r.k} @ ${r.k} x ${r.n}`, `${r.oursMs.toFixed(0)} ms`, `${r.ortMs.toFixed(0)} ms`, `${r.ratio.toFixed(2)}x`]);
  const all = [header, ...lines];
  const widths = header.map((_, c) => Math.max(...all.map((l) => l[c]!.length)));
  const fmt = (l: string[]) => l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [
    `Matrix multiply: shaders/matmul.wgsl against onnxruntime-web's WebGPU MatMul in Chromium, same adapter (${rows[0]?.adapter ?? "?"}); upload + multiply + read back, median; ours/ORT < 1: ours is faster`,
    fmt(header),
    ...lines.map(fmt),
    "",
  ].join("\n");
}
