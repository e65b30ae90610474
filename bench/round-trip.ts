/**
 * The metrics of a 4096x4096 float32 tensor (N(0, 0.02^2)) per format on the GPU, by the two paths the
 * pipeline has had, in one run on the same adapter (Dawn in Node):
 *  - old: the quantizer's encode (bytes back to the CPU) and decode (float32 back to the CPU), then x and y
 *    uploaded again for the metrics kernel (src/gpu/metrics.ts);
 *  - new: x uploaded once (uploadWeights), the quantizer's roundTrip leaving the decoded values on the
 *    device, the metrics kernel reading both buffers in place (what src/pipeline/quantize-tensor.ts does).
 * Both stream the tensor in the pipeline's pieces (DEFAULT_CHUNK_BYTES of rows, at most maxRowsPerChunk;
 * the whole tensor for the formats that need it). Wall time, the median of `repeats` alternating runs after
 * a warm-up; MB/s = 10^6 bytes of float32 input per second; ratio = old ms / new ms (above 1: the new path is
 * faster). Each row also checks that both paths give the same metrics, block map included.
 *
 * The K-quants' searches take most of their time on SwiftShader (a few MB/s), which both paths pay alike:
 * they are left out of the default list (`--formats q4_K` runs one, on `--rows` rows).
 *
 * Standalone: `npx tsx bench/round-trip.ts [--formats q4_0,nf4] [--rows N] [--repeats N]`; `npm run bench`
 * runs it after the heatmap benchmark (one run per path; QUANTLAB_BENCH_ROUNDTRIP_ROWS sets the rows).
 */
import { register } from "node:module";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { gaussian } from "../test/random.ts";
import type { LabDevice } from "../src/gpu/device.ts";
import { getFormat } from "../src/quant/registry.ts";
import { DEFAULT_CHUNK_BYTES } from "../src/formats/model.ts";

/**
 * The memory-bound formats whose transfers the new path saves. The formats that take the whole tensor
 * (per-tensor ints, bitsandbytes) need it in one binding for roundTrip; at 4096x4096 it is larger on Dawn's
 * limits here, so they are skipped (as the pipeline then keeps the old path); `--rows 1024` times them.
 */
export const ROUND_TRIP_FORMATS = ["q8_0", "q4_0", "q5_1", "q8_K", "int8", "int4-g128", "int4-asym-g32", "f16", "bf16", "fp8-e4m3"];

