/**
 * shaders/heatmap.wgsl on real WebGPU against its CPU reference (src/quant/heatmap.ts poolPiece): every word
 * of every cell identical, on random data with NaN/Inf, on stories260K tensors quantized with q4_0 and
 * int4-g32, for whole views, zoomed views (one cell per weight), strips and pieces cut across cell rows.
 */
import { describe, expect, inject, it } from "vitest";
import { useLabDevice } from "../../test/gpu-device.ts";
import { storiesTensors } from "../../test/gpu-quantizer-compare.ts";
import { gaussian } from "../../test/random.ts";
import { heatmapGrid, poolPiece, type HeatmapView } from "../quant/heatmap.ts";
import { getFormat } from "../quant/registry.ts";
import { GpuHeatmapPooler } from "./heatmap.ts";

const labDevice = useLabDevice();

async function expectSameCells(x: Float32Array, y: Float32Array, rows: number, cols: number, view: HeatmapView, maxCols: number, maxRows: number, pieceRows: number) {
  const grid = heatmapGrid({ rows, cols }, view, maxCols, maxRows);
  const pooler = await GpuHeatmapPooler.create(labDevice(), grid, cols);
  let pieces = 0;
  for (let first = 0; first < rows; first += pieceRows) {
    const n = Math.min(pieceRows, rows - first);
    const xs = x.subarray(first * cols, (first + n) * cols);
    const ys = y.subarray(first * cols, (first + n) * cols);
    const cpu = poolPiece(xs, ys, cols, first, n, grid);
    const gpu = await pooler.poolArrays(xs, ys, first, n);
    expect(gpu === undefined).toBe(cpu === undefined);
    if (!cpu || !gpu) continue;
    pieces++;
    expect({ first: gpu.first, count: gpu.count }).toEqual({ first: cpu.first, count: cpu.count });
    const diff = gpu.words.findIndex((w, i) => w !== cpu.words[i]);
    expect(diff, `first differing word ${diff} (cell ${Math.floor(diff / 10)}, field ${diff % 10})`).toBe(-1);
  }
  expect(pieces).toBeGreaterThan(0);
}

describe("heatmap pooling kernel", () => {
  it("equals the CPU reference on random data with NaN and Inf, whole and zoomed views", async () => {
    const rows = 257;
    const cols = 333;
    const x = gaussian(rows * cols, 0.05, 5);
    const y = x.map((v, i) => Math.fround(v * (1 + ((i % 13) - 6) * 0.01)));
    x[17 * cols + 4] = NaN;
    y[200 * cols + 300] = Infinity;
    x[100 * cols + 10] = 0; // relative error undefined there
    await expectSameCells(x, y, rows, cols, { row0: 0, col0: 0, rows, cols }, 64, 40, 50);
    await expectSameCells(x, y, rows, cols, { row0: 15, col0: 3, rows: 9, cols: 11 }, 64, 40, 7);
    await expectSameCells(x, x, rows, cols, { row0: 0, col0: 0, rows, cols }, 333, 257, 257);
  });

  it("equals the CPU reference on stories260K weights quantized with q4_0 and int4-g32", async () => {
    const tensors = await storiesTensors(inject("sharedDir"));
    const t = tensors.find((n) => n.name === "model.layers.0.mlp.up_proj.weight")!;
    const { rows, cols } = t.shape;
    for (const id of ["q4_0", "int4-g32"]) {
      const f = getFormat(id);
      const y = f.decode(f.encode(t.values, t.shape), t.shape);
      await expectSameCells(t.values, y, rows, cols, { row0: 0, col0: 0, rows, cols }, 50, 30, 64);
    }
    // A 1-D tensor (a norm) as a one-row strip.
    const norm = tensors.find((n) => n.shape.rows === 1)!;
    await expectSameCells(norm.values, norm.values, 1, norm.shape.cols, { row0: 0, col0: 0, rows: 1, cols: norm.shape.cols }, 40, 10, 1);
  });
});
