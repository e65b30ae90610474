/**
 * End-to-end tests: the built app (`vite build`, done by `npm run test:e2e`) served by `vite preview`,
 * driven in headless Chromium with WebGPU. Playwright cannot download browsers here, so the
 * executable always comes from findChromium() (QUANTLAB_CHROMIUM, CHROME_PATH, the usual places).
 */
import { defineConfig } from "@playwright/test";
import { CHROMIUM_ARGS, findChromium } from "./src/node/find-browser.ts";

/** Fixed by default; overridable so two checkouts can run their suites side by side. */
const port = Number(process.env["QUANTLAB_E2E_PORT"] ?? 4173);

export default defineConfig({
  testDir: "e2e",
  outputDir: "test-results",
  fullyParallel: false,
  workers: 1,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  forbidOnly: !!process.env["CI"],
  reporter: [["list"]],
  webServer: {
    command: `npx vite preview --port ${port} --strictPort`,
    url: `http://127.0.0.1:${port}/`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: "ignore",
    stderr: "pipe",
  },
  use: {
    baseURL: `http://127.0.0.1:${port}/`,
    viewport: { width: 1280, height: 800 },
    screenshot: "only-on-failure",
    trace: "off",
  },
  projects: [
    {
      name: "chromium",
      use: {
        browserName: "chromium",
        launchOptions: { executablePath: findChromium(), args: CHROMIUM_ARGS },
      },
    },
  ],
});