export interface RoundTripBenchRow {
  format: string;
  /** Whether the tensor went through whole (else in pieces of rows). */
  whole: boolean;
  oldMBps: number;
  newMBps: number;
  /** old ms / new ms. */
  ratio: number;
  /** Both paths gave the same metrics (every field, the block map too). */
  same: boolean;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export async function roundTripBench(options: { formats?: string[]; rows?: number; cols?: number; repeats?: number; log?: (line: string) => void } = {}): Promise<{ adapter: string; rows: RoundTripBenchRow[] }> {
  const log = options.log ?? (() => {});
  const rows = options.rows ?? 4096;
  const cols = options.cols ?? 4096;
  const repeats = options.repeats ?? 3;
  const shape = { rows, cols };
  const x = gaussian(rows * cols, 0.02, 20240611);

  register(new URL("../bin/raw-imports.js", import.meta.url));
  const [backend, quantizer, buffers, metrics, pipeline] = await Promise.all([
    import("../src/cli/backend.ts"),
    import("../src/gpu/quantizer.ts"),
    import("../src/gpu/buffers.ts"),
    import("../src/gpu/metrics.ts"),
    import("../src/pipeline/quantize-tensor.ts"),
  ]);
  const dev: LabDevice = await backend.openGpuDevice();
  const { device } = dev;
  const out: RoundTripBenchRow[] = [];
  try {
    for (const id of options.formats ?? ROUND_TRIP_FORMATS) {
      const format = getFormat(id);
      const gpu = quantizer.gpuQuantizerFor(dev, format);
      if (!gpu) {
        log(`${id}: no kernel`);
        continue;
      }
      const whole = !pipeline.encodesRowsIndependently(format);
      const perPiece = Math.min(Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (cols * 4))), quantizer.maxRowsPerChunk(dev, format, cols));
      if (whole && rows > perPiece) {
        log(`${id}: the whole tensor does not fit one binding; not timed`);
        continue;
      }
      const pieces = backend.chunkRows(rows, whole ? rows : perPiece);
      const oldPath = async (plan: [number, number][], total: number) => {
        const m = await metrics.GpuMetrics.create(dev, { rows: total, cols });
        for (const [a, b] of plan) {
          const s = { rows: b - a, cols };
          const xs = x.subarray(a * cols, b * cols);
          const y = await gpu.decode(await gpu.encode(xs, s), s);
          const xb = buffers.uploadStorage(device, xs, "bench x");
          const yb = buffers.uploadStorage(device, y, "bench y");
          await m.add(xb, yb, s.rows).finally(() => {
            xb.destroy();
            yb.destroy();
          });
        }
        return m.result();
      };
      const newPath = async (plan: [number, number][], total: number) => {
        const m = await metrics.GpuMetrics.create(dev, { rows: total, cols });
        for (const [a, b] of plan) {
          const s = { rows: b - a, cols };
          const input = quantizer.uploadWeights(device, x.subarray(a * cols, b * cols), "bench x");
          try {
            const trip = await gpu.roundTrip(input, s);
            await m.add(input.buffer, trip.decoded, s.rows).finally(() => trip.decoded.destroy());
          } finally {
            input.buffer.destroy();
          }
        }
        return m.result();
      };
      try {
        // Warm-up on a small piece (pipelines compiled, code optimized), unless the format needs the whole tensor.
        const warm: [number, number][] = [[0, Math.min(rows, 8)]];
        if (!whole) {
          await oldPath(warm, warm[0]![1]);
          await newPath(warm, warm[0]![1]);
        }
        const oldTimes: number[] = [];
        const newTimes: number[] = [];
        let same = true;
        for (let r = 0; r < repeats; r++) {
          let t = performance.now();
          const a = await oldPath(pieces, rows);
          oldTimes.push(performance.now() - t);
          t = performance.now();
          const b = await newPath(pieces, rows);
          newTimes.push(performance.now() - t);
          same &&= isDeepStrictEqual(a, b);
        }
        const mb = (rows * cols * 4) / 1e3;
        const row: RoundTripBenchRow = { format: id, whole, oldMBps: mb / median(oldTimes), newMBps: mb / median(newTimes), ratio: median(oldTimes) / median(newTimes), same };
        log(`${id}: old ${row.oldMBps.toFixed(0)} MB/s, new ${row.newMBps.toFixed(0)} MB/s, ratio ${row.ratio.toFixed(2)}${same ? "" : ", METRICS DIFFER"}`);
        out.push(row);
      } finally {
        gpu.destroy();
      }
    }
    return { adapter: backend.describeDevice(dev), rows: out };
  } finally {
    device.destroy();
  }
}

export function roundTripBenchTable(bench: { adapter: string; rows: RoundTripBenchRow[] }, shape: string): string {
  const lines = [
    `(e2) metrics of a ${shape} float32 tensor on the GPU (${bench.adapter}): encode + decode through the CPU and x, y uploaded again (old)`,
    "    against x uploaded once and roundTrip's decoded buffer measured in place (new); ratio = old time / new time",
    "format     input   old MB/s  new MB/s   ratio  same metrics",
  ];
  for (const r of bench.rows) {
    lines.push(`${r.format.padEnd(10)} ${(r.whole ? "whole" : "pieces").padEnd(6)} ${r.oldMBps.toFixed(0).padStart(9)} ${r.newMBps.toFixed(0).padStart(9)} ${r.ratio.toFixed(2).padStart(7)}  ${r.same ? "yes" : "NO"}`);
  }
  return lines.join("\n");
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rows = Number(argValue("--rows") ?? 4096);
  const formats = argValue("--formats")?.split(",");
  const repeats = Number(argValue("--repeats") ?? 3);
  const bench = await roundTripBench({ rows, repeats, ...(formats ? { formats } : {}), log: (l) => process.stderr.write(`  ${l}\n`) });
  console.log(roundTripBenchTable(bench, `${rows}x4096`));
  process.exit(bench.rows.every((r) => r.same) ? 0 : 1);
}
