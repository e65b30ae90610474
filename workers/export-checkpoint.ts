/**
 * The quantization worker's GPTQ / AWQ / ONNX exports: the model's side files found, the decoder loaded,
 * the linear layers' inputs taken from its own run on the bundled calibration text where the target
 * calibrates (onnxruntime-web, wasm: the same numbers as `quantlab export`), then the files built in memory
 * (src/pipeline/export-quantized.ts, src/model/evaluate.ts precisionModel) and handed back as Blobs for the
 * page to save.
 */
import type { OpenedModel } from "../src/formats/model.ts";
import { ModelInputError } from "../src/model/architecture.ts";
import { collectCalibration, precisionModel } from "../src/model/evaluate.ts";
import { loadDecoder, type LoadedDecoder, type ModelTextFiles } from "../src/model/load.ts";
import { calibratedMethod, checkPrecision } from "../src/model/precision.ts";
import { ExportError } from "../src/pipeline/export-gguf.ts";
import { noConfigError } from "./export-run.ts";
import { checkpointFiles, quantizeForExport, TOKENIZER_FILES } from "../src/pipeline/export-quantized.ts";
import type { ModelInput } from "./model-input.ts";
import type { CheckpointExportReport, CheckpointExportRequest } from "./quant-worker-api.ts";
import { inputSidecarBlob, inputSidecarText } from "./side-files.ts";

const CALIBRATION_TEXT = new URL("models/stories260K/calibration.txt", new URL(import.meta.env.BASE_URL, self.location.origin));

async function calibrationOf(decoder: LoadedDecoder, signal: AbortSignal): Promise<Map<string, Float32Array>> {
  if (!decoder.tokenizer) throw new ModelInputError("no tokenizer.json came with the model: the calibration text cannot be turned into tokens");
  const response = await fetch(CALIBRATION_TEXT, { signal });
  if (!response.ok) throw new Error(`${CALIBRATION_TEXT.pathname}: HTTP ${response.status}`);
  const ids = decoder.tokenizer.encode(await response.text()).slice(0, decoder.arch.maxPositionEmbeddings);
  const ort = await import("onnxruntime-web/webgpu");
  ort.env.wasm.numThreads = 1;
  return collectCalibration(decoder, ids, { ort, executionProvider: "wasm" });
}

export async function runCheckpointExport(
  request: CheckpointExportRequest,
  model: OpenedModel,
  input: ModelInput,
  signal: AbortSignal,
  onStage?: (stage: string) => void,
): Promise<CheckpointExportReport> {
  const { target } = request;
  if (target.kind === "onnx") checkPrecision(target.precision);
  const config = await inputSidecarText(input, "config.json", signal);
  if (config === undefined) throw noConfigError(input);
  const texts: ModelTextFiles = { config };
  const tokenizer = await inputSidecarText(input, "tokenizer.json", signal);
  const tokenizerConfig = await inputSidecarText(input, "tokenizer_config.json", signal);
  if (tokenizer !== undefined) texts.tokenizer = tokenizer;
  if (tokenizerConfig !== undefined) texts.tokenizerConfig = tokenizerConfig;
  const decoder = await loadDecoder(texts, model, signal);
  const calibrates = target.kind !== "onnx" || calibratedMethod(target.precision) !== undefined;
  if (calibrates) onStage?.("calibrating");
  const calibration = calibrates ? await calibrationOf(decoder, signal) : undefined;
  signal.throwIfAborted();

  if (target.kind === "onnx") {
    onStage?.("packing");
    const { prepared, bytes } = precisionModel(decoder, target.precision, {}, calibration ? { calibration } : {});
    const name = `${model.name.replace(/\.safetensors$/, "")}-${target.precision}.onnx`;
    return {
      jobId: request.jobId,
      files: [{ name, blob: new Blob([bytes as Uint8Array<ArrayBuffer>]) }],
      bytes: bytes.length,
      packed: 0,
      unconverted: [],
      fallbacks: prepared.fallbacks.map((f) => ({ tensor: f.tensor, to: f.to })),
    };
  }
  onStage?.("quantizing");
  const result = quantizeForExport(
    { arch: decoder.arch, weights: decoder.weights, config: JSON.parse(config) as Record<string, unknown>, calibration: calibration! },
    { method: target.kind, bits: target.bits, group: target.group, sym: target.sym, actOrder: target.actOrder },
  );
  if (result.layers.length === 0) {
    throw new ExportError(`no linear layer fits the ${target.kind.toUpperCase()} layout at these settings (${result.unconverted[0]?.reason ?? "no layers"})`);
  }
  onStage?.("packing");
  const files = checkpointFiles(result).map((f) => ({ name: f.name, blob: new Blob(f.parts as Uint8Array<ArrayBuffer>[]) }));
  for (const name of TOKENIZER_FILES) {
    const blob = await inputSidecarBlob(input, name, signal);
    if (blob) files.push({ name, blob });
  }
  return {
    jobId: request.jobId,
    files,
    bytes: files.reduce((s, f) => s + f.blob.size, 0),
    packed: result.layers.length,
    unconverted: result.unconverted,
    fallbacks: [],
  };
}
