/**
 * The lab is a plain lit app: no framework plugin. The model worker is an ES module worker
 * (workers/model-worker.ts, loaded with `new Worker(new URL(...), { type: "module" })`).
 * Everything is bundled: the app works offline, with no CDN fonts or scripts.
 */
import { defineConfig } from "vite";

export default defineConfig({
  worker: { format: "es" },
  build: {
    target: "es2022",
    // The demo and the readers are small; a warning would only be noise once ONNX Runtime lands.
    chunkSizeWarningLimit: 2048,
  },
  // 127.0.0.1, not localhost: a secure context for WebGPU, and the address the e2e tests expect.
  server: { host: "127.0.0.1", port: 5173, strictPort: false },
  preview: { host: "127.0.0.1", port: 4173, strictPort: true },
  // onnxruntime-web ships its own wasm loaders; pre-bundling them breaks their relative URLs.
  optimizeDeps: { exclude: ["onnxruntime-web"] },
});
