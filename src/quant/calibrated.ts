/**
 * GPTQ, AWQ and AWQ followed by GPTQ as selectable "formats": the id grammar every view, the model run and
 * the CLI share, what a setting stores, and the CPU reference run of one setting on one layer.
 *
 * Id grammar (one parser, here): METHOD BITS [-GROUP] [-act] [-static] [-sym] [-noclip] [-dampX]
 *   METHOD  gptq | awq | awqgptq (AWQ's scale and clip search, then GPTQ on the scaled weights)
 *   BITS    2..8
 *   GROUP   g32 | g64 | g128 (the default) | channel (one group per row, GPTQ's group -1)
 *   -act    act-order (columns by descending Hessian diagonal)      GPTQ, AWQ+GPTQ
 *   -static static groups (quantizers fixed before the sweep)        GPTQ, AWQ+GPTQ
 *   -sym    symmetric, no zero point (AWQ: its zero-point option off)
 *   -noclip no clipping search                                        AWQ, AWQ+GPTQ
 *   -dampX  dampening X (fraction of the mean Hessian diagonal; 0.01) GPTQ, AWQ+GPTQ
 * e.g. gptq4 (= gptq4-g128), gptq4-g128-act, gptq3-channel-sym, awq4-g32-noclip, awqgptq4-g128-act-damp0.1.
 * Flags come in that order; a flag the method does not have makes the id invalid.
 *
 * What a setting stores (calibratedBytes), as the common GPTQ/AWQ checkpoint layouts do: the codes at `bits`
 * each, one float16 scale per (row, group), the zero points packed at `bits` each when asymmetric, and with
 * act-order the int32 g_idx (each column's group). AWQ's per-channel scales cost nothing: they are folded
 * into the operation before the layer.
 */
import { awqGptqFinish, awqGptqInput, awqQuantize, awqSearch } from "./awq.ts";
import type { MatrixShape } from "./format.ts";
import { DEFAULT_PERC_DAMP, gptqQuantize } from "./gptq.ts";
import type { CalibrationStats } from "./hessian.ts";

export type CalibratedKind = "gptq" | "awq" | "awqgptq";

export interface CalibratedMethod {
  /** The id as given ("gptq4" and "gptq4-g128" are the same setting). */
  id: string;
  method: CalibratedKind;
  bits: number;
  /** Columns per group; -1 for one group per row. */
  group: number;
  actOrder: boolean;
  staticGroups: boolean;
  /** Symmetric, no zero point. */
  sym: boolean;
  /** AWQ's clipping search (AWQ, AWQ+GPTQ). */
  clip: boolean;
  /** GPTQ's dampening (GPTQ, AWQ+GPTQ). */
  percDamp: number;
}

const CALIBRATED_ID = /^(gptq|awqgptq|awq)([2-8])(?:-(g32|g64|g128|channel))?(-act)?(-static)?(-sym)?(-noclip)?(?:-damp(\d+(?:\.\d+)?|\.\d+))?$/;

/** An id of the grammar above parsed; undefined for anything else (registry formats, typos, flags the method lacks). */
export function calibratedMethod(id: string): CalibratedMethod | undefined {
  const m = CALIBRATED_ID.exec(id);
  if (!m) return undefined;
  const method = m[1] as CalibratedKind;
  const usesGptq = method !== "awq";
  if (!usesGptq && (m[4] || m[5] || m[8] !== undefined)) return undefined;
  if (method === "gptq" && m[7]) return undefined;
  const percDamp = m[8] === undefined ? DEFAULT_PERC_DAMP : Number(m[8]);
  return {
    id,
    method,
    bits: Number(m[2]),
    group: m[3] === "channel" ? -1 : Number((m[3] ?? "g128").slice(1)),
    actOrder: m[4] !== undefined,
    staticGroups: m[5] !== undefined,
    sym: m[6] !== undefined,
    clip: m[7] === undefined,
    percDamp,
  };
}

