import { describe, expect, it } from "vitest";
import { QuantInputError } from "./errors.ts";
import { FORMATS } from "./registry.ts";

// 3 rows of 512: whole blocks for every format (K-quant super-blocks, int groups of 128, bnb blocks of 64).
const shape = { rows: 3, cols: 512 };

function randomRows(seed: number): Float32Array {
  let s = seed;
  const x = new Float32Array(shape.rows * shape.cols);
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = ((s / 2 ** 32 - 0.5) * (1 + (i % 7))) / 10;
  }
  return x;
}

const imatrix = new Float32Array(shape.cols).map((_, c) => 0.5 + ((c * 37) % 11) / 4);

describe("caller-provided output buffers (EncodeOptions.out, decode's out)", () => {
  for (const format of FORMATS) {
    it(`${format.id}: the same bytes and values as fresh arrays, whatever the buffers held before`, () => {
      const x = randomRows(format.id.length * 7919 + 1);
      for (const opts of [{}, { imatrix }]) {
        const fresh = format.encode(x, shape, opts);
        const dirty = new Uint8Array(fresh.length + 5).fill(0xa5);
        const written = format.encode(x, shape, { ...opts, out: dirty });
        expect(written.buffer).toBe(dirty.buffer);
        expect(written.byteOffset).toBe(0);
        expect(written).toEqual(fresh);
        expect([...dirty.subarray(fresh.length)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5, 0xa5]);

        const values = format.decode(fresh, shape);
        const y = new Float32Array(values.length + 3).fill(Number.NaN);
        const decoded = format.decode(fresh, shape, y);
        expect(decoded.buffer).toBe(y.buffer);
        expect(new Uint32Array(decoded.slice().buffer)).toEqual(new Uint32Array(values.slice().buffer));
        expect(Number.isNaN(y[values.length])).toBe(true);
      }
    });
  }

  it("buffers that are too small are refused with a shape error", () => {
    for (const format of FORMATS) {
      const x = randomRows(3);
      const bytes = format.encodedBytes(shape);
      expect(() => format.encode(x, shape, { out: new Uint8Array(bytes - 1), tensorName: "w" })).toThrow(QuantInputError);
      expect(() => format.decode(format.encode(x, shape), shape, new Float32Array(x.length - 1))).toThrow(
        /output buffer holds/,
      );
    }
  });
});
