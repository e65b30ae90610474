/**
 * The whole-model results table as data: cell values for the metric shown, their colour buckets, row
 * sorting, the model totals per format and the per-layer sensitivity. The UI (src/ui/results-table.ts) and
 * the CLI (`quantlab quantize`) show exactly this; neither computes anything of its own.
 *
 * Pure: rows come from quantizeModel (src/pipeline/quantize-model.ts) or the results cache.
 */
import { OUTSIDE_LAYERS_GROUP, naturalCompare } from "../formats/catalog.ts";
import type { ModelCell, StoredSize, TensorResults } from "./quantize-model.ts";

/** What a cell shows ("outErr": the layer's relative output error on its calibration activations). */
export type CellMetric = "rmse" | "snr" | "bpw" | "outErr";

export const CELL_METRICS: readonly CellMetric[] = ["snr", "rmse", "bpw", "outErr"];

/** The metrics whose colours are on the table's own logarithmic range (they have no fixed good/bad edges). */
function logScaled(metric: CellMetric): boolean {
  return metric === "rmse" || metric === "outErr";
}

/** The metric's value in a cell; undefined for a format that could not take the tensor. */
export function cellValue(cell: ModelCell, metric: CellMetric): number | undefined {
  if (!cell.ok) return undefined;
  switch (metric) {
    case "rmse":
      return cell.metrics.rmse;
    case "snr":
      return cell.metrics.snrDb;
    case "bpw":
      return cell.bitsPerWeight;
    case "outErr":
      return cell.outputError?.calibration;
  }
}

/** Colour buckets: 0 (best: little error, few bits) to COLOUR_BUCKETS - 1 (worst). */
export const COLOUR_BUCKETS = 5;

/**
 * Fixed edges, so a colour means the same in every model: SNR in dB (more is better: 40 dB and up is
 * bucket 0, below 10 dB the last one), bits per weight (fewer is better here: the point is the saving).
 */
const SNR_EDGES = [40, 30, 20, 10];
const BPW_EDGES = [3, 4.5, 6, 9];

/**
 * The scale cells are bucketed on: for RMSE the table's range (logarithmic), since RMSE has the weights'
 * units; likewise the output error.
 */
export interface ColourScale {
  metric: CellMetric;
  /** log10 of the smallest and largest positive finite value in the table (RMSE, output error). */
  logMin?: number;
  logMax?: number;
}

export function colourScale(rows: readonly TensorResults[], metric: CellMetric): ColourScale {
  if (!logScaled(metric)) return { metric };
  let min = Infinity;
  let max = -Infinity;
  for (const row of rows) {
    for (const cell of row.cells) {
      const v = cellValue(cell, metric);
      if (v === undefined || !(v > 0) || !Number.isFinite(v)) continue;
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
  }
  return min <= max ? { metric, logMin: Math.log10(min), logMax: Math.log10(max) } : { metric };
}

/** The bucket of a value on the scale; undefined when there is no value (a failed cell, NaN). */
export function colourBucket(value: number | undefined, scale: ColourScale): number | undefined {
  if (value === undefined || Number.isNaN(value)) return undefined;
  const last = COLOUR_BUCKETS - 1;
  switch (scale.metric) {
    case "snr": {
      const i = SNR_EDGES.findIndex((edge) => value >= edge);
      return i < 0 ? last : i;
    }
    case "bpw": {
      const i = BPW_EDGES.findIndex((edge) => value <= edge);
      return i < 0 ? last : i;
    }
    case "rmse":
    case "outErr": {
      if (value <= 0) return 0;
      if (!Number.isFinite(value)) return last;
      const { logMin, logMax } = scale;
      if (logMin === undefined || logMax === undefined || logMax === logMin) return 0;
      const t = (Math.log10(value) - logMin) / (logMax - logMin);
      return Math.min(last, Math.max(0, Math.floor(t * COLOUR_BUCKETS)));
    }
  }
}

/** A column to sort by: the tensor's name, size or layer, or one format's cell metric. */
export type SortKey = { by: "tensor" | "params" | "group" } | { by: "format"; format: string; metric: CellMetric };

/**
 * Rows sorted by `key` (names in natural order: layers.2 before layers.10). Cells without a value go last
 * whichever the direction; ties keep the natural name order.
 */
export function sortResults(rows: readonly TensorResults[], formats: readonly string[], key: SortKey, dir: "asc" | "desc" = "asc"): TensorResults[] {
  const sign = dir === "asc" ? 1 : -1;
  const byName = (a: TensorResults, b: TensorResults) => naturalCompare(a.tensor, b.tensor);
  if (key.by !== "format") {
    if (key.by === "tensor") return [...rows].sort((a, b) => sign * byName(a, b));
    if (key.by === "group") return [...rows].sort((a, b) => sign * naturalCompare(a.group, b.group) || byName(a, b));
    return [...rows].sort((a, b) => sign * (a.params - b.params) || byName(a, b));
  }
  const column = formats.indexOf(key.format);
  const value = (r: TensorResults) => {
    const cell = r.cells[column];
    return cell ? cellValue(cell, key.metric) : undefined;
  };
  return [...rows].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const missingA = va === undefined || Number.isNaN(va);
    const missingB = vb === undefined || Number.isNaN(vb);
    if (missingA || missingB) return missingA === missingB ? byName(a, b) : missingA ? 1 : -1;
    return va === vb ? byName(a, b) : sign * (va! < vb! ? -1 : 1);
  });
}

