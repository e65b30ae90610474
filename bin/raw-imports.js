// Node module hooks for vite's `?raw` imports: `import code from "../../shaders/x.wgsl?raw"` gives the
// file's text as the default export, as vite does in the browser and in vitest. The lab's GPU modules
// (src/gpu/*) import their WGSL this way; the CLI and the benches run them under tsx, which does not
// know `?raw`. Registered by bin/quantlab.js and by the benches: `registerRawImports()`.
import { readFile } from "node:fs/promises";
import { register } from "node:module";

const RAW = /\?raw$/;

/** Installs the hooks below in this process (once is enough; later calls add nothing harmful). */
export function registerRawImports() {
  register(import.meta.url);
}

export async function resolve(specifier, context, nextResolve) {
  if (!RAW.test(specifier) || !context.parentURL) return nextResolve(specifier, context);
  const url = new URL(specifier, context.parentURL);
  return { url: url.href, shortCircuit: true };
}

export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !RAW.test(url)) return nextLoad(url, context);
  const file = new URL(url);
  file.search = "";
  const text = await readFile(file, "utf8");
  return { format: "module", source: `export default ${JSON.stringify(text)};\n`, shortCircuit: true };
}
