import { describe, expect, it } from "vitest";
import { f32At, rawSafetensors, storiesFile } from "../../test/formats-fixtures.ts";
import { rng } from "../../test/random.ts";
import { getFormat } from "./registry.ts";
import { DEFAULT_METRICS_BLOCK, errorMetrics, Metrics, metricsBlockSize, sizeMetrics } from "./metrics.ts";

/** The definitions of metrics.ts written out element by element, in f64, with no streaming. */
function naive(x: Float32Array, y: Float32Array, cols: number, B: number) {
  let ee = 0, xx = 0, yy = 0, xy = 0, count = 0, max = 0, maxAt = -1, nonFinite = 0;
  const rows = x.length / cols;
  const perRow = Math.ceil(cols / B);
  const blockMse = new Float32Array(rows * perRow);
  const blockMax = new Float32Array(rows * perRow);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < perRow; j++) {
      let bee = 0, bmax = 0, bad = false;
      const end = Math.min(cols, (j + 1) * B);
      for (let c = j * B; c < end; c++) {
        const i = r * cols + c;
        if (!Number.isFinite(x[i]!) || !Number.isFinite(y[i]!)) {
          nonFinite++;
          bad = true;
          continue;
        }
        const e = x[i]! - y[i]!;
        ee += e * e;
        bee += e * e;
        xx += x[i]! ** 2;
        yy += y[i]! ** 2;
        xy += x[i]! * y[i]!;
        count++;
        const m = Math.abs(Math.fround(e));
        if (m > max || maxAt < 0) [max, maxAt] = [m, i];
        bmax = Math.max(bmax, m);
      }
      blockMse[r * perRow + j] = bad ? Infinity : bee / (end - j * B);
      blockMax[r * perRow + j] = bad ? Infinity : bmax;
    }
  }
  return { count, nonFinite, mse: ee / count, max, maxAt, snr: 10 * Math.log10(xx / ee), cosine: xy / Math.sqrt(xx * yy), blockMse, blockMax };
}

function expectClose(actual: number, expected: number, rel = 1e-12): void {
  expect(Math.abs(actual - expected), `${actual} vs ${expected}`).toBeLessThanOrEqual(rel * Math.abs(expected));
}

/** Feeds x and y in chunks of the given lengths (cycled), as a stream would. */
function streamed(x: Float32Array, y: Float32Array, rows: number, cols: number, B: number, chunkLengths: number[]) {
  const m = new Metrics({ rows, cols }, { blockSize: B });
  for (let pos = 0, k = 0; pos < x.length; k++) {
    const n = Math.min(chunkLengths[k % chunkLengths.length]!, x.length - pos);
    m.add(x.subarray(pos, pos + n), y.subarray(pos, pos + n));
    pos += n;
  }
  return m.result();
}

