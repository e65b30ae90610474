#!/usr/bin/env node
// The quantlab CLI runs the lab's TypeScript sources directly: tsx's ESM loader compiles them on
// import, so there is no build step between a checkout and `npx quantlab`. The GPU modules import
// their WGSL with vite's `?raw` suffix; bin/raw-imports.js serves those files as strings.
import { register } from "tsx/esm/api";
import { registerRawImports } from "./raw-imports.js";

register();
registerRawImports();
const { run } = await import(new URL("../src/cli/main.ts", import.meta.url).href);
process.exitCode = await run(process.argv.slice(2));
