/**
 * The input checks a GPU quantizer runs before it dispatches anything, so that a bad call fails with
 * the same QuantInputError as the format's CPU reference (src/quant) would: same problem, same
 * message, same order of checks (shape, row length, non-finite weights, importance matrix).
 *
 * Non-finite weights are the one check left to the kernels (scanning on the CPU would cost a pass over
 * every chunk): a kernel raises a flag and the caller then calls assertFinite for the CPU's message.
 */
import { assertFinite, assertImatrix, assertShape, QuantInputError } from "../quant/errors.ts";
import type { EncodeOptions, MatrixShape, QuantFormat } from "../quant/format.ts";

export function checkEncodeInput(format: QuantFormat, x: Float32Array, shape: MatrixShape, opts?: EncodeOptions): void {
  const tensor = opts?.tensorName;
  assertShape(x, shape, tensor);
  const fits = format.checkRowLength(shape.cols);
  if (!fits.ok) throw new QuantInputError("row-length", fits.reason, { tensor, fallback: fits.fallback });
  if (opts?.imatrix) {
    try {
      assertImatrix(opts.imatrix, shape.cols, tensor);
    } catch (e) {
      // The CPU reports non-finite weights before a bad importance matrix.
      assertFinite(x, shape, tensor);
      throw e;
    }
  }
}

export function checkDecodeInput(format: QuantFormat, q: Uint8Array, shape: MatrixShape): void {
  const fits = format.checkRowLength(shape.cols);
  if (!fits.ok) throw new QuantInputError("row-length", fits.reason, { fallback: fits.fallback });
  const expected = format.encodedBytes(shape);
  if (q.length !== expected) {
    throw new QuantInputError(
      "shape",
      `${q.length} bytes of ${format.id} do not make a ${shape.rows}x${shape.cols} tensor (expected ${expected})`,
    );
  }
}
