/**
 * `quantlab export MODEL_DIR --to gguf --type Q4_K_M --out model.gguf`: a Hugging Face checkpoint folder as a
 * GGUF file llama.cpp loads (src/pipeline/export-gguf.ts). The file is written as OUT.partial and renamed
 * to OUT only once complete, so a failed or interrupted export leaves no half file under the target name.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { isFormatError } from "../formats/errors.ts";
import { openModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { exportGguf, isExportError, planGgufExport } from "../pipeline/export-gguf.ts";
import { parseImatrix } from "../formats/imatrix.ts";
import { formatBytes } from "../common/format.ts";
import { EXIT, parseCommandArgs, type Command } from "./command.ts";

async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

class UsageError extends Error {}

export const exportCommand: Command = {
  name: "export",
  summary: "Write a checkpoint as a GGUF file that llama.cpp runs (F32, F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, Q4_0).",
  usage: "quantlab export MODEL_DIR --to gguf --type TYPE [--imatrix FILE] --out FILE.gguf",
  details: [
    "MODEL_DIR holds config.json, tokenizer.json (tokenizer_config.json optional) and the safetensors",
    "(one file or an index with shards). TYPE is a llama-quantize file type; each tensor gets the type",
    "llama-quantize's rules give it, with its fallbacks for rows a type cannot take (printed).",
    "",
    "Options:",
    "  --to gguf        the output format (gguf)",
    "  --type TYPE      F32, F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, Q4_0, ...",
    "  --imatrix FILE   llama.cpp importance matrix (llama-imatrix .dat) for the importance-weighted",
    "                   encoders, as llama-quantize --imatrix",
    "  --out FILE       the file to write (written as FILE.partial, renamed when complete)",
    "  --help           this text",
    "",
    "A model the writer cannot express (unknown architecture, no tokenizer) stops before anything is",
    "written: exit code 2 and one line.",
    "",
    "Example:",
    "  npx quantlab export ../shared/models/stories260K --to gguf --type Q4_K_M --out stories.gguf",
  ].join("\n"),
  async run(args, io) {
    const parsed = parseCommandArgs(
      exportCommand,
      args,
      { to: { type: "string" }, type: { type: "string" }, out: { type: "string" }, imatrix: { type: "string" } },
      io,
    );
    if (!parsed) return EXIT.usage;
    const { to, type, out, imatrix: imatrixFile } = parsed.values;
    const dir = parsed.positionals[0];
    if (!dir || !type || !out || parsed.positionals.length > 1) {
      io.err(`quantlab export: MODEL_DIR, --type and --out are required\nUsage: ${exportCommand.usage}\n`);
      return EXIT.usage;
    }
    if ((to ?? "gguf") !== "gguf") {
      io.err(`quantlab export: --to ${to} is not supported yet (gguf is)\n`);
      return EXIT.usage;
    }
    const partial = `${out}.partial`;
    let sources;
    try {
      const config = await readJson(path.join(dir, "config.json"), true);
      const tokenizer = await readJson(path.join(dir, "tokenizer.json"), false);
      const tokenizerConfig = await readJson(path.join(dir, "tokenizer_config.json"), false);
      sources = await openPath(dir);
      const model = await openModel(sources);
      const plan = planGgufExport({ model, config, tokenizer, tokenizerConfig, name: path.basename(path.resolve(dir)) }, type);
      for (const t of plan.tensors) {
        if (t.fallbackFrom) io.err(`  ${t.entry.name}: ${t.fallbackFrom} does not fit rows of ${t.entry.dims[0]}; written as ${t.entry.type.name}\n`);
      }
      let imatrix;
      if (imatrixFile) {
        const bytes = await readFile(imatrixFile).catch((e: NodeJS.ErrnoException) => {
          throw new UsageError(`${imatrixFile}: ${e.code === "ENOENT" ? "not found" : e.message}`);
        });
        imatrix = parseImatrix(new Uint8Array(bytes), imatrixFile);
        const unknown = [...imatrix.keys()].filter((k) => !plan.tensors.some((t) => t.entry.name === k));
        if (unknown.length > 0) io.err(`  the importance matrix names tensors the model does not have (ignored): ${unknown.slice(0, 3).join(", ")}${unknown.length > 3 ? ", ..." : ""}\n`);
      }
      const file = await open(partial, "w").catch((e: NodeJS.ErrnoException) => {
        throw new UsageError(`cannot write ${partial}: ${e.code ?? e.message}`);
      });
      let layout;
      try {
        let position = 0;
        layout = await exportGguf(plan, {
          async write(bytes) {
            await file.write(bytes, 0, bytes.length, position);
            position += bytes.length;
          },
        }, { imatrix });
      } finally {
        await file.close();
      }
      await rename(partial, out);
      io.out(`${out}: ${plan.tensors.length} tensors, ${plan.fileType}, ${formatBytes(layout.fileBytes)}\n`);
      return EXIT.ok;
    } catch (e) {
      await rm(partial, { force: true });
      if (e instanceof UsageError || isExportError(e) || isFormatError(e)) {
        io.err(`quantlab export: ${(e as Error).message}\n`);
        return EXIT.usage;
      }
      throw e;
    } finally {
      if (sources) await closeSources(sources);
    }
  },
};
