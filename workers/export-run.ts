/**
 * The quantization worker's GGUF export: the model's side files found, the plan checked whole (nothing is
 * written for a model GGUF cannot express), then the file streamed into the user's file (File System Access
 * API: written to a swap file and moved into place on close, so an aborted export leaves the target as it
 * was) or into Blob parts for a download.
 */
import type { OpenedModel } from "../src/formats/model.ts";
import { exportGguf, planGgufExport, ExportError } from "../src/pipeline/export-gguf.ts";
import type { ModelInput } from "./model-input.ts";
import { inputSidecar } from "./side-files.ts";
import type { GgufExportProgress, GgufExportReport, GgufExportRequest } from "./quant-worker-api.ts";

/** What every export says when the model came without its config.json. */
export function noConfigError(input: ModelInput): ExportError {
  return new ExportError(
    input.kind === "demo"
      ? "the synthetic demo has no config.json or tokenizer: open a real model (its safetensors with config.json and tokenizer.json) to export it"
      : "no config.json came with the model: pick it (and tokenizer.json) together with the safetensors",
  );
}

export async function runGgufExport(
  request: GgufExportRequest,
  model: OpenedModel,
  input: ModelInput,
  signal: AbortSignal,
  onProgress?: (p: GgufExportProgress) => void,
): Promise<GgufExportReport> {
  const [config, tokenizer, tokenizerConfig] = await Promise.all(
    ["config.json", "tokenizer.json", "tokenizer_config.json"].map((n) => inputSidecar(input, n, signal)),
  );
  if (config === undefined) throw noConfigError(input);
  const plan = await planGgufExport({ model, config, tokenizer, tokenizerConfig, name: model.name.replace(/\.safetensors$/, "") }, request.fileType);
  const fallbacks = plan.tensors.flatMap((t) => (t.fallbackFrom ? [{ tensor: t.entry.name, wanted: t.fallbackFrom, written: t.entry.type.name }] : []));
  const progress = { onTensor: (done: number, total: number, tensor: string) => onProgress?.({ jobId: request.jobId, done, total, tensor }) };

  if (request.target) {
    const writable = await request.target.createWritable();
    try {
      const layout = await exportGguf(plan, { write: (bytes) => writable.write(bytes as Uint8Array<ArrayBuffer>) }, { signal, ...progress });
      await writable.close();
      return { jobId: request.jobId, fileType: plan.fileType, bytes: layout.fileBytes, tensors: plan.tensors.length, fallbacks };
    } catch (e) {
      await writable.abort().catch(() => {});
      throw e;
    }
  }
  const parts: Uint8Array<ArrayBuffer>[] = [];
  const layout = await exportGguf(plan, { write: async (bytes) => void parts.push(bytes.slice()) }, { signal, ...progress });
  const blob = new Blob(parts, { type: "application/octet-stream" });
  return { jobId: request.jobId, fileType: plan.fileType, bytes: layout.fileBytes, tensors: plan.tensors.length, fallbacks, blob };
}
