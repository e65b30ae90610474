import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { gaussian } from "../../test/random.ts";
import {
  addToHistogram,
  histogramBinEdge,
  histogramSpan,
  HISTOGRAM_BINS,
  outlierLines,
  cellOf,
  cellStart,
  HeatmapAccumulator,
  heatmapGrid,
  heatmapValues,
  poolPiece,
  type HeatmapGrid,
} from "./heatmap.ts";

/** Pools x (and y) of a whole rows x cols tensor in pieces of `pieceRows` rows. */
function poolAll(x: Float32Array, y: Float32Array, rows: number, cols: number, grid: HeatmapGrid, pieceRows: number) {
  const acc = new HeatmapAccumulator(grid);
  for (let first = 0; first < rows; first += pieceRows) {
    const n = Math.min(pieceRows, rows - first);
    const p = poolPiece(x.subarray(first * cols, (first + n) * cols), y.subarray(first * cols, (first + n) * cols), cols, first, n, grid);
    if (p) acc.add(p);
  }
  return acc.cells;
}

describe("heatmap grid", () => {
  it("puts every position in exactly one cell, cells differing by at most one in size", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 700 }), (total, maxCells) => {
        const cells = Math.min(total, maxCells);
        const sizes = new Set<number>();
        for (let i = 0; i < cells; i++) sizes.add(cellStart(i + 1, total, cells) - cellStart(i, total, cells));
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1);
        for (let r = 0; r < total; r += Math.max(1, Math.floor(total / 50))) {
          const i = cellOf(r, total, cells);
          expect(cellStart(i, total, cells)).toBeLessThanOrEqual(r);
          expect(cellStart(i + 1, total, cells)).toBeGreaterThan(r);
        }
      }),
    );
  });

  it("shrinks to the canvas and stops at one cell per weight; rejects views outside the tensor", () => {
    const shape = { rows: 152064, cols: 3584 };
    expect(heatmapGrid(shape, { row0: 0, col0: 0, rows: 152064, cols: 3584 }, 640, 400)).toMatchObject({ gridRows: 400, gridCols: 640 });
    expect(heatmapGrid(shape, { row0: 100, col0: 7, rows: 12, cols: 20 }, 640, 400)).toMatchObject({ gridRows: 12, gridCols: 20 });
    expect(() => heatmapGrid(shape, { row0: 152060, col0: 0, rows: 10, cols: 1 }, 64, 64)).toThrow(/not inside the 152064x3584 tensor/);
    expect(() => heatmapGrid(shape, { row0: 0, col0: 0, rows: 0, cols: 1 }, 64, 64)).toThrow(RangeError);
  });
});

