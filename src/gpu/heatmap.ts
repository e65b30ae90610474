/**
 * Heatmap pooling on the GPU (shaders/heatmap.wgsl): a piece of whole rows already in GPU buffers (x and its
 * dequantized y) becomes the partial cells of the grid rows it touches, read back and folded on the CPU by
 * src/quant/heatmap.ts's HeatmapAccumulator. Same bits as that module's CPU reference poolPiece.
 */
import heatmapShader from "../../shaders/heatmap.wgsl?raw";
import { CELL_WORDS, pieceCellRows, type HeatmapGrid, type PiecePartials } from "../quant/heatmap.ts";
import { computePipeline, dispatch, outputStorage, readBack, uniformU32, uploadStorage } from "./buffers.ts";
import type { LabDevice } from "./device.ts";
import { withCommonWgsl } from "./wgsl.ts";

const SHADER = withCommonWgsl(heatmapShader, "heatmap.wgsl");
const WORKGROUP_SIZE = 64;

export class GpuHeatmapPooler {
  private constructor(
    private readonly dev: LabDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly grid: HeatmapGrid,
    readonly cols: number,
  ) {}

  static async create(dev: LabDevice, grid: HeatmapGrid, cols: number): Promise<GpuHeatmapPooler> {
    const pipeline = await computePipeline(dev.device, SHADER, "poolPiece", "heatmap.wgsl");
    return new GpuHeatmapPooler(dev, pipeline, grid, cols);
  }

  /**
   * The partial cells of tensor rows [firstRow, firstRow + rows), held from byte 0 of x and y; undefined
   * when the piece misses the view. The work is queued before this returns (the buffers may be reused).
   */
  async pool(x: GPUBuffer, y: GPUBuffer, firstRow: number, rows: number, signal?: AbortSignal): Promise<PiecePartials | undefined> {
    const span = pieceCellRows(this.grid, firstRow, rows);
    if (!span) return undefined;
    const { device } = this.dev;
    const { view, gridRows, gridCols } = this.grid;
    const cellCount = span.count * gridCols;
    const params = uniformU32(
      device,
      [this.cols, firstRow, rows, view.row0, view.col0, view.rows, view.cols, gridRows, gridCols, span.first, span.count],
      "heatmap params",
    );
    const cells = outputStorage(device, cellCount * CELL_WORDS * 4, "heatmap cells");
    try {
      dispatch(device, this.pipeline, [x, y, cells, params], Math.ceil(cellCount / WORKGROUP_SIZE), "heatmap");
      const bytes = await readBack(device, cells, cellCount * CELL_WORDS * 4, signal);
      return { first: span.first, count: span.count, words: new Uint32Array(bytes.buffer) };
    } finally {
      params.destroy();
      cells.destroy();
    }
  }

  /** pool() for values on the CPU (tests, and pieces that were decoded on the CPU). */
  async poolArrays(x: Float32Array, y: Float32Array, firstRow: number, rows: number, signal?: AbortSignal): Promise<PiecePartials | undefined> {
    const { device } = this.dev;
    const xb = uploadStorage(device, x, "heatmap x");
    const yb = x === y ? xb : uploadStorage(device, y, "heatmap y");
    try {
      return await this.pool(xb, yb, firstRow, rows, signal);
    } finally {
      xb.destroy();
      if (yb !== xb) yb.destroy();
    }
  }
}
