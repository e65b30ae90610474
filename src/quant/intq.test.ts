import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { SHARED_DIR } from "../../test/shared-data.ts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bitsPerWeight, type MatrixShape, type QuantFormat } from "./format.ts";
import { f16BitsToF32 } from "../formats/float-bits.ts";
import {
  FORMAT_ALIASES,
  INT_BITS,
  INT_GRANULARITIES,
  intFormat,
  intFormatId,
  PLAIN_FORMATS,
  scaleF16Ceil,
  unpackCode,
  type IntSpec,
} from "./intq.ts";
import { expectThrowsQuant } from "../../test/quant-errors.ts";

const specs: IntSpec[] = INT_BITS.flatMap((bits) =>
  [false, true].flatMap((asym) => INT_GRANULARITIES.map((granularity) => ({ bits, asym, granularity }))),
);

/** Where each row/group keeps its scale, zero point and codes, per the layout documented in intq.ts. */
interface Segment {
  /** First element (flat index) and count. */
  e0: number;
  n: number;
  headerAt: number;
  codesAt: number;
}
function segments(spec: IntSpec, { rows, cols }: MatrixShape): Segment[] {
  const head = spec.asym ? 3 : 2;
  const codeBytes = Math.ceil((cols * spec.bits) / 8);
  const out: Segment[] = [];
  if (typeof spec.granularity === "number") {
    const g = spec.granularity;
    const blockBytes = head + (g * spec.bits) / 8;
    for (let b = 0; b < (rows * cols) / g; b++) out.push({ e0: b * g, n: g, headerAt: b * blockBytes, codesAt: b * blockBytes + head });
  } else if (spec.granularity === "channel") {
    for (let r = 0; r < rows; r++) {
      const at = r * (head + codeBytes);
      out.push({ e0: r * cols, n: cols, headerAt: at, codesAt: at + head });
    }
  } else {
    for (let r = 0; r < rows; r++) out.push({ e0: r * cols, n: cols, headerAt: 0, codesAt: head + r * codeBytes });
  }
  return out;
}

/** A shape the spec accepts, and values with a random magnitude (1e-9 .. 1e3) and some all-zero rows. */
const caseArb = fc
  .record({
    specIndex: fc.nat({ max: specs.length - 1 }),
    rows: fc.integer({ min: 1, max: 4 }),
    k: fc.integer({ min: 1, max: 3 }),
    freeCols: fc.integer({ min: 1, max: 70 }),
    exp: fc.integer({ min: -9, max: 3 }),
    seed: fc.integer(),
    zeroRow: fc.integer({ min: -1, max: 3 }),
  })
  .map((c) => {
    const spec = specs[c.specIndex]!;
    const cols = typeof spec.granularity === "number" ? spec.granularity * c.k : c.freeCols;
    const n = c.rows * cols;
    const x = new Float32Array(n);
    let s = c.seed >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      // mostly symmetric values, sometimes one-sided, with exact zeros mixed in
      const u = s / 4294967296;
      x[i] = i % 7 === 3 ? 0 : (u * 2 - (c.seed % 3 === 0 ? 0.2 : 1)) * 10 ** c.exp;
    }
    if (c.zeroRow >= 0 && c.zeroRow < c.rows) x.fill(0, c.zeroRow * cols, (c.zeroRow + 1) * cols);
    return { spec, shape: { rows: c.rows, cols }, x, zeroRow: c.zeroRow < c.rows ? c.zeroRow : -1 };
  });

