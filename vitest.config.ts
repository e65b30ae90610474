/**
 * Two test projects:
 *  - "unit":    Node, src/**\/*.test.ts and test/**\/*.test.ts (not the browser ones).
 *  - "browser": real headless Chromium with WebGPU (SwiftShader when there is no GPU), src/**\/*.browser.test.ts,
 *               so WGSL actually compiles and runs.
 * Browser tests read ../shared through Vite's /@fs/ route; its absolute path is handed to them with
 * `provide` (read it with `inject("sharedDir")`).
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { playwright } from "@vitest/browser-playwright";
import { BrowserNotFoundError, CHROMIUM_ARGS, findChromium } from "./src/node/find-browser.ts";

const repoRoot = path.dirname(fileURLToPath(import.meta.url));
const sharedDir = path.resolve(repoRoot, "../shared");
// onnxruntime-web fetches its .wasm from node_modules, which may be a symlink out of the repo (a git worktree's).
const nodeModulesDir = realpathSync(path.join(repoRoot, "node_modules"));

/** True when this run includes the browser project (no --project filter, or one naming "browser"). */
function runsBrowserProject(argv: string[]): boolean {
  const named: string[] = [];
  argv.forEach((arg, i) => {
    if (arg === "--project") named.push(argv[i + 1] ?? "");
    else if (arg.startsWith("--project=")) named.push(arg.slice("--project=".length));
  });
  return named.length === 0 || named.some((n) => n === "browser" || n.includes("*"));
}

/**
 * Finding no browser must end the run with findChromium()'s instructions, not a config stack trace.
 * A unit-only run does not need a browser at all, so it is not stopped.
 */
function chromiumOrExit(): string | undefined {
  try {
    return findChromium();
  } catch (e) {
    if (!(e instanceof BrowserNotFoundError)) throw e;
    if (!runsBrowserProject(process.argv)) return undefined;
    process.stderr.write(`\n${e.message}\n\n`);
    process.exit(1);
  }
}

const executablePath = chromiumOrExit();

declare module "vitest" {
  export interface ProvidedContext {
    /** Absolute path of ../shared (reference models and data), for /@fs/ fetches in browser tests. */
    sharedDir: string;
  }
}

export default defineConfig({
  test: {
    provide: { sharedDir },
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          environment: "node",
          include: ["src/**/*.test.ts", "test/**/*.test.ts"],
          exclude: ["**/*.browser.test.ts", "**/node_modules/**"],
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
        server: { fs: { allow: [repoRoot, sharedDir, nodeModulesDir] } },
        test: {
          name: "browser",
          include: ["src/**/*.browser.test.ts"],
          testTimeout: 60_000,
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({ launchOptions: { executablePath, args: CHROMIUM_ARGS } }),
            instances: [{ browser: "chromium" }],
            screenshotFailures: false,
          },
        },
      },
    ],
  },
});
