/**
 * WGSL has no #include: the functions every kernel family shares live in shaders/common/*.wgsl and
 * are put in front of a family's own file here. Every family builds its shader text with
 * withCommonWgsl, once, at module load (the text is also the pipeline cache key in buffers.ts).
 *
 * The common files only declare functions and constants (no bindings, no module-scope variables), so
 * prepending all of them is harmless: what an entry point does not call is dropped by the compiler.
 */
import bytes from "../../shaders/common/bytes.wgsl?raw";
import f16 from "../../shaders/common/f16.wgsl?raw";
import ggmlRounding from "../../shaders/common/ggml-rounding.wgsl?raw";
import grid from "../../shaders/common/grid.wgsl?raw";

const COMMON_WGSL: readonly (readonly [file: string, source: string])[] = [
  ["bytes.wgsl", bytes],
  ["f16.wgsl", f16],
  ["ggml-rounding.wgsl", ggmlRounding],
  ["grid.wgsl", grid],
];

/** A WGSL file of shared functions that not every family needs (common/division.wgsl, the K-quant searches). */
export type WgslLibrary = readonly [file: string, source: string];

/**
 * The shader text of one kernel family: shaders/common/*.wgsl, then `libraries` (other files it uses,
 * named relative to shaders/), then the family's file. File names go into separator comments, so a
 * compile error's line can be traced to its file.
 */
export function withCommonWgsl(familySource: string, familyFile: string, libraries: readonly WgslLibrary[] = []): string {
  const parts = COMMON_WGSL.map(([file, source]) => `// ---- shaders/common/${file}\n${source}`);
  for (const [file, source] of libraries) parts.push(`// ---- shaders/${file}\n${source}`);
  parts.push(`// ---- shaders/${familyFile}\n${familySource}`);
  return parts.join("\n");
}