describe("integer format family", () => {
  it("has one record per bits x symmetry x granularity, with the documented ids and aliases", () => {
    expect(PLAIN_FORMATS).toHaveLength(40);
    const ids = PLAIN_FORMATS.map((f) => f.id);
    expect(new Set(ids).size).toBe(40);
    for (const id of ["int4-g128", "int4-asym-g32", "int3-g64", "int2-g64", "int8-channel", "int8-tensor", "int2-asym-g128"]) {
      expect(ids).toContain(id);
    }
    expect(FORMAT_ALIASES["int8"]).toBe("int8-channel");
    for (const target of Object.values(FORMAT_ALIASES)) expect(ids).toContain(target);
    expect(PLAIN_FORMATS.every((f) => f.family === "int")).toBe(true);
    expect(intFormatId({ bits: 4, asym: true, granularity: 32 })).toBe("int4-asym-g32");
    expect(intFormat({ bits: 3, asym: false, granularity: 64 }).id).toBe("int3-g64");
  });

  it("counts every scale and zero point in the bits per weight", () => {
    const shape = { rows: 3, cols: 256 };
    expect(bitsPerWeight(intFormat({ bits: 4, asym: false, granularity: 128 }), shape)).toBe(4 + 16 / 128);
    expect(bitsPerWeight(intFormat({ bits: 4, asym: true, granularity: 32 }), shape)).toBe(4 + 24 / 32);
    expect(bitsPerWeight(intFormat({ bits: 3, asym: false, granularity: 64 }), shape)).toBe(3 + 16 / 64);
    expect(bitsPerWeight(intFormat({ bits: 2, asym: false, granularity: 64 }), shape)).toBe(2 + 16 / 64);
    expect(bitsPerWeight(intFormat({ bits: 8, asym: false, granularity: "channel" }), shape)).toBe(8 + 16 / 256);
    expect(bitsPerWeight(intFormat({ bits: 8, asym: true, granularity: "tensor" }), shape)).toBe((3 * 8 + 3 * 256 * 8) / (3 * 256));
    // 3-bit rows of 10 weights: 30 bits -> 4 bytes, + 2 bytes of scale per row
    expect(intFormat({ bits: 3, asym: false, granularity: "channel" }).encodedBytes({ rows: 5, cols: 10 })).toBe(5 * 6);
    expect(intFormat({ bits: 3, asym: true, granularity: "tensor" }).encodedBytes({ rows: 5, cols: 10 })).toBe(3 + 5 * 4);
    for (const spec of specs) {
      const f = intFormat(spec);
      if (typeof spec.granularity === "number") {
        expect(f.blockWeights).toBe(spec.granularity);
        expect(f.blockBytes).toBe((spec.asym ? 3 : 2) + (spec.granularity * spec.bits) / 8);
        expect(bitsPerWeight(f, { rows: 2, cols: 384 })).toBe(spec.bits + (spec.asym ? 24 : 16) / spec.granularity);
      }
    }
  });

  it("round-trips within half a step, keeps codes in range, zero rows exact, sizes exact (property)", () => {
    fc.assert(
      fc.property(caseArb, ({ spec, shape, x, zeroRow }) => {
        const f = intFormat(spec);
        const q = f.encode(x, shape);
        expect(q.length).toBe(f.encodedBytes(shape));
        expect(f.encode(x, shape)).toEqual(q); // deterministic
        const y = f.decode(q, shape);
        expect(y.length).toBe(x.length);
        const L = (1 << spec.bits) - 1;
        for (const seg of segments(spec, shape)) {
          const scale = f16BitsToF32(q[seg.headerAt]! | (q[seg.headerAt + 1]! << 8));
          const zero = spec.asym ? q[seg.headerAt + 2]! : 1 << (spec.bits - 1);
          expect(scale).toBeGreaterThanOrEqual(0);
          expect(zero).toBeLessThanOrEqual(L);
          // plain checks in the inner loop (expect() per element is slow); each failure names the element
          for (let i = 0; i < seg.n; i++) {
            const u = unpackCode(q, seg.codesAt, i, spec.bits);
            const e = seg.e0 + i;
            // restricted symmetric range: code 0 unused
            if (!spec.asym && u < 1) throw new Error(`${f.id}: code 0 at element ${e}`);
            if (y[e] !== Math.fround((u - zero) * scale)) throw new Error(`${f.id}: element ${e} decodes to ${y[e]}`);
            const err = Math.abs(x[e]! - y[e]!);
            if (!(err <= scale * (0.5 + 2 ** -12))) throw new Error(`${f.id}: element ${e}: |${x[e]} - ${y[e]}| > ${scale}/2`);
          }
        }
        if (zeroRow >= 0) {
          for (let c = 0; c < shape.cols; c++) expect(y[zeroRow * shape.cols + c]).toBe(0);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("picks the smallest fp16 scale that covers the range, and packs codes as documented", () => {
    // int8-channel, row [1, -0.5, 0.25, 0]: 1/127 = 0.0078740...; fp16 steps of 2^-17 above 2^-7 give
    // 2^-7 + 9 * 2^-17 = 0.0078964... (bits 0x2009) as the smallest with s * 127 >= 1.
    const f = intFormat({ bits: 8, asym: false, granularity: "channel" });
    const q = f.encode(new Float32Array([1, -0.5, 0.25, 0]), { rows: 1, cols: 4 });
    // 1/s = 126.64 -> 127; -0.5/s = -63.32 -> -63; 0.25/s = 31.66 -> 32; codes + 128
    expect(Array.from(q)).toEqual([0x09, 0x20, 255, 65, 160, 128]);
    expect(scaleF16Ceil(1, 127)).toBe(0x2009);
    expect(f16BitsToF32(0x2008) * 127).toBeLessThan(1);

    // int3-channel: x = [-3..3, 0] has absmax 3 -> scale exactly 1, codes u = q + 4 = [1..7, 4];
    // the 3-bit little-endian stream of those codes is 0x9F58D1.
    const f3 = intFormat({ bits: 3, asym: false, granularity: "channel" });
    const q3 = f3.encode(new Float32Array([-3, -2, -1, 0, 1, 2, 3, 0]), { rows: 1, cols: 8 });
    expect(Array.from(q3)).toEqual([0x00, 0x3c, 0xd1, 0x58, 0x9f]);

    // int4-asym-g32: 0 .. 15 -> range [0, 15], scale 1, zero 0, low nibble first.
    const f4 = intFormat({ bits: 4, asym: true, granularity: 32 });
    const x4 = new Float32Array(32).map((_, i) => i % 16);
    const q4 = f4.encode(x4, { rows: 1, cols: 32 });
    expect(Array.from(q4.subarray(0, 5))).toEqual([0x00, 0x3c, 0, 0x10, 0x32]);
    expect(Array.from(f4.decode(q4, { rows: 1, cols: 32 }))).toEqual(Array.from(x4));

    // asymmetric with a negative minimum: [-1, 3] over 15 levels -> s >= 4/15, zero = round(1/s) = 4
    const qa = f4.encode(new Float32Array(32).map((_, i) => (i === 0 ? -1 : i === 1 ? 3 : 0)), { rows: 1, cols: 32 });
    expect(qa[2]).toBe(4);
    expect(f16BitsToF32(qa[0]! | (qa[1]! << 8)) * 15).toBeGreaterThanOrEqual(4);
  });

  it("tensor granularity shares one scale across rows", () => {
    const f = intFormat({ bits: 4, asym: false, granularity: "tensor" });
    const x = new Float32Array([7, 1, 0.5, -0.5]);
    const q = f.encode(x, { rows: 2, cols: 2 });
    expect(f16BitsToF32(q[0]! | (q[1]! << 8))).toBe(1); // absmax 7 over Q = 7
    expect(Array.from(f.decode(q, { rows: 2, cols: 2 }))).toEqual([7, 1, 0, 0]);
  });

  it("rejects rows a group does not divide, naming the per-channel fallback", () => {
    const f = intFormat({ bits: 4, asym: false, granularity: 128 });
    const check = f.checkRowLength(100);
    expect(check.ok).toBe(false);
    if (!check.ok) {
      expect(check.fallback).toBe("int4-channel");
      expect(check.reason).toContain("100");
      expect(check.reason).toContain("128");
    }
    expect(intFormat({ bits: 2, asym: true, granularity: 64 }).checkRowLength(96)).toMatchObject({ fallback: "int2-asym-channel" });
    expect(f.checkRowLength(256).ok).toBe(true);
    expect(intFormat({ bits: 4, asym: false, granularity: "channel" }).checkRowLength(100).ok).toBe(true);
    const err = expectThrowsQuant(() => f.encode(new Float32Array(200), { rows: 2, cols: 100 }, { tensorName: "w" }));
    expect(err.problem).toBe("row-length");
    expect(err.fallback).toBe("int4-channel");
    expect(err.tensor).toBe("w");
  });

  it("reports NaN/Inf weights with the first row/column and the count", () => {
    const shape = { rows: 8, cols: 32 };
    const x = new Float32Array(256).fill(0.5);
    x[5 * 32 + 17] = NaN;
    x[6 * 32 + 1] = Infinity;
    x[7 * 32 + 31] = -Infinity;
    for (const f of [intFormat({ bits: 4, asym: false, granularity: 32 }), intFormat({ bits: 8, asym: true, granularity: "tensor" })]) {
      const err = expectThrowsQuant(() => f.encode(x, shape, { tensorName: "model.w" }));
      expect(err.problem).toBe("non-finite");
      expect([err.row, err.col, err.count, err.tensor]).toEqual([5, 17, 3, "model.w"]);
    }
  });

  it("refuses a scale beyond fp16 and a buffer of the wrong size", () => {
    const f = intFormat({ bits: 2, asym: false, granularity: "channel" });
    expect(() => f.encode(new Float32Array([1e6, 0]), { rows: 1, cols: 2 })).toThrow(RangeError);
    expect(f.encode(new Float32Array([65504, 0]), { rows: 1, cols: 2 }).length).toBe(3);
    const err = expectThrowsQuant(() => f.decode(new Uint8Array(5), { rows: 1, cols: 2 }));
    expect(err.problem).toBe("shape");
    expect(expectThrowsQuant(() => f.encode(new Float32Array(3), { rows: 1, cols: 2 })).problem).toBe("shape");
  });

  it("handles tiny and subnormal-scale groups without clipping", () => {
    for (const amax of [1e-9, 3e-8, 1e-6, 1e-4]) {
      for (const spec of specs.filter((s) => s.granularity === "channel")) {
        const f = intFormat(spec);
        const x = new Float32Array([amax, -amax / 3, amax / 7, -amax]);
        const q = f.encode(x, { rows: 1, cols: 4 });
        const s = f16BitsToF32(q[0]! | (q[1]! << 8));
        expect(s).toBeGreaterThan(0);
        const y = f.decode(q, { rows: 1, cols: 4 });
        for (let i = 0; i < 4; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(s * (0.5 + 2 ** -12));
      }
    }
  });
});

describe("against the GPTQ reference round-to-nearest (../shared/golden/gptq_awq)", () => {
  // GPTQ's RTN asymmetric quantizer (quant.py) is the same rule with a float32 scale: our fp16 scale, rounded
  // up, costs at most 2^-10 of a step, so the weight MSE must agree within a fraction of a percent.
  const dir = resolve(SHARED_DIR, "golden/gptq_awq");
  const manifest = JSON.parse(readFileSync(resolve(dir, "manifest.json"), "utf8")) as {
    cases: Record<string, { files: { W: { path: string; shape: [number, number] } } }>;
    results: Array<{ case: string; method: string; bits: 2 | 3 | 4 | 8; group: number; sym: boolean; act_order: boolean; static_groups: boolean; rtn_weight_mse: number }>;
  };
  const entries = manifest.results.filter(
    (e) => e.method === "gptq" && !e.sym && !e.act_order && !e.static_groups && [32, 64, 128, -1].includes(e.group),
  );
  it.each(entries.map((e) => [`${e.case} ${e.bits}-bit group ${e.group}`, e] as const))("%s", (_name, e) => {
    const c = manifest.cases[e.case]!;
    const [rows, cols] = c.files.W.shape;
    const buf = readFileSync(resolve(dir, c.files.W.path));
    const w = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + rows * cols * 4));
    const f: QuantFormat = intFormat({ bits: e.bits, asym: true, granularity: e.group === -1 ? "channel" : (e.group as 32 | 64 | 128) });
    const y = f.decode(f.encode(w, { rows, cols }), { rows, cols });
    let sse = 0;
    for (let i = 0; i < w.length; i++) sse += (w[i]! - y[i]!) ** 2;
    const ratio = sse / w.length / e.rtn_weight_mse;
    expect(ratio).toBeGreaterThan(0.999);
    expect(ratio).toBeLessThan(1.003);
  });
});
