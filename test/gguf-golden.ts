/** The reference GGUFs of ../shared/golden/gguf (llama-quantize's real output for stories260K). Node-only. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { SHARED_DIR } from "./shared-data.ts";

export const GGUF_GOLDEN_DIR = path.resolve(SHARED_DIR, "golden/gguf");
export const ggufGoldenBytes = (type: "F32" | "Q4_K_M" | "Q2_K"): Uint8Array =>
  readFileSync(path.join(GGUF_GOLDEN_DIR, `stories260K-${type}.gguf`));

export interface GoldenManifestFile {
  size: number;
  n_kv: number;
  n_tensors: number;
  data_section_offset: number;
  tensors: { name: string; dims: number[]; type: string; type_id: number; offset: number; nbytes: number }[];
}

export function ggufGoldenManifest(type: "F32" | "Q4_K_M" | "Q2_K"): GoldenManifestFile {
  const manifest = JSON.parse(readFileSync(path.join(GGUF_GOLDEN_DIR, "manifest.json"), "utf8")) as { files: Record<string, GoldenManifestFile> };
  return manifest.files[`stories260K-${type}.gguf`]!;
}
