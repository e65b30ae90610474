/**
 * `quantlab inspect PATH|URL [--json]`: the lab's tensor table in a terminal. The rows, groups and
 * shares come from src/formats/catalog.ts, the same functions the UI draws; this file only lays
 * them out as text or JSON.
 */
import { parseArgs } from "node:util";
import { isFormatError } from "../formats/errors.ts";
import { catalogRows, groupRows, totals } from "../formats/catalog.ts";
import { openModel, openUrlSources, type OpenedModel } from "../formats/model.ts";
import type { ByteSource } from "../formats/source.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { formatBytes, formatCount, formatShare } from "../common/format.ts";
import { EXIT, type CliIO, type Command } from "./command.ts";

/** One tensor in `--json` output. `file` is an addition to the keys: offsets are per file. */
export interface InspectJsonTensor {
  name: string;
  dtype: string;
  shape: number[];
  params: number;
  bytes: number;
  offset: number;
  file: string;
}

export interface InspectJson {
  format: OpenedModel["format"];
  /** The model's metadata: safetensors' __metadata__, or a GGUF's key-values as text. */
  metadata: Record<string, string>;
  tensors: InspectJsonTensor[];
  params: number;
  bytes: number;
}

export const inspectCommand: Command = {
  name: "inspect",
  summary: "List the tensors of a safetensors or GGUF model: name, dtype, shape, parameters, bytes, share.",
  usage: "quantlab inspect PATH|URL [--json]",
  details: [
    "PATH is a .safetensors file, a model.safetensors.index.json (its shards are found next to it),",
    "a folder holding either, or a .gguf file (its dtypes are ggml types: Q4_K, Q8_0, ...; its",
    "key-values are printed first). URL is an http(s) address of a .safetensors or .gguf file or of an",
    "index json (a Hugging Face \"resolve\" URL works): only the header is fetched, with HTTP Range requests.",
    "",
    "Options:",
    "  --json   print {\"format\",\"metadata\",\"tensors\":[{\"name\",\"dtype\",\"shape\",\"params\",\"bytes\",",
    "           \"offset\",\"file\"}],\"params\",\"bytes\"} instead of the table; offset is the tensor's",
    "           absolute byte offset in its file, file the shard it is in.",
    "  --help   this text",
    "",
    "Bad input (missing file, corrupt header, a server that ignores Range) exits with code 2 and one",
    "line: quantlab: <file>: <problem>.",
    "",
    "Example:",
    "  npx quantlab inspect ../shared/models/stories260K-sharded",
  ].join("\n"),
  async run(args, io) {
    let parsed;
    try {
      parsed = parseArgs({ args, options: { json: { type: "boolean" } }, allowPositionals: true, strict: true });
    } catch (e) {
      io.err(`quantlab inspect: ${(e as Error).message}\nUsage: ${inspectCommand.usage}\n`);
      return EXIT.usage;
    }
    const [target, ...extra] = parsed.positionals;
    if (target === undefined || extra.length > 0) {
      io.err(`quantlab inspect: expected one PATH or URL, got ${parsed.positionals.length}\nUsage: ${inspectCommand.usage}\n`);
      return EXIT.usage;
    }
    let sources: ByteSource[] = [];
    try {
      sources = await openTarget(target);
      const model = await openModel(sources);
      io.out(parsed.values.json ? JSON.stringify(inspectJson(model)) + "\n" : inspectTable(model));
      return EXIT.ok;
    } catch (e) {
      return reportError(e, target, io);
    } finally {
      await closeSources(sources);
    }
  },
};

const isUrl = (target: string) => /^https?:\/\//i.test(target);

/** The byte sources of a PATH (file, index or folder) or an http(s) URL. */
export const openTarget = (target: string): Promise<ByteSource[]> => (isUrl(target) ? openUrlSources(target) : openPath(target));

/** One line on stderr; FormatErrors already name their file, Node's fs errors get the path. */
export function reportError(e: unknown, target: string, io: CliIO): number {
  if (isFormatError(e)) {
    io.err(`quantlab: ${oneLine(e.message)}\n`);
    return EXIT.usage;
  }
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
    io.err(`quantlab: ${target}: ${oneLine(describeSystemError(e as NodeJS.ErrnoException))}\n`);
    return EXIT.usage;
  }
  io.err(`quantlab: ${target}: unexpected failure: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  return EXIT.failure;
}

function describeSystemError(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case "ENOENT":
      return "no such file or folder";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a folder, expected a file";
    default:
      return e.message;
  }
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim();

export function inspectJson(model: OpenedModel): InspectJson {
  return {
    format: model.format,
    metadata: model.metadata,
    tensors: model.tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      params: t.params,
      bytes: t.bytes,
      offset: t.offset,
      file: t.file,
    })),
    params: model.totalParams,
    bytes: model.totalBytes,
  };
}

const count = formatCount;
const shapeText = (shape: number[]) => `[${shape.join(", ")}]`;

/** The table: one block per group (layer), each tensor on a line, a subtotal per group, the totals. */
export function inspectTable(model: OpenedModel): string {
  const rows = catalogRows(model);
  const sum = totals(rows);

  const header = ["name", "dtype", "shape", "params", "bytes", "share"];
  const blocks: string[][][] = groupRows(rows).map((g) => [
    [`${g.group}  (${g.rows.length} tensor${g.rows.length === 1 ? "" : "s"})`, "", "", count(g.params), count(g.bytes), formatShare(g.share)],
    ...g.rows.map((r) => [`  ${r.name}`, r.dtype, shapeText(r.shape), count(r.params), count(r.bytes), formatShare(r.share)]),
  ]);
  const totalLine = [`total  (${sum.tensors} tensors)`, "", "", count(sum.params), count(sum.bytes), formatShare(sum.share)];

  const all = [header, totalLine, ...blocks.flat()];
  const widths = header.map((_, c) => Math.max(...all.map((cells) => cells[c]!.length)));
  const rightAligned = new Set([3, 4, 5]);
  const format = (cells: string[]) =>
    cells
      .map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();

  const files = model.files.length === 1 ? `file: ${model.files[0]}` : `files (${model.files.length}): ${model.files.join(", ")}`;
  const index = model.index ? `index: ${model.index}\n` : "";
  const out = [`${model.name}`, `${index}${files}`];
  if (model.format === "gguf") {
    // A GGUF says what model it is in its key-values (architecture, context length, tokenizer...).
    const kv = Object.entries(model.metadata);
    const keyWidth = Math.max(...kv.map(([k]) => k.length));
    out.push("", `key-values (${kv.length})`, ...kv.map(([k, v]) => `  ${k.padEnd(keyWidth)}  ${oneLine(v).slice(0, 100)}`));
  }
  out.push("", format(header));
  for (const block of blocks) out.push("", ...block.map(format));
  out.push("", format(totalLine), "");
  out.push(`${count(sum.tensors)} tensors, ${count(sum.params)} parameters, ${count(sum.bytes)} bytes (${formatBytes(sum.bytes)})`);
  return out.join("\n") + "\n";
}
