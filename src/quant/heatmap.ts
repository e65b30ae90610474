/**
 * Error heatmaps: a view (a rectangle of the tensor, in weights) pooled onto a grid of cells no larger than
 * the canvas, so a 152064x3584 embedding draws at once and a zoomed view goes down to one weight per cell.
 *
 * Cell (i, j) of a grid of G rows over a view of R rows covers view rows [floor(i*R/G), floor((i+1)*R/G))
 * (likewise columns): every weight in exactly one cell, cells differing by at most one weight in height.
 *
 * One pass gathers, per cell, everything every display mode needs (Cell below), so switching between the
 * weights, absolute, relative and signed error, and between max and mean pooling, costs no new pass. The
 * pass runs on pieces of whole rows as they stream through the quantizers: poolPiece (this CPU reference,
 * or shaders/heatmap.wgsl on the GPU, which produces the same bits) gives each piece's partial cells, and
 * HeatmapAccumulator folds them in (f64 sums). Within a piece every sum is a float32 sum in row-major order,
 * each step rounded (Math.fround), the order the kernel uses.
 *
 * Definitions, e = y - x (y the dequantized weight), over the finite pairs of a cell:
 *   weights:  mean x                      | max: the x of largest |x| (signed)
 *   absolute: mean |e|                    | max |e|
 *   signed:   mean e                      | max: the e of largest |e| (signed)
 *   relative: sum |e| / sum |x| (L1)      | max |e| / |x| over weights x != 0
 *   scale:    mean |block scale|          | max |block scale|   over the blocks (K-quants: sub-blocks) a cell
 *             touches, from the encoded bytes (ScaleAccumulator; formats without blocks have none)
 * (relative error is undefined where x = 0: such weights count in the absolute error only). A cell holding
 * any NaN or +-Inf (in x or y) is marked non-finite and drawn in its own colour, whatever the mode.
 */
import type { MatrixShape } from "./format.ts";

/** A rectangle of the tensor in weight coordinates. */
export interface HeatmapView {
  row0: number;
  col0: number;
  rows: number;
  cols: number;
}

export interface HeatmapGrid {
  view: HeatmapView;
  gridRows: number;
  gridCols: number;
}

export type HeatmapQuantity = "weights" | "abs" | "rel" | "signed" | "scale";
export type HeatmapPooling = "max" | "mean";

/** Words per cell in the partials, CPU and GPU alike: the order of shaders/heatmap.wgsl's Cell struct. */
export const CELL_WORDS = 10;
export const CELL = {
  count: 0, // u32: finite pairs
  nonFinite: 1, // u32: pairs with a NaN or +-Inf
  sumX: 2,
  sumAbsX: 3,
  sumE: 4,
  sumAbsE: 5,
  extX: 6, // x of largest |x|
  maxAbsE: 7,
  extE: 8, // e of largest |e|
  maxRel: 9,
} as const;

/** Largest grid side: keeps i * R below 2^32 for the kernel's u32 arithmetic up to 1M rows. */
export const MAX_GRID_SIDE = 4096;

/** The grid for a view on a canvas of at most maxCols x maxRows cells (one cell per weight when zoomed in). */
export function heatmapGrid(shape: MatrixShape, view: HeatmapView, maxCols: number, maxRows: number): HeatmapGrid {
  const ok =
    Number.isInteger(view.row0) && Number.isInteger(view.col0) && Number.isInteger(view.rows) && Number.isInteger(view.cols) &&
    view.row0 >= 0 && view.col0 >= 0 && view.rows > 0 && view.cols > 0 &&
    view.row0 + view.rows <= shape.rows && view.col0 + view.cols <= shape.cols;
  if (!ok) {
    throw new RangeError(
      `the view rows ${view.row0}+${view.rows}, cols ${view.col0}+${view.cols} is not inside the ${shape.rows}x${shape.cols} tensor`,
    );
  }
  const side = (n: number, max: number) => Math.max(1, Math.min(n, Math.floor(max), MAX_GRID_SIDE));
  const grid = { view, gridRows: side(view.rows, maxRows), gridCols: side(view.cols, maxCols) };
  if (view.rows * grid.gridRows >= 2 ** 32 || view.cols * grid.gridCols >= 2 ** 32) {
    throw new RangeError(`a view of ${view.rows}x${view.cols} weights is too large to pool (the GPU counts in u32)`);
  }
  return grid;
}

