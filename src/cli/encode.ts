/**
 * `quantlab encode --format F --rows R --cols C --in rows.f32 [--imatrix w.f32] --out blocks.bin`:
 * raw float32 rows in, the format's packed bytes out, exactly as GGUF (or the format's own layout,
 * written next to its code) stores them, so anyone can check a format against another implementation.
 */
import { writeFile } from "node:fs/promises";
import { assertFinite, assertImatrix, isQuantInputError, QuantInputError } from "../quant/errors.ts";
import type { MatrixShape, QuantFormat } from "../quant/format.ts";
import { openRunner, reportRunError, type FormatRunner } from "./backend.ts";
import { EXIT, type Command } from "./command.ts";
import {
  backendOption,
  CliInputError,
  float32Of,
  formatByName,
  parseOptions,
  positiveInt,
  readExactFile,
  requiredOption,
} from "./quant-args.ts";

/** Throws "row-length" (with llama.cpp's fallback in the message) when the format cannot take rows of `cols`. */
export function assertRowLength(format: QuantFormat, cols: number): void {
  const check = format.checkRowLength(cols);
  if (!check.ok) throw new QuantInputError("row-length", `${format.id}: ${check.reason}`, { fallback: check.fallback });
}

/** assertFinite, with the message naming the file instead of a tensor. */
function assertFiniteIn(file: string, x: Float32Array, shape: MatrixShape): void {
  try {
    assertFinite(x, shape);
  } catch (e) {
    throw isQuantInputError(e) ? new CliInputError(`${file}: ${e.detail}`) : e;
  }
}

function assertImatrixIn(file: string, imatrix: Float32Array, cols: number): void {
  try {
    assertImatrix(imatrix, cols);
  } catch (e) {
    throw isQuantInputError(e) ? new CliInputError(`${file}: ${e.detail}`) : e;
  }
}

export const BACKEND_HELP = "  --backend B        cpu (default: the TypeScript reference) or webgpu (the WGSL kernels through Dawn)";

export const encodeCommand: Command = {
  name: "encode",
  summary: "Quantize raw float32 rows into a format's packed blocks (byte layout as GGUF stores it).",
  usage: "quantlab encode --format F --rows R --cols C --in rows.f32 [--imatrix w.f32] --out blocks.bin",
  details: [
    "Reads R x C float32 little-endian values (row-major, R*C*4 bytes), quantizes each row with format F",
    "and writes the packed bytes: for the GGUF formats exactly the blocks GGUF stores (no header, no",
    "padding), for the others the layout documented next to their code. Sizes are checked: the input must",
    "hold R*C values, the output has the format's encoded size (quantlab formats lists the formats).",
    "",
    "Options:",
    "  --format F         a format id or alias: q4_K, q8_0, int4-g128, nf4, fp8-e4m3, ...",
    "  --rows R, --cols C the tensor's shape (C is the row length the blocks run along)",
    "  --in FILE          float32 rows",
    "  --imatrix FILE     C float32 importance weights (llama.cpp's imatrix, one per column): the",
    "                     importance-weighted encoders of the GGUF formats; other formats ignore it",
    "  --out FILE         where the packed bytes go",
    BACKEND_HELP,
    "",
    "Bad input (unknown format, a file size that does not match R x C, NaN or Inf in the rows, a row",
    "length the format cannot take) exits with code 2 and one line saying what is wrong.",
    "",
    "Example:",
    "  quantlab encode --format q4_K --rows 8 --cols 256 --in ../shared/golden/ggml/inputs/gauss_256.f32 --out q.bin",
  ].join("\n"),
  async run(args, io) {
    let runner: FormatRunner | undefined;
    try {
      const v = parseOptions(args, {
        format: { type: "string" },
        rows: { type: "string" },
        cols: { type: "string" },
        in: { type: "string" },
        imatrix: { type: "string" },
        out: { type: "string" },
        backend: { type: "string" },
      });
      const format = formatByName(requiredOption(v.format, "--format"));
      const rows = positiveInt(v.rows, "--rows");
      const cols = positiveInt(v.cols, "--cols");
      const input = requiredOption(v.in, "--in");
      const output = requiredOption(v.out, "--out");
      const backend = backendOption(v.backend);
      assertRowLength(format, cols);

      const shape = { rows, cols };
      const x = float32Of(await readExactFile(input, rows * cols * 4, `the input (${rows}x${cols} float32)`));
      assertFiniteIn(input, x, shape);
      let imatrix: Float32Array | undefined;
      if (v.imatrix !== undefined) {
        imatrix = float32Of(await readExactFile(v.imatrix, cols * 4, `the importance matrix (${cols} float32)`));
        assertImatrixIn(v.imatrix, imatrix, cols);
      }
      runner = await openRunner(backend);
      const q = await runner.encode(format, x, shape, imatrix ? { imatrix } : {});
      await writeFile(output, q);
      return EXIT.ok;
    } catch (e) {
      return reportRunError("encode", e, io);
    } finally {
      runner?.close();
    }
  },
};