/** A tensor a format could not take, and what the totals count instead. */
export interface Substitution {
  tensor: string;
  stored: StoredSize;
}

export interface FormatTotals {
  format: string;
  tensors: number;
  params: number;
  /** The tensors' bytes as stored in the file. */
  bytesBefore: number;
  /** What the format would store: each tensor's StoredSize, fallbacks included. */
  bytesAfter: number;
  /** 1 - bytesAfter / bytesBefore. */
  shareSaved: number;
  /** bytesAfter x 8 / params. */
  bitsPerWeight: number;
  /** Over the measured tensors: sqrt(sum of squared errors / weights). */
  rmse: number;
  /** Over the measured tensors with a known signal energy: 10 log10(sum x^2 / sum e^2). */
  snrDb: number;
  /** The mean relative output error on the calibration activations over the tensors that have one (NaN: none). */
  meanOutputError: number;
  /** Where those activations came from ("synthetic" when any of them was). */
  outputErrorSource: "model" | "synthetic" | "file" | undefined;
  /** Tensors counted in another size than the format's own measured one (fallback, as stored, unmeasured). */
  substitutions: Substitution[];
}

/** A format's substitutions grouped by what they are counted as (most tensors first). */
export function substitutionGroups(totals: FormatTotals): { stored: Omit<StoredSize, "bytes">; tensors: number }[] {
  const groups = new Map<string, { stored: Omit<StoredSize, "bytes">; tensors: number }>();
  for (const { stored } of totals.substitutions) {
    const key = `${stored.kind}\n${stored.as}`;
    const group = groups.get(key);
    if (group) group.tensors++;
    else groups.set(key, { stored: { as: stored.as, kind: stored.kind }, tensors: 1 });
  }
  return [...groups.values()].sort((a, b) => b.tensors - a.tensors || naturalCompare(a.stored.as, b.stored.as));
}

/** Summed energies of one column's cells over some rows. */
interface ColumnEnergies {
  /** Sum of squared errors and the weights it is over (measured cells). */
  errorEnergy: number;
  weights: number;
  /** Sum of x^2 and of e^2 over the measured cells whose tensor's signal energy is known, and how many. */
  signal: number;
  signalError: number;
  withSignal: number;
  /** Cells of a format that could not take the tensor. */
  unmeasured: number;
}

function columnEnergies(rows: readonly TensorResults[], column: number): ColumnEnergies {
  const sums: ColumnEnergies = { errorEnergy: 0, weights: 0, signal: 0, signalError: 0, withSignal: 0, unmeasured: 0 };
  for (const row of rows) {
    const cell = row.cells[column];
    if (!cell) continue;
    if (!cell.ok) {
      sums.unmeasured++;
      continue;
    }
    if (cell.metrics.count === 0) continue;
    const e = cell.metrics.mse * cell.metrics.count;
    sums.errorEnergy += e;
    sums.weights += cell.metrics.count;
    // A tensor without a known signal energy had no error in any format: it loses nothing anywhere.
    if (row.signalEnergy === undefined) continue;
    sums.signal += row.signalEnergy;
    sums.signalError += e;
    sums.withSignal++;
  }
  return sums;
}

/** 10 log10(signal / error): +Infinity without error, NaN without signal. */
function snrDbOf(signal: number, error: number): number {
  if (!(signal > 0)) return NaN;
  return error > 0 ? 10 * Math.log10(signal / error) : Infinity;
}

