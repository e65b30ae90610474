/**
 * `quantlab encode --format F --rows R --cols C --in rows.f32 [--imatrix w.f32] --out blocks.bin`:
 * raw float32 rows in, the format's packed bytes out, exactly as GGUF (or the format's own layout,
 * written next to its code) stores them, so anyone can check a format against another implementation.
 */
import { writeFile } from "node:fs/promises";
import { assertFinite, assertImatrix, isQuantInputError } from "../quant/errors.ts";
import { openRunner, reportRunError, type FormatRunner } from "./backend.ts";
import { EXIT, type Command } from "./command.ts";
import { CliInputError, float32Of, parseTensorFileOptions, readExactFile } from "./quant-args.ts";

/** Runs a QuantInputError check with the message naming the file instead of a tensor. */
function namingFile(file: string, check: () => void): void {
  try {
    check();
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
      const { format, shape, input, output, backend, values } = parseTensorFileOptions(args, { imatrix: { type: "string" } });
      const { rows, cols } = shape;
      const x = float32Of(await readExactFile(input, rows * cols * 4, `the input (${rows}x${cols} float32)`));
      namingFile(input, () => assertFinite(x, shape));
      let imatrix: Float32Array | undefined;
      if (values.imatrix !== undefined) {
        const weights = float32Of(await readExactFile(values.imatrix, cols * 4, `the importance matrix (${cols} float32)`));
        namingFile(values.imatrix, () => assertImatrix(weights, cols));
        imatrix = weights;
      }
      runner = await openRunner(backend, (line) => io.err(`quantlab encode: warning: ${line}\n`));
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
