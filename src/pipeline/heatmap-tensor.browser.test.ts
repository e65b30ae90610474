/**
 * heatmapTensor on real WebGPU: the chunk goes up once and each format's round trip is pooled from the
 * device's buffers; every panel's cells, histogram and scales equal the CPU path's exactly, whole view and
 * zoomed, over several pieces.
 */
import { describe, expect, it } from "vitest";
import { readSafetensors, writeSafetensors } from "../formats/safetensors.ts";
import { BlobSource } from "../formats/source.ts";
import { encodeFromF32 } from "../formats/dtypes.ts";
import "../gpu/kernels.ts";
import { getFormat } from "../quant/registry.ts";
import { gaussian } from "../../test/random.ts";
import { useLabDevice } from "../../test/gpu-device.ts";
import { heatmapTensor } from "./heatmap-tensor.ts";

const labDevice = useLabDevice();

describe("heatmapTensor on the GPU", () => {
  it("pools every format from the round trip's buffers: the CPU path's panels, bit for bit", async () => {
    const rows = 40;
    const cols = 512;
    const values = gaussian(rows * cols, 0.03, 17);
    const bytes = writeSafetensors([{ name: "w", dtype: "F32", shape: [rows, cols], data: encodeFromF32("F32", values) }]);
    const tensor = (await readSafetensors(new BlobSource(new Blob([bytes]), "w.safetensors"))).tensors[0]!;
    const formats = ["q4_0", "q4_K", "int4-g32", "f16", "nf4"].map(getFormat);
    for (const view of [{ row0: 0, col0: 0, rows, cols }, { row0: 5, col0: 100, rows: 17, cols: 90 }]) {
      // Pieces of 7 rows: several round trips per format.
      const opts = { pieceBytes: 7 * cols * 4 };
      const gpu = await heatmapTensor(tensor, formats, view, { cols: 48, rows: 20 }, { ...opts, device: labDevice() });
      const cpu = await heatmapTensor(tensor, formats, view, { cols: 48, rows: 20 }, opts);
      for (const [i, panel] of gpu.panels.entries()) {
        const reference = cpu.panels[i]!;
        if (!panel.ok || !reference.ok) throw new Error(`${panel.format} failed`);
        // nf4 encodes the whole tensor (absmax mean): no row-wise round trip, but it must still agree.
        if (panel.format !== "weights") expect(panel.ranOn, panel.format).toBe("gpu");
        expect(panel.cells, `${panel.format} ${JSON.stringify(view)}`).toEqual(reference.cells);
        expect(panel.histogram, panel.format).toEqual(reference.histogram);
      }
    }
  });
});