/** First weight (relative to the view) of cell i of n over a span of `total`. */
export function cellStart(i: number, total: number, cells: number): number {
  return Math.floor((i * total) / cells);
}

/** The cell (of n over `total`) holding relative position r: the largest i with cellStart(i) <= r. */
export function cellOf(r: number, total: number, cells: number): number {
  return Math.floor(((r + 1) * cells - 1) / total);
}

/** The cell rows a piece of tensor rows [firstRow, firstRow + rows) touches, or undefined when it misses the view. */
export function pieceCellRows(grid: HeatmapGrid, firstRow: number, rows: number): { first: number; count: number } | undefined {
  const { view, gridRows } = grid;
  const a = Math.max(firstRow, view.row0) - view.row0;
  const b = Math.min(firstRow + rows, view.row0 + view.rows) - view.row0;
  if (a >= b) return undefined;
  const first = cellOf(a, view.rows, gridRows);
  return { first, count: cellOf(b - 1, view.rows, gridRows) - first + 1 };
}

/** One piece's partial cells: `count` cell rows from cell row `first`, gridCols cells each, CELL_WORDS words. */
export interface PiecePartials {
  first: number;
  count: number;
  words: Uint32Array;
}

const fr = Math.fround;
const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
const bitsOf = (v: number): number => ((f32[0] = v), f32Bits[0]!);

/**
 * The CPU reference of shaders/heatmap.wgsl: the partial cells of one piece of whole rows. x holds `rows`
 * rows of `cols` values from tensor row `firstRow`, y their dequantized values (pass x again to pool the
 * weights alone). Undefined when the piece misses the view.
 */
export function poolPiece(x: Float32Array, y: Float32Array, cols: number, firstRow: number, rows: number, grid: HeatmapGrid): PiecePartials | undefined {
  const span = pieceCellRows(grid, firstRow, rows);
  if (!span) return undefined;
  const { view, gridRows, gridCols } = grid;
  const words = new Uint32Array(span.count * gridCols * CELL_WORDS);
  const rowA = Math.max(firstRow, view.row0);
  const rowB = Math.min(firstRow + rows, view.row0 + view.rows);
  for (let ci = 0; ci < span.count; ci++) {
    const cellRow = span.first + ci;
    const r0 = Math.max(view.row0 + cellStart(cellRow, view.rows, gridRows), rowA);
    const r1 = Math.min(view.row0 + cellStart(cellRow + 1, view.rows, gridRows), rowB);
    for (let cj = 0; cj < gridCols; cj++) {
      const c0 = view.col0 + cellStart(cj, view.cols, gridCols);
      const c1 = view.col0 + cellStart(cj + 1, view.cols, gridCols);
      let count = 0;
      let nonFinite = 0;
      let sumX = 0;
      let sumAbsX = 0;
      let sumE = 0;
      let sumAbsE = 0;
      let extX = 0;
      let maxAbsE = 0;
      let extE = 0;
      let maxRel = 0;
      for (let r = r0; r < r1; r++) {
        const base = (r - firstRow) * cols;
        for (let c = c0; c < c1; c++) {
          const xv = x[base + c]!;
          const yv = y[base + c]!;
          if (xv - xv !== 0 || yv - yv !== 0) {
            nonFinite++;
            continue;
          }
          const e = fr(yv - xv);
          const ax = Math.abs(xv);
          const ae = Math.abs(e);
          count++;
          sumX = fr(sumX + xv);
          sumAbsX = fr(sumAbsX + ax);
          sumE = fr(sumE + e);
          sumAbsE = fr(sumAbsE + ae);
          if (ax > Math.abs(extX)) extX = xv;
          if (ae > maxAbsE) {
            maxAbsE = ae;
            extE = e;
          }
          if (ax > 0) {
            const rel = fr(ae / ax);
            if (rel > maxRel) maxRel = rel;
          }
        }
      }
      const o = (ci * gridCols + cj) * CELL_WORDS;
      words[o + CELL.count] = count;
      words[o + CELL.nonFinite] = nonFinite;
      words[o + CELL.sumX] = bitsOf(sumX);
      words[o + CELL.sumAbsX] = bitsOf(sumAbsX);
      words[o + CELL.sumE] = bitsOf(sumE);
      words[o + CELL.sumAbsE] = bitsOf(sumAbsE);
      words[o + CELL.extX] = bitsOf(extX);
      words[o + CELL.maxAbsE] = bitsOf(maxAbsE);
      words[o + CELL.extE] = bitsOf(extE);
      words[o + CELL.maxRel] = bitsOf(maxRel);
    }
  }
  return { first: span.first, count: span.count, words };
}

