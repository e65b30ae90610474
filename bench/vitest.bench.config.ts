/**
 * The browser side of `npm run bench`: bench/*.browser.bench.ts in headless Chromium with WebGPU, the same
 * browser and flags as the browser tests (vitest.config.ts). QUANTLAB_BENCH_MATMUL_FULL=1 gives the matmul
 * comparison the issue's full shapes.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { playwright } from "@vitest/browser-playwright";
import { CHROMIUM_ARGS, findChromium } from "../src/node/find-browser.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const full = process.env.QUANTLAB_BENCH_MATMUL_FULL === "1";

export default defineConfig({
  root: repoRoot,
  server: { fs: { allow: [repoRoot, realpathSync(path.join(repoRoot, "node_modules"))] } },
  test: {
    include: ["bench/**/*.browser.bench.ts"],
    provide: {
      // GPTQ's lazy batch update (rows x 128 @ 128 x n) and a Hessian-sized product.
      matmulShapes: full
        ? [
            [4096, 128, 4096],
            [2048, 4096, 4096],
          ]
        : [
            [1024, 128, 1024],
            [512, 1024, 1024],
          ],
      matmulRuns: full ? 3 : 5,
    },
    testTimeout: 3_600_000,
    browser: {
      enabled: true,
      headless: true,
      provider: playwright({ launchOptions: { executablePath: findChromium(), args: CHROMIUM_ARGS } }),
      instances: [{ browser: "chromium" }],
      screenshotFailures: false,
    },
  },
});