/** Per format, the model totals (see FormatTotals); rows without a cell for a format are not counted in it. */
export function modelTotals(rows: readonly TensorResults[], formats: readonly string[]): FormatTotals[] {
  return formats.map((format, column) => {
    const t: FormatTotals = {
      format,
      tensors: 0,
      params: 0,
      bytesBefore: 0,
      bytesAfter: 0,
      shareSaved: 0,
      bitsPerWeight: 0,
      rmse: NaN,
      snrDb: NaN,
      meanOutputError: NaN,
      outputErrorSource: undefined,
      substitutions: [],
    };
    let outputErrors = 0;
    let outputErrorSum = 0;
    for (const row of rows) {
      const cell = row.cells[column];
      if (!cell) continue;
      if (cell.ok && cell.outputError) {
        outputErrors++;
        outputErrorSum += cell.outputError.calibration;
        if (t.outputErrorSource !== "synthetic") t.outputErrorSource = cell.outputError.source;
      }
      t.tensors++;
      t.params += row.params;
      t.bytesBefore += row.bytes;
      t.bytesAfter += cell.stored.bytes;
      if (cell.stored.kind !== "format") t.substitutions.push({ tensor: row.tensor, stored: cell.stored });
    }
    const energies = columnEnergies(rows, column);
    t.shareSaved = t.bytesBefore > 0 ? 1 - t.bytesAfter / t.bytesBefore : 0;
    t.bitsPerWeight = t.params > 0 ? (t.bytesAfter * 8) / t.params : 0;
    if (energies.weights > 0) t.rmse = Math.sqrt(energies.errorEnergy / energies.weights);
    t.snrDb = snrDbOf(energies.signal, energies.signalError);
    if (outputErrors > 0) t.meanOutputError = outputErrorSum / outputErrors;
    return t;
  });
}

/** One layer under one format. */
export interface LayerLoss {
  /** 10 log10(sum x^2 / sum e^2) over the layer's measured tensors (NaN when none was measured). */
  snrDb: number;
  /** sum e^2 / sum x^2: the share of the layer's signal lost to the error. */
  relativeError: number;
  /** 1 = loses most under this format; ties share a rank. Unmeasured layers have none. */
  rank: number | undefined;
  /** relativeError / the worst layer's (0..1), for a bar. */
  barShare: number;
  /** Tensors of the layer the format could not take (not in the figures). */
  unmeasured: number;
}

export interface LayerSensitivity {
  group: string;
  tensors: number;
  /** One per format, in the run's order. */
  losses: LayerLoss[];
}

/**
 * Which layers lose most under each format: tensors grouped by layer (TensorResults.group), the layer's
 * SNR over its tensors' summed signal and error energy, ranked per format. Layers in natural order, the
 * tensors outside the numbered layers (embeddings, final norm, head) last.
 */
export function layerSensitivity(rows: readonly TensorResults[], formats: readonly string[]): LayerSensitivity[] {
  const groups = new Map<string, TensorResults[]>();
  for (const row of rows) {
    const list = groups.get(row.group);
    if (list) list.push(row);
    else groups.set(row.group, [row]);
  }
  const outsideLast = (a: string, b: string) => Number(a === OUTSIDE_LAYERS_GROUP) - Number(b === OUTSIDE_LAYERS_GROUP) || naturalCompare(a, b);
  const layers: LayerSensitivity[] = [...groups.keys()].sort(outsideLast).map((group) => {
    const members = groups.get(group)!;
    const losses = formats.map((_, column): LayerLoss => {
      const { signal, signalError, withSignal, unmeasured } = columnEnergies(members, column);
      const measured = withSignal > 0 && signal > 0;
      return { snrDb: measured ? snrDbOf(signal, signalError) : NaN, relativeError: measured ? signalError / signal : NaN, rank: undefined, barShare: 0, unmeasured };
    });
    return { group, tensors: members.length, losses };
  });
  formats.forEach((_, column) => {
    const measured = layers.map((l) => l.losses[column]!).filter((l) => !Number.isNaN(l.relativeError));
    const worst = Math.max(0, ...measured.map((l) => l.relativeError));
    for (const loss of measured) {
      loss.rank = 1 + measured.filter((o) => o.relativeError > loss.relativeError).length;
      loss.barShare = worst > 0 ? loss.relativeError / worst : 0;
    }
  });
  return layers;
}

/** The layers in order of loss under one format (worst first); unmeasured layers left out. */
export function layersByLoss(layers: readonly LayerSensitivity[], column: number): LayerSensitivity[] {
  return layers
    .filter((l) => l.losses[column]?.rank !== undefined)
    .sort((a, b) => a.losses[column]!.rank! - b.losses[column]!.rank! || naturalCompare(a.group, b.group));
}