/** A whole grid's cells, summed over the pieces in f64 (fields as CELL, one Float64Array per field). */
export interface HeatmapCells {
  grid: HeatmapGrid;
  count: Float64Array;
  nonFinite: Float64Array;
  sumX: Float64Array;
  sumAbsX: Float64Array;
  sumE: Float64Array;
  sumAbsE: Float64Array;
  extX: Float64Array;
  maxAbsE: Float64Array;
  extE: Float64Array;
  maxRel: Float64Array;
  /** Per cell: sum, count and max of |block scale| (ScaleAccumulator), for formats with blocks. */
  scaleSum?: Float64Array;
  scaleCount?: Float64Array;
  scaleMax?: Float64Array;
}

/** Folds piece partials (in row order) into a grid. */
export class HeatmapAccumulator {
  readonly cells: HeatmapCells;
  private readonly asF32 = new Float32Array(1);
  private readonly asU32 = new Uint32Array(this.asF32.buffer);

  constructor(readonly grid: HeatmapGrid) {
    const n = grid.gridRows * grid.gridCols;
    const make = () => new Float64Array(n);
    this.cells = {
      grid,
      count: make(), nonFinite: make(), sumX: make(), sumAbsX: make(), sumE: make(), sumAbsE: make(),
      extX: make(), maxAbsE: make(), extE: make(), maxRel: make(),
    };
  }

  private float(word: number): number {
    this.asU32[0] = word;
    return this.asF32[0]!;
  }

  /** Adds one piece. Pieces come in row order: ties of the extremes keep the earlier piece's value. */
  add(p: PiecePartials): void {
    const c = this.cells;
    const cols = this.grid.gridCols;
    for (let k = 0; k < p.count * cols; k++) {
      const o = k * CELL_WORDS;
      const at = p.first * cols + k;
      c.count[at]! += p.words[o + CELL.count]!;
      c.nonFinite[at]! += p.words[o + CELL.nonFinite]!;
      c.sumX[at]! += this.float(p.words[o + CELL.sumX]!);
      c.sumAbsX[at]! += this.float(p.words[o + CELL.sumAbsX]!);
      c.sumE[at]! += this.float(p.words[o + CELL.sumE]!);
      c.sumAbsE[at]! += this.float(p.words[o + CELL.sumAbsE]!);
      const extX = this.float(p.words[o + CELL.extX]!);
      if (Math.abs(extX) > Math.abs(c.extX[at]!)) c.extX[at] = extX;
      const maxAbsE = this.float(p.words[o + CELL.maxAbsE]!);
      if (maxAbsE > c.maxAbsE[at]!) {
        c.maxAbsE[at] = maxAbsE;
        c.extE[at] = this.float(p.words[o + CELL.extE]!);
      }
      const maxRel = this.float(p.words[o + CELL.maxRel]!);
      if (maxRel > c.maxRel[at]!) c.maxRel[at] = maxRel;
    }
  }
}

/**
 * The value each cell shows in a mode (see the module comment): NaN for a cell with a non-finite weight or
 * with nothing defined (relative error of an all-zero cell); the legend counts those.
 */
