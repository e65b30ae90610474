/**
 * `quantlab formats [--json]`: every format of the registry (src/quant/registry.ts) with its block,
 * bytes per block, exact bits per weight and GGML type id. Nothing here is a second table: each line
 * is read from the format's own record.
 */
import { parseArgs } from "node:util";
import { ALIASES, FORMATS } from "../quant/registry.ts";
import { bitsPerWeight, type MatrixShape, type QuantFormat } from "../quant/format.ts";
import { EXIT, type Command } from "./command.ts";

/** The shape quoted for formats whose bits per weight depend on the shape. */
export const REFERENCE_SHAPE: MatrixShape = { rows: 4096, cols: 4096 };

/**
 * How a format's side data scales: "block" (a fixed block, the bits per weight are the same for every
 * shape the format takes), "tensor" (one scale for the whole tensor), "channel" (one per row), or
 * "blocks+tensor" (fixed blocks plus data shared by groups of blocks or the whole tensor, e.g. nf4-dq).
 */
export type Granularity = "block" | "tensor" | "channel" | "blocks+tensor";

export function granularityOf(f: QuantFormat): Granularity {
  const cols = 256 * 128; // a row length every format takes
  const one = f.encodedBytes({ rows: 1, cols });
  const two = f.encodedBytes({ rows: 2, cols });
  if (f.blockWeights === 0) return two === 2 * one ? "channel" : "tensor";
  const blockBpw = (f.blockBytes * 8) / f.blockWeights;
  return bitsPerWeight(f, REFERENCE_SHAPE) === blockBpw && bitsPerWeight(f, { rows: 1, cols }) === blockBpw ? "block" : "blocks+tensor";
}

export interface FormatJson {
  id: string;
  family: string;
  /** Weights per block; null for per-tensor/per-channel formats (the block is the tensor or a row). */
  block_weights: number | null;
  bytes_per_block: number | null;
  granularity: Granularity;
  /** Exact bits per weight for every shape (block formats), or null when it depends on the shape. */
  bits_per_weight: number | null;
  /** Exact bits per weight of a 4096x4096 tensor, scales, minimums and zero points included. */
  bits_per_weight_4096x4096: number;
  ggml_type: number | null;
  aliases: string[];
  description: string;
}

export function formatJson(f: QuantFormat): FormatJson {
  const granularity = granularityOf(f);
  return {
    id: f.id,
    family: f.family,
    block_weights: f.blockWeights > 0 ? f.blockWeights : null,
    bytes_per_block: f.blockWeights > 0 ? f.blockBytes : null,
    granularity,
    bits_per_weight: granularity === "block" ? (f.blockBytes * 8) / f.blockWeights : null,
    bits_per_weight_4096x4096: bitsPerWeight(f, REFERENCE_SHAPE),
    ggml_type: f.ggmlType ?? null,
    aliases: Object.entries(ALIASES)
      .filter(([, id]) => id === f.id)
      .map(([alias]) => alias),
    description: f.description,
  };
}

/** What the bits/weight column says for formats whose figure depends on the shape. */
function shapeNote(f: QuantFormat, granularity: Granularity): string {
  if (granularity === "tensor") return "per tensor: + scales";
  if (granularity === "channel") return "per channel: + scales";
  return `${bpwText((f.blockBytes * 8) / f.blockWeights)} + shared scales`;
}

/** Bits per weight: the shortest decimal that is exactly the float64 figure. */
const bpwText = (bpw: number) => String(bpw);

export function formatsTable(): string {
  const header = ["format", "family", "block", "bytes", "bits/weight", "at 4096x4096", "ggml", "description"];
  const rows = FORMATS.map((f) => {
    const j = formatJson(f);
    const aliases = j.aliases.length > 0 ? ` (alias ${j.aliases.join(", ")})` : "";
    return [
      j.id,
      j.family,
      j.block_weights === null ? (j.granularity === "tensor" ? "tensor" : "row") : String(j.block_weights),
      j.bytes_per_block === null ? "-" : String(j.bytes_per_block),
      j.bits_per_weight === null ? shapeNote(f, j.granularity) : bpwText(j.bits_per_weight),
      bpwText(j.bits_per_weight_4096x4096),
      j.ggml_type === null ? "-" : String(j.ggml_type),
      j.description + aliases,
    ];
  });
  const all = [header, ...rows];
  const last = header.length - 1;
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const numeric = new Set([2, 3, 5, 6]);
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c === last ? cell : numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();
  return (
    [
      line(header),
      ...rows.map(line),
      "",
      `${FORMATS.length} formats. Bits per weight count every scale, minimum and zero point; "at 4096x4096" is`,
      "the exact figure for a 4096x4096 tensor (formats with per-tensor or per-channel data vary with the shape).",
    ].join("\n") + "\n"
  );
}

export const formatsCommand: Command = {
  name: "formats",
  summary: "List every quantization format with its block, bytes per block and exact bits per weight.",
  usage: "quantlab formats [--json]",
  details: [
    "Columns: format id (what --format and --formats take), family (gguf, int, bnb, cast), weights per",
    "block (\"row\" or \"tensor\" for per-channel and per-tensor formats), bytes per block, exact bits per",
    "weight counting scales, minimums and zero points (for shape-dependent formats: what the side data is",
    "per), the exact value for a 4096x4096 tensor, the GGML type id (ggml.h) and a description.",
    "",
    "Options:",
    "  --json   print [{\"id\",\"family\",\"block_weights\",\"bytes_per_block\",\"granularity\",\"bits_per_weight\",",
    "           \"bits_per_weight_4096x4096\",\"ggml_type\",\"aliases\",\"description\"}] (null where a",
    "           field does not apply)",
    "  --help   this text",
  ].join("\n"),
  async run(args, io) {
    let json: boolean | undefined;
    try {
      const parsed = parseArgs({ args, options: { json: { type: "boolean" } }, allowPositionals: false, strict: true });
      json = parsed.values.json;
    } catch (e) {
      io.err(`quantlab formats: ${(e as Error).message}\nUsage: ${formatsCommand.usage}\n`);
      return EXIT.usage;
    }
    io.out(json ? JSON.stringify(FORMATS.map(formatJson)) + "\n" : formatsTable());
    return EXIT.ok;
  },
};
