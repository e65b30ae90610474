/** Runs the CLI as a user does: `node bin/quantlab.js ...` in a child process. Node-only test helper. */
import { execFile } from "node:child_process";
import path from "node:path";
import { REPO_ROOT } from "./shared-data.ts";

export const QUANTLAB_BIN = path.join(REPO_ROOT, "bin/quantlab.js");

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function quantlab(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [QUANTLAB_BIN, ...args], { cwd: REPO_ROOT, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The same command line run inside this process (src/cli/main.ts's run with captured output): for
 * tests that repeat one path many times, so the suite does not spawn a process per case.
 */
export async function quantlabInProcess(...args: string[]): Promise<CliRun> {
  const { run } = await import("../src/cli/main.ts");
  let stdout = "";
  let stderr = "";
  const code = await run(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}