export function heatmapValues(cells: HeatmapCells, quantity: HeatmapQuantity, pooling: HeatmapPooling): Float32Array {
  const n = cells.count.length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const count = cells.count[i]!;
    if (cells.nonFinite[i]! > 0 || count === 0) {
      out[i] = NaN;
      continue;
    }
    let v: number;
    if (quantity === "scale") {
      const n = cells.scaleCount?.[i] ?? 0;
      v = n === 0 ? NaN : pooling === "mean" ? cells.scaleSum![i]! / n : cells.scaleMax![i]!;
    } else if (quantity === "weights") v = pooling === "mean" ? cells.sumX[i]! / count : cells.extX[i]!;
    else if (quantity === "abs") v = pooling === "mean" ? cells.sumAbsE[i]! / count : cells.maxAbsE[i]!;
    else if (quantity === "signed") v = pooling === "mean" ? cells.sumE[i]! / count : cells.extE[i]!;
    else if (pooling === "max") v = cells.maxRel[i]!;
    else {
      const sx = cells.sumAbsX[i]!;
      v = sx > 0 ? cells.sumAbsE[i]! / sx : cells.sumAbsE[i]! === 0 ? 0 : NaN;
    }
    out[i] = v;
  }
  return out;
}

/** Whether a mode's values have a sign (drawn with a diverging map centred on 0). */
export function isSigned(quantity: HeatmapQuantity): boolean {
  // (scale: magnitudes)
  return quantity === "weights" || quantity === "signed";
}

/** The colour scale's range shared by panels: [lo, hi], symmetric about 0 for signed modes. */
export interface HeatmapDomain {
  lo: number;
  hi: number;
  signed: boolean;
  /** Log-scaled magnitudes (unsigned modes only): lo is then the smallest magnitude drawn, > 0. */
  log: boolean;
  /** Cells drawn in the non-finite colour, over all panels. */
  nonFinite: number;
}

/** Decades a log scale spans below the largest value. */
export const LOG_DECADES = 4;

/**
 * One domain for several panels' values, so the same colour means the same number in every panel: up to
 * the largest magnitude of any panel (signed: -m..m; unsigned: 0..m, or m*10^-LOG_DECADES..m on a log scale).
 */
export function sharedDomain(panels: readonly Float32Array[], quantity: HeatmapQuantity, log: boolean): HeatmapDomain {
  let hi = 0;
  let nonFinite = 0;
  for (const values of panels) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (Number.isNaN(v)) nonFinite++;
      else if (Math.abs(v) > hi) hi = Math.abs(v);
    }
  }
  const signed = isSigned(quantity);
  if (hi === 0) hi = 1; // an all-zero map (an exact format): any range draws it as the zero colour
  if (signed) return { lo: -hi, hi, signed, log: false, nonFinite };
  if (log) return { lo: hi * 10 ** -LOG_DECADES, hi, signed, log: true, nonFinite };
  return { lo: 0, hi, signed, log: false, nonFinite };
}

/** Where a value falls on the domain, 0..1 (NaN stays NaN: the caller draws it as non-finite). */
export function domainPosition(v: number, d: HeatmapDomain): number {
  if (Number.isNaN(v)) return NaN;
  if (d.log) {
    const m = Math.abs(v);
    if (m <= d.lo) return 0;
    return Math.min(1, Math.log(m / d.lo) / Math.log(d.hi / d.lo));
  }
  return Math.min(1, Math.max(0, (v - d.lo) / (d.hi - d.lo)));
}

// ---- histograms -------------------------------------------------------------------------------------

/**
 * Histograms of weights and errors on a log-magnitude axis, four bins per octave, one side per sign: a bin is
 * the top 10 bits of a float32's magnitude (8 exponent bits and 2 mantissa bits), so binning is exact, needs
 * no range known in advance (one pass), and shows values decades apart (outliers, tiny errors) at once.
 * Bins 0..1023 hold negative values (mirrored: bin 1023 - k for magnitude bin k), 1024..2047 positive ones;
 * +0 falls in bin 1024 and -0 in bin 1023 (with the subnormals of their sign).
 */
export const HISTOGRAM_BINS = 2048;
const MAGNITUDE_BINS = 1024;

