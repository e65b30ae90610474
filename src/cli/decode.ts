/**
 * `quantlab decode --format F --rows R --cols C --in blocks.bin --out rows.f32`: the inverse of
 * `quantlab encode`; packed bytes in (exactly the format's encoded size for R x C), float32
 * little-endian rows out.
 */
import { writeFile } from "node:fs/promises";
import { openRunner, reportRunError, type FormatRunner } from "./backend.ts";
import { EXIT, type Command } from "./command.ts";
import { BACKEND_HELP } from "./encode.ts";
import { parseTensorFileOptions, readExactFile } from "./quant-args.ts";

export const decodeCommand: Command = {
  name: "decode",
  summary: "Dequantize a format's packed blocks back to raw float32 rows.",
  usage: "quantlab decode --format F --rows R --cols C --in blocks.bin --out rows.f32",
  details: [
    "Reads the packed bytes `quantlab encode` writes (for the GGUF formats: a tensor's blocks exactly as",
    "GGUF stores them) for an R x C tensor and writes R x C float32 little-endian values, row-major.",
    "The input must have exactly the format's encoded size for R x C.",
    "",
    "Options:",
    "  --format F         a format id or alias (quantlab formats lists them)",
    "  --rows R, --cols C the tensor's shape",
    "  --in FILE          packed bytes",
    "  --out FILE         where the float32 rows go",
    BACKEND_HELP,
    "",
    "Bad input exits with code 2 and one line saying what is wrong.",
    "",
    "Example:",
    "  quantlab decode --format q4_K --rows 8 --cols 256 --in q.bin --out rows.f32",
  ].join("\n"),
  async run(args, io) {
    let runner: FormatRunner | undefined;
    try {
      const { format, shape, input, output, backend } = parseTensorFileOptions(args, {});
      const { rows, cols } = shape;
      const q = await readExactFile(input, format.encodedBytes(shape), `the input (${format.id} for ${rows}x${cols})`);
      runner = await openRunner(backend);
      const y = await runner.decode(format, q, shape);
      await writeFile(output, new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
      return EXIT.ok;
    } catch (e) {
      return reportRunError("decode", e, io);
    } finally {
      runner?.close();
    }
  },
};