describe("Metrics", () => {
  it("computes the textbook values of a small example", () => {
    const x = new Float32Array([1, 2, 3, 4, -1, 0.5]);
    const y = new Float32Array([1, 2, 3, 5, -1.5, 0.5]);
    const r = errorMetrics(x, y, { rows: 2, cols: 3 }, 2);
    expect(r.count).toBe(6);
    expect(r.mse).toBe((1 + 0.25) / 6);
    expect(r.rmse).toBe(Math.sqrt(1.25 / 6));
    expect(r.maxAbsErr).toBe(1);
    expect(r.maxAbsErrAt).toEqual({ row: 1, col: 0 });
    const sxx = 1 + 4 + 9 + 16 + 1 + 0.25;
    expect(r.snrDb).toBeCloseTo(10 * Math.log10(sxx / 1.25), 12);
    const syy = 1 + 4 + 9 + 25 + 2.25 + 0.25;
    expect(r.cosine).toBeCloseTo((1 + 4 + 9 + 20 + 1.5 + 0.25) / Math.sqrt(sxx * syy), 12);
    // Blocks of 2 along rows of 3: [c0 c1] [c2] per row.
    expect(r.blocks).toMatchObject({ blockSize: 2, rows: 2, blocksPerRow: 2 });
    expect([...r.blocks.mse]).toEqual([0, 0, Math.fround(1.25 / 2), 0]);
    expect([...r.blocks.maxAbs]).toEqual([0, 0, 1, 0]);
  });

  it("keeps the first position of the largest error", () => {
    const x = new Float32Array([0, 1, 0, 1]);
    const y = new Float32Array([0, 0, 0, 0]);
    expect(errorMetrics(x, y, { rows: 2, cols: 2 }).maxAbsErrAt).toEqual({ row: 0, col: 1 });
  });

  it("reports an exact copy as infinite SNR and cosine 1, and all-zero tensors too", () => {
    const x = new Float32Array([0.25, -3, 7, 0]);
    const exact = errorMetrics(x, x.slice(), { rows: 1, cols: 4 });
    expect(exact).toMatchObject({ mse: 0, rmse: 0, maxAbsErr: 0, maxAbsErrAt: { row: 0, col: 0 }, snrDb: Infinity, cosine: 1 });
    const zeros = errorMetrics(new Float32Array(8), new Float32Array(8), { rows: 2, cols: 4 });
    expect(zeros).toMatchObject({ mse: 0, snrDb: Infinity, cosine: 1 });
    expect([...zeros.blocks.mse]).toEqual([0, 0]);
    const lost = errorMetrics(new Float32Array(4), new Float32Array([0, 1, 0, 0]), { rows: 1, cols: 4 });
    expect(lost).toMatchObject({ snrDb: -Infinity, cosine: 0 });
  });

  it("counts non-finite pairs, leaves them out of the sums, and marks their blocks", () => {
    // A weight of 70000 cast to f16 becomes +inf; a NaN weight.
    const x = new Float32Array([1, 70000, 2, 3, NaN, 4]);
    const y = new Float32Array([1, Infinity, 2, 3, 0, 4.5]);
    const r = errorMetrics(x, y, { rows: 3, cols: 2 }, 2);
    expect(r).toMatchObject({ count: 4, nonFinite: 2, firstNonFinite: { row: 0, col: 1 }, maxAbsErr: 0.5, maxAbsErrAt: { row: 2, col: 1 } });
    expect(r.mse).toBe(0.25 / 4);
    expect([...r.blocks.mse]).toEqual([Infinity, 0, Infinity]);
    expect([...r.blocks.maxAbs]).toEqual([Infinity, 0, Infinity]);
  });

  it("gives the same answer however the stream is cut (chunks ending inside blocks and rows)", () => {
    const random = rng(7);
    for (const [rows, cols, B] of [
      [5, 100, 32],
      [3, 64, 64],
      [7, 33, 256],
      [1, 1000, 1],
      [4, 96, 32],
    ] as const) {
      const x = new Float32Array(rows * cols).map(() => (random() - 0.5) * 4);
      const y = x.map((v) => Math.round(v * 8) / 8 + (random() < 0.01 ? 1 : 0));
      const ref = naive(x, y, cols, B);
      for (const cuts of [[rows * cols], [1], [7, 13], [cols], [31, 1, 64]]) {
        const r = streamed(x, y, rows, cols, B, cuts);
        expect(r.count).toBe(ref.count);
        expectClose(r.mse, ref.mse);
        expectClose(r.snrDb, ref.snr);
        expectClose(r.cosine, ref.cosine);
        expect(r.maxAbsErr).toBe(ref.max);
        expect(r.maxAbsErrAt).toEqual({ row: Math.floor(ref.maxAt / cols), col: ref.maxAt % cols });
        expect(r.blocks.maxAbs).toEqual(ref.blockMax);
        for (let b = 0; b < ref.blockMse.length; b++) expectClose(r.blocks.mse[b]!, ref.blockMse[b]!, 2 ** -23);
      }
    }
  });

  it("rejects mismatched or excess input", () => {
    const m = new Metrics({ rows: 1, cols: 4 });
    expect(() => m.add(new Float32Array(2), new Float32Array(3))).toThrow(/2 original values but 3/);
    expect(() => m.add(new Float32Array(5), new Float32Array(5))).toThrow(/5 values passed for a 1x4 tensor/);
    expect(() => new Metrics({ rows: 1, cols: 4 }, { blockSize: 0 })).toThrow(RangeError);
  });

  it("ranks formats on real stories260K weights as their bits suggest", () => {
    const raw = rawSafetensors(storiesFile);
    const r = raw.tensors.get("model.layers.0.mlp.up_proj.weight")!;
    const x = f32At(raw.bytes, r.start, r.end);
    expect(r.shape).toEqual([172, 64]);
    const shape = { rows: 172, cols: 64 };
    const snr = (id: string) => {
      const f = getFormat(id);
      const y = f.decode(f.encode(x, shape), shape);
      const m = errorMetrics(x, y, shape, metricsBlockSize(f));
      const ref = naive(x, y, shape.cols, metricsBlockSize(f));
      expectClose(m.mse, ref.mse);
      expect(m.maxAbsErr).toBe(ref.max);
      return m.snrDb;
    };
    const [q8, q4, q4_1, nf4, int2, f16, bf16] = ["q8_0", "q4_0", "q4_1", "nf4", "int2-g64", "f16", "bf16"].map(snr) as number[];
    // Each extra bit buys about 6 dB; f16 keeps 11 significant bits, bf16 8.
    expect(q8!).toBeGreaterThan(q4! + 20);
    expect(q4_1!).toBeGreaterThan(q4!);
    expect(nf4!).toBeGreaterThan(int2! + 6);
    expect(f16!).toBeGreaterThan(bf16! + 15);
    expect(bf16!).toBeGreaterThan(q8!);
    expect(q4!).toBeGreaterThan(15);
  });
});

describe("sizeMetrics and metricsBlockSize", () => {
  it("counts scales: q4_0 is 4.5 bits per weight, int4-g128 4.125, from F32 and BF16 sources", () => {
    const shape = { rows: 4096, cols: 4096 };
    const q4 = sizeMetrics(getFormat("q4_0"), shape, 4096 * 4096 * 4);
    expect(q4).toEqual({ bitsPerWeight: 4.5, bytesBefore: 4096 * 4096 * 4, bytesAfter: (4096 * 4096 * 18) / 32, shareSaved: 1 - 4.5 / 32 });
    const int4 = sizeMetrics(getFormat("int4-g128"), shape, 4096 * 4096 * 2);
    expect(int4.bitsPerWeight).toBe(4.125);
    expect(int4.bytesBefore).toBe(4096 * 4096 * 2);
    expect(int4.shareSaved).toBe(1 - 4.125 / 16);
    // A cast wider than the source costs memory: negative share saved (16 F8 values in 16 bytes).
    expect(sizeMetrics(getFormat("f16"), { rows: 2, cols: 8 }, 16).shareSaved).toBe(-1);
  });

  it("uses the format's block along the row, else the default", () => {
    expect(metricsBlockSize(getFormat("q4_K"))).toBe(256);
    expect(metricsBlockSize(getFormat("q8_0"))).toBe(32);
    expect(metricsBlockSize(getFormat("nf4"))).toBe(64);
    expect(metricsBlockSize(getFormat("int8-channel"))).toBe(DEFAULT_METRICS_BLOCK);
    expect(metricsBlockSize(getFormat("f16"))).toBe(DEFAULT_METRICS_BLOCK);
  });
});
