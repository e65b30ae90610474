/**
 * One tensor through registry formats and calibrated settings (GPTQ / AWQ / AWQ+GPTQ) alike: what the
 * Quantize table, the whole-model table and `quantlab quantize` run, so the methods take part like any
 * format. Registry formats stream through quantizeTensor; the calibrated settings take the tensor whole
 * (src/pipeline/calibrated-tensor.ts: GPU when there is one, else the CPU reference). Every result carries
 * the same metrics and size (for the methods: codes, float16 scales, zero points and g_idx, see
 * calibratedBytes) and, when the layer has calibration activations, the output error on them and on the
 * held-out tokens, for every format, with the activations' source.
 */
import { tensorRowLayout } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import { calibratedBytes, calibratedMethod, methodName, type CalibratedMethod } from "../quant/calibrated.ts";
import { isQuantInputError } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { DEFAULT_METRICS_BLOCK, errorMetrics, type SizeMetrics } from "../quant/metrics.ts";
import { relOutputErrorGram } from "../quant/output-error.ts";
import { getFormat } from "../quant/registry.ts";
import {
  assertCalibratable,
  MAX_CALIBRATED_WORK,
  readWholeTensor,
  runCalibrated,
  syntheticCalibration,
  type LayerCalibration,
} from "./calibrated-tensor.ts";
import { quantizeTensor, type CalibrationKind, type FormatResult, type QuantizeTensorOptions, type TensorQuantization } from "./quantize-tensor.ts";

/** A registry format or a calibrated setting. */
export type LabFormat = QuantFormat | CalibratedMethod;

export function isCalibrated(f: LabFormat): f is CalibratedMethod {
  return "method" in f;
}

/** A format id or alias of the registry, or a calibrated setting's id ("gptq4-g128-act"); unknown ids throw. */
export function labFormat(id: string): LabFormat {
  return calibratedMethod(id) ?? getFormat(id);
}

/** Where a layer's activations came from, for the tables. */
export interface CalibrationSummary {
  source: CalibrationKind;
  label: string;
  warnings: string[];
}

export interface QuantizeLayerOptions extends QuantizeTensorOptions {
  /**
   * The layer's calibration (its inputs from a model run, or a file); undefined when there is none. Without
   * it, synthetic activations stand in when a calibrated setting is asked for (and say so).
   */
  calibration?: (tensor: TensorInfo, shape: MatrixShape) => Promise<LayerCalibration | undefined>;
  /** Why there are no real activations (said in the synthetic calibration's label). */
  syntheticWhy?: string;
}

export interface LayerQuantization extends TensorQuantization {
  /** The activations the output errors (and the calibrated settings) used; undefined when none were. */
  calibration?: CalibrationSummary;
}

/** Quantizes one tensor with each format or setting, in the order asked; see the module comment. */
export async function quantizeLayer(tensor: TensorInfo, formats: readonly LabFormat[], opts: QuantizeLayerOptions = {}): Promise<LayerQuantization> {
  const { signal } = opts;
  const { rows, rowLength: cols } = tensorRowLayout(tensor);
  const shape: MatrixShape = { rows, cols };
  const registry = formats.filter((f): f is QuantFormat => !isCalibrated(f));
  const calibrated = formats.filter(isCalibrated);
  // Output errors cost rows x cols^2 per format: only for layers the views can calibrate at all.
  const measurable = rows >= 2 && rows * cols * cols <= MAX_CALIBRATED_WORK;
  let cal = measurable ? await opts.calibration?.(tensor, shape) : undefined;
  if (!cal && measurable && calibrated.length > 0) cal = syntheticCalibration(cols, opts.syntheticWhy);
  signal?.throwIfAborted();

  const extra = tensor.bytes * calibrated.length;
  const tensorOpts: QuantizeTensorOptions = {
    ...opts,
    onProgress: opts.onProgress && ((p) => opts.onProgress!({ ...p, totalBytes: p.totalBytes + extra })),
  };
  if (cal) {
    tensorOpts.outputError = { source: cal.source, calibration: cal.stats.gram };
    if (cal.heldOut) tensorOpts.outputError.heldOut = cal.heldOut.gram;
  }
  const streamed = registry.length > 0 ? await quantizeTensor(tensor, registry, tensorOpts) : { tensor: tensor.name, shape, results: [] };
  const byId = new Map<string, FormatResult>(streamed.results.map((r) => [r.format, r]));
  if (calibrated.length > 0) {
    const done = tensor.bytes * registry.length;
    const results = await calibratedResults(tensor, shape, calibrated, cal, opts, (i, format) =>
      opts.onProgress?.({ format, doneBytes: done + tensor.bytes * i, totalBytes: done + extra }),
    );
    for (const r of results) byId.set(r.format, r);
  }
  const out: LayerQuantization = { tensor: tensor.name, shape, results: formats.map((f) => byId.get(f.id)!) };
  if (cal) out.calibration = { source: cal.source, label: cal.label, warnings: cal.warnings };
  return out;
}

async function calibratedResults(
  tensor: TensorInfo,
  shape: MatrixShape,
  methods: readonly CalibratedMethod[],
  cal: LayerCalibration | undefined,
  opts: QuantizeLayerOptions,
  progress: (done: number, format: string) => void,
): Promise<FormatResult[]> {
  const { signal } = opts;
  const failed = (m: CalibratedMethod, e: unknown): FormatResult => {
    if (!isQuantInputError(e)) throw e;
    return { format: m.id, ok: false, error: { problem: e.problem, message: e.withTensor(tensor.name).message, row: e.row, col: e.col } };
  };
  let x: Float32Array | undefined;
  const out: FormatResult[] = [];
  for (const [i, m] of methods.entries()) {
    signal?.throwIfAborted();
    try {
      assertCalibratable(shape, m, tensor.name);
      x ??= await readWholeTensor(tensor, signal);
      const r = await runCalibrated(x, shape, cal!.stats, m, opts.device, opts.noDeviceReason);
      signal?.throwIfAborted();
      const bytesAfter = calibratedBytes(m, shape, r.group);
      const bytesBefore = tensor.bytes; // as stored (a GGUF tensor's blocks, not float32)
      const size: SizeMetrics = { bitsPerWeight: (bytesAfter * 8) / (shape.rows * shape.cols), bytesBefore, bytesAfter, shareSaved: 1 - bytesAfter / bytesBefore };
      const result: FormatResult = {
        format: m.id,
        ok: true,
        ranOn: r.ranOn,
        metrics: errorMetrics(x, r.q, shape, DEFAULT_METRICS_BLOCK),
        size,
        outputError: { calibration: relOutputErrorGram(cal!.stats.gram, x, r.q, shape), source: cal!.source },
      };
      if (cal!.heldOut) result.outputError!.heldOut = relOutputErrorGram(cal!.heldOut.gram, x, r.q, shape);
      if (r.why !== undefined) result.why = r.why;
      const warnings = [...r.warnings];
      if (r.group !== m.group) warnings.push(`${methodName(m.method)}: rows of ${shape.cols} are not a multiple of the group size ${m.group}: quantized per channel`);
      if (warnings.length > 0) result.warnings = warnings;
      out.push(result);
    } catch (e) {
      if (signal?.aborted) throw e;
      out.push(failed(m, e));
    }
    progress(i + 1, m.id);
  }
  return out;
}
