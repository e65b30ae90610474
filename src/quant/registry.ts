/**
 * Every quantization format the lab knows, in one list. The CLI's `formats`, the UI's pickers, the
 * memory estimator's bits per weight and the GGUF writer's type ids all read this registry.
 */
import { BNB_FORMATS } from "./bnb.ts";
import { CAST_FORMATS } from "./casts.ts";
import type { FormatFamily, QuantFormat } from "./format.ts";
import { GGML_K_FORMATS } from "./ggml/kquants.ts";
import { GGML_LEGACY_FORMATS } from "./ggml/legacy.ts";
import { FORMAT_ALIASES, PLAIN_FORMATS } from "./intq.ts";

export const FORMATS: readonly QuantFormat[] = [
  ...GGML_LEGACY_FORMATS,
  ...GGML_K_FORMATS,
  ...PLAIN_FORMATS,
  ...BNB_FORMATS,
  ...CAST_FORMATS,
];

const byId = new Map<string, QuantFormat>();
for (const f of FORMATS) {
  if (byId.has(f.id)) throw new Error(`two formats share the id ${f.id}`);
  byId.set(f.id, f);
}

/** Short names that stand for a full id ("int8" is per-channel symmetric int8). */
export const ALIASES: Readonly<Record<string, string>> = FORMAT_ALIASES;

/** The format with this id or alias, case-insensitive for the ggml names ("Q4_K", "q4_k"). */
export function findFormat(name: string): QuantFormat | undefined {
  const exact = byId.get(ALIASES[name] ?? name);
  if (exact) return exact;
  const lower = name.toLowerCase();
  return FORMATS.find((f) => f.id.toLowerCase() === lower);
}

export class UnknownFormatError extends Error {
  override readonly name = "UnknownFormatError";
}

/** Like findFormat, but an unknown name throws with the list of known ids. */
export function getFormat(name: string): QuantFormat {
  const f = findFormat(name);
  if (!f) throw new UnknownFormatError(`unknown format "${name}"; known formats: ${FORMATS.map((x) => x.id).join(", ")}`);
  return f;
}

export function formatsOf(family: FormatFamily): QuantFormat[] {
  return FORMATS.filter((f) => f.family === family);
}