/** Adds the finite values of `values` (or of y - x when y is given) to `bins`. */
export function addToHistogram(bins: Float64Array, x: Float32Array, y?: Float32Array, scratch?: Float32Array): void {
  let v = x;
  if (y) {
    const e = scratch && scratch.length >= x.length ? scratch.subarray(0, x.length) : new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) e[i] = y[i]! - x[i]!;
    v = e;
  }
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    if ((b & 0x7f800000) === 0x7f800000) continue; // NaN, +-Inf
    const k = (b & 0x7fffffff) >>> 21;
    bins[b >>> 31 ? MAGNITUDE_BINS - 1 - k : MAGNITUDE_BINS + k]! += 1;
  }
}

/** The smallest magnitude a bin holds (its lower edge; for negative bins, of |value|). */
export function histogramBinEdge(bin: number): number {
  const k = bin >= MAGNITUDE_BINS ? bin - MAGNITUDE_BINS : MAGNITUDE_BINS - 1 - bin;
  const f = new Float32Array(new Uint32Array([k << 21]).buffer);
  return f[0]!;
}

/** The range of non-empty bins, or undefined for an empty histogram. */
export function histogramSpan(bins: Float64Array): { first: number; last: number; total: number } | undefined {
  let first = -1;
  let last = -1;
  let total = 0;
  for (let i = 0; i < bins.length; i++) {
    if (bins[i]! > 0) {
      if (first < 0) first = i;
      last = i;
      total += bins[i]!;
    }
  }
  return first < 0 ? undefined : { first, last, total };
}

// ---- outlier rows and columns ------------------------------------------------------------------------

/**
 * Cell rows and columns whose largest |weight| is at least `factor` times the median of the largest |weight|
 * per cell row (or column): the outlier channels LLM.int8 and AWQ are about. From the weights panel's cells.
 */
export function outlierLines(cells: HeatmapCells, factor = 4): { rows: number[]; cols: number[]; rowMax: number[]; colMax: number[] } {
  const { gridRows, gridCols } = cells.grid;
  const rowMax = new Array<number>(gridRows).fill(0);
  const colMax = new Array<number>(gridCols).fill(0);
  for (let i = 0; i < gridRows; i++) {
    for (let j = 0; j < gridCols; j++) {
      const m = Math.abs(cells.extX[i * gridCols + j]!);
      if (m > rowMax[i]!) rowMax[i] = m;
      if (m > colMax[j]!) colMax[j] = m;
    }
  }
  const median = (a: number[]) => {
    const s = [...a].sort((p, q) => p - q);
    return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!;
  };
  const pick = (a: number[]) => {
    const m = median(a);
    // Fewer than 3 lines have no meaningful median.
    return a.length < 3 || m === 0 ? [] : [...a.keys()].filter((i) => a[i]! >= factor * m);
  };
  return { rows: pick(rowMax), cols: pick(colMax), rowMax, colMax };
}

// ---- block scales -----------------------------------------------------------------------------------

/** Pools the block scales of the view's rows into the cells (the "scale" mode): one call per tensor row. */
export class ScaleAccumulator {
  constructor(readonly cells: HeatmapCells) {
    const n = cells.count.length;
    cells.scaleSum = new Float64Array(n);
    cells.scaleCount = new Float64Array(n);
    cells.scaleMax = new Float64Array(n);
  }

  /**
   * Tensor row `row` (inside the view): `scaleAt(col)` is the scale of the block holding column col, blocks
   * being `blockSize` columns wide along the row. Every block a cell touches counts once in that cell.
   */
  addRow(row: number, blockSize: number, scaleAt: (col: number) => number): void {
    const { view, gridRows, gridCols } = this.cells.grid;
    if (row < view.row0 || row >= view.row0 + view.rows) return;
    const cellRow = cellOf(row - view.row0, view.rows, gridRows);
    const sum = this.cells.scaleSum!;
    const count = this.cells.scaleCount!;
    const max = this.cells.scaleMax!;
    for (let cj = 0; cj < gridCols; cj++) {
      const c0 = view.col0 + cellStart(cj, view.cols, gridCols);
      const c1 = view.col0 + cellStart(cj + 1, view.cols, gridCols);
      const at = cellRow * gridCols + cj;
      for (let c = c0; c < c1; c = (Math.floor(c / blockSize) + 1) * blockSize) {
        const s = Math.abs(scaleAt(c));
        sum[at]! += s;
        count[at]! += 1;
        if (s > max[at]!) max[at] = s;
      }
    }
  }
}