/** The canonical id of a setting (flags in grammar order, defaults left out except the group). */
export function calibratedId(m: Omit<CalibratedMethod, "id">): string {
  const usesGptq = m.method !== "awq";
  return [
    `${m.method}${m.bits}`,
    m.group === -1 ? "-channel" : `-g${m.group}`,
    usesGptq && m.actOrder ? "-act" : "",
    usesGptq && m.staticGroups ? "-static" : "",
    m.sym ? "-sym" : "",
    m.method !== "gptq" && !m.clip ? "-noclip" : "",
    usesGptq && m.percDamp !== DEFAULT_PERC_DAMP ? `-damp${m.percDamp}` : "",
  ].join("");
}

/** The method's name for people: "GPTQ", "AWQ", "AWQ+GPTQ". */
export function methodName(method: CalibratedKind): string {
  return method === "awqgptq" ? "AWQ+GPTQ" : method.toUpperCase();
}

/** The group a setting uses on rows of `cols`: its own when it divides the row, else one per row (per channel). */
export function groupFor(m: { group: number }, cols: number): number {
  return m.group !== -1 && cols % m.group === 0 ? m.group : -1;
}

/** Stored bytes of a [rows, cols] layer in the setting with groups of `group` columns (see the module comment). */
export function calibratedBytes(m: Pick<CalibratedMethod, "bits" | "sym" | "actOrder" | "method">, shape: MatrixShape, group: number): number {
  const { rows, cols } = shape;
  const groups = rows * (group === -1 ? 1 : Math.ceil(cols / group));
  const codes = Math.ceil((rows * cols * m.bits) / 8);
  const scales = groups * 2;
  const zeros = m.sym ? 0 : Math.ceil((groups * m.bits) / 8);
  const gIdx = m.actOrder && m.method !== "awq" ? cols * 4 : 0;
  return codes + scales + zeros + gIdx;
}

/** One setting's result on one layer: the dequantized weights comparable with W and the stored pieces. */
export interface CalibratedOutcome {
  /** Dequantized weights [rows, cols] (AWQ: with its scales divided back out). */
  q: Float32Array;
  /** Per (row, group) quantizer: q = scale * (code - zero) (AWQ: in the scaled domain W*s). */
  scales: Float32Array;
  zeros: Float32Array;
  nGroups: number;
  /** The group size used (-1 when the asked group does not divide the row). */
  group: number;
  warnings: string[];
}

/** Runs a setting on one layer with the CPU references (src/quant/gptq.ts, awq.ts). */
export function calibratedQuantize(weights: Float32Array, shape: MatrixShape, stats: CalibrationStats, m: CalibratedMethod): CalibratedOutcome {
  const group = groupFor(m, shape.cols);
  if (m.method === "gptq") {
    const r = gptqQuantize(weights, shape, stats, gptqOptionsOf(m, group));
    return { q: r.q, scales: r.scales, zeros: r.zeros, nGroups: r.nGroups, group, warnings: r.warnings };
  }
  const awq = awqOptionsOf(m, group);
  if (m.method === "awq") {
    const r = awqQuantize(weights, shape, stats, awq);
    return { q: r.q, scales: r.qscales, zeros: r.qzeros, nGroups: r.nGroups, group, warnings: r.warnings };
  }
  const search = awqSearch(weights, shape, stats, awq);
  const input = awqGptqInput(weights, shape, stats, awq, gptqOptionsOf(m, group), search);
  const gptq = gptqQuantize(input.weights, shape, input.calibration, input.options);
  const r = awqGptqFinish(search, gptq, shape);
  return { q: r.q, scales: gptq.scales, zeros: gptq.zeros, nGroups: gptq.nGroups, group, warnings: gptq.warnings };
}

export function gptqOptionsOf(m: CalibratedMethod, group: number) {
  return { bits: m.bits, group, sym: m.sym, actOrder: m.actOrder, staticGroups: m.staticGroups, percDamp: m.percDamp };
}

export function awqOptionsOf(m: CalibratedMethod, group: number) {
  return { bits: m.bits, group, clip: m.clip, zeroPoint: !m.sym };
}