describe("heatmap pooling (CPU reference)", () => {
  it("gives each mode its definition on a hand-computed 2x4 tensor", () => {
    // One cell over the whole tensor, then one cell per weight.
    const x = new Float32Array([1, -2, 0, 4, 0.5, 0, -1, 2]);
    const y = new Float32Array([1.5, -2, 0.25, 3, 0.5, 0, -1.5, 2]);
    const shape = { rows: 2, cols: 4 };
    const whole = poolAll(x, y, 2, 4, heatmapGrid(shape, { row0: 0, col0: 0, rows: 2, cols: 4 }, 1, 1), 2);
    // e = [0.5, 0, 0.25, -1, 0, 0, -0.5, 0]
    expect(heatmapValues(whole, "abs", "mean")[0]).toBeCloseTo(2.25 / 8, 12);
    expect(heatmapValues(whole, "abs", "max")[0]).toBe(1);
    expect(heatmapValues(whole, "signed", "mean")[0]).toBeCloseTo(-0.75 / 8, 12);
    expect(heatmapValues(whole, "signed", "max")[0]).toBe(-1);
    expect(heatmapValues(whole, "weights", "mean")[0]).toBeCloseTo(4.5 / 8, 12);
    expect(heatmapValues(whole, "weights", "max")[0]).toBe(4);
    expect(heatmapValues(whole, "rel", "mean")[0]).toBeCloseTo(2.25 / 10.5, 6);
    // |e|/|x|: 0.5, 0, -, 0.25, 0, -, 0.5, 0 (x = 0 left out, though its e = 0.25)
    expect(heatmapValues(whole, "rel", "max")[0]).toBe(0.5);

    const fine = poolAll(x, y, 2, 4, heatmapGrid(shape, { row0: 0, col0: 0, rows: 2, cols: 4 }, 100, 100), 1);
    expect([...heatmapValues(fine, "signed", "mean")]).toEqual([0.5, 0, 0.25, -1, 0, 0, -0.5, 0]);
    // x = 0 with e != 0: relative error undefined (NaN, counted by the legend); x = 0 with e = 0: 0.
    const rel = heatmapValues(fine, "rel", "mean");
    expect(rel[2]).toBeNaN();
    expect(rel[5]).toBe(0);
  });

  it("marks cells holding NaN or Inf and leaves the others alone", () => {
    const x = gaussian(8 * 16, 1, 3);
    x[3 * 16 + 5] = NaN;
    x[6 * 16 + 15] = -Infinity;
    const shape = { rows: 8, cols: 16 };
    const cells = poolAll(x, x, 8, 16, heatmapGrid(shape, { row0: 0, col0: 0, rows: 8, cols: 16 }, 4, 4), 3);
    const v = heatmapValues(cells, "weights", "mean");
    const marked = [...v.keys()].filter((i) => Number.isNaN(v[i]));
    // Cell rows of 2 tensor rows, cell columns of 4: (3,5) is in cell (1,1), (6,15) in cell (3,3).
    expect(marked).toEqual([1 * 4 + 1, 3 * 4 + 3]);
    expect(cells.nonFinite[5]).toBe(1);
    expect(cells.count[5]).toBe(7);
  });

  it("pools a view the same whatever the pieces, and only the view", () => {
    const rows = 300;
    const cols = 96;
    const x = gaussian(rows * cols, 0.02, 11);
    const y = x.map((v, i) => Math.fround(v + (i % 7) * 1e-3 - 3e-3));
    const shape = { rows, cols };
    const view = { row0: 37, col0: 10, rows: 201, cols: 77 };
    const grid = heatmapGrid(shape, view, 30, 50);
    const a = poolAll(x, y, rows, cols, grid, 1000);
    const b = poolAll(x, y, rows, cols, grid, 13);
    expect([...b.count]).toEqual([...a.count]);
    expect([...b.maxAbsE]).toEqual([...a.maxAbsE]);
    expect([...b.extE]).toEqual([...a.extE]);
    expect([...b.extX]).toEqual([...a.extX]);
    expect([...b.maxRel]).toEqual([...a.maxRel]);
    for (let i = 0; i < a.sumAbsE.length; i++) expect(b.sumAbsE[i]).toBeCloseTo(a.sumAbsE[i]!, 6);
    // Exactly the view's weights, each once.
    expect(a.count.reduce((s, c) => s + c, 0)).toBe(view.rows * view.cols);
    // The largest error inside the view, not the one outside it.
    let maxInView = 0;
    for (let r = view.row0; r < view.row0 + view.rows; r++) {
      for (let c = view.col0; c < view.col0 + view.cols; c++) maxInView = Math.max(maxInView, Math.abs(Math.fround(y[r * cols + c]! - x[r * cols + c]!)));
    }
    expect(Math.max(...a.maxAbsE)).toBe(maxInView);
  });
});

describe("log-magnitude histograms", () => {
  it("bins each finite value by sign and magnitude, four bins per octave", () => {
    const bins = new Float64Array(HISTOGRAM_BINS);
    addToHistogram(bins, new Float32Array([1, 1.2, 1.3, 1.5, -1, 0.5, NaN, Infinity, 0, -0]));
    // 1 and 1.2 share the bin [1, 1.25); 1.3 is in [1.25, 1.5); 1.5 in [1.5, 1.75).
    const one = 1024 + (new Uint32Array(new Float32Array([1]).buffer)[0]! >>> 21);
    expect(bins[one]).toBe(2);
    expect(bins[one + 1]).toBe(1);
    expect(bins[one + 2]).toBe(1);
    expect(histogramBinEdge(one + 1)).toBe(1.25);
    expect(bins[1023 - (one - 1024)]).toBe(1); // -1 mirrored
    expect(bins[1024]).toBe(1); // +0
    expect(bins[1023]).toBe(1); // -0
    expect(histogramSpan(bins)!.total).toBe(8); // NaN and Inf left out
  });

  it("bins errors y - x when given y", () => {
    const bins = new Float64Array(HISTOGRAM_BINS);
    addToHistogram(bins, new Float32Array([1, 2, 3]), new Float32Array([1.5, 2, 2]));
    const span = histogramSpan(bins)!;
    expect(span.total).toBe(3);
    expect(histogramBinEdge(span.first)).toBe(1); // -1: magnitude bin of 1, negative side
    expect(histogramBinEdge(span.last)).toBe(0.5);
  });
});

describe("outlier lines", () => {
  it("finds the rows and columns whose largest weight stands out from the median line", () => {
    const rows = 20;
    const cols = 30;
    const x = gaussian(rows * cols, 0.02, 4);
    x[7 * cols + 3] = 0.9; // row 7, column 3
    x[15 * cols + 22] = -1.2; // row 15, column 22
    const grid = heatmapGrid({ rows, cols }, { row0: 0, col0: 0, rows, cols }, cols, rows);
    const cells = poolAll(x, x, rows, cols, grid, rows);
    const found = outlierLines(cells, 4);
    expect(found.rows).toEqual([7, 15]);
    expect(found.cols).toEqual([3, 22]);
    expect(outlierLines(poolAll(gaussian(rows * cols, 0.02, 5), gaussian(rows * cols, 0.02, 5), rows, cols, grid, rows), 4).rows).toEqual([]);
  });
});
