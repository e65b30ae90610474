/**
 * Finds the Chromium (or Chrome) that the browser-mode tests, the e2e tests and the benches drive.
 * Playwright cannot download its own browsers on these machines, so we always pass an executable.
 * Order: $QUANTLAB_CHROMIUM, $CHROME_PATH, then the usual install places of Debian's chromium and of
 * Google Chrome.
 */
import { existsSync } from "node:fs";

const ENV_VARS = ["QUANTLAB_CHROMIUM", "CHROME_PATH"] as const;

const USUAL_PLACES = [
  "/usr/bin/chromium", // Debian's chromium package
  "/usr/bin/chromium-browser", // Ubuntu / older Debian
  "/usr/lib/chromium/chromium",
  "/snap/bin/chromium",
  "/usr/bin/google-chrome-stable", // Google Chrome .deb
  "/usr/bin/google-chrome",
  "/opt/google/chrome/chrome",
  "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
  "/Applications/Chromium.app/Contents/MacOS/Chromium",
];

/** Flags for headless Chromium with real WebGPU (SwiftShader when there is no GPU) on a closed network. */
export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];

export class BrowserNotFoundError extends Error {
  override readonly name = "BrowserNotFoundError";
}

export function findChromium(env: Record<string, string | undefined> = process.env): string {
  for (const v of ENV_VARS) {
    const path = env[v];
    if (!path) continue;
    if (existsSync(path)) return path;
    throw new BrowserNotFoundError(`$${v} is set to ${path}, but no file is there. Point it at a Chromium or Chrome executable.`);
  }
  for (const path of USUAL_PLACES) if (existsSync(path)) return path;
  throw new BrowserNotFoundError(
    [
      "No Chromium or Chrome found for the browser tests.",
      "Looked at $QUANTLAB_CHROMIUM, $CHROME_PATH and " + USUAL_PLACES.join(", ") + ".",
      "Install one with:  sudo apt-get install -y chromium   (Debian; Ubuntu: chromium-browser or Google Chrome's .deb)",
      "or point QUANTLAB_CHROMIUM at an existing executable:  QUANTLAB_CHROMIUM=/path/to/chrome npm test",
      "(`npx playwright install` cannot download browsers on this network; it is not needed.)",
    ].join("\n"),
  );
}
