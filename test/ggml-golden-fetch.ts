/**
 * ../shared/golden/ggml for browser-mode tests: the same cases as test/ggml-golden.ts (Node), fetched
 * through Vite's /@fs/ route. `sharedDir` is the absolute path of ../shared (inject("sharedDir")).
 */
import type { GoldenCase, GoldenEntry, GoldenManifest } from "./ggml-golden.ts";

export type { GoldenCase, GoldenEntry, GoldenManifest };

async function fetchBytes(sharedDir: string, relative: string): Promise<ArrayBuffer> {
  const response = await fetch(`/@fs${sharedDir}/golden/ggml/${relative}`);
  if (!response.ok) throw new Error(`fetching golden/ggml/${relative} from the test server: HTTP ${response.status}`);
  return response.arrayBuffer();
}

export async function fetchGoldenManifest(sharedDir: string): Promise<GoldenManifest> {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(sharedDir, "manifest.json"))) as GoldenManifest;
}

export async function fetchGoldenCase(sharedDir: string, entry: GoldenEntry): Promise<GoldenCase> {
  const [input, imatrix, quant, dequant] = await Promise.all([
    fetchBytes(sharedDir, entry.input),
    entry.imatrix ? fetchBytes(sharedDir, entry.imatrix) : undefined,
    fetchBytes(sharedDir, entry.quant.file),
    fetchBytes(sharedDir, entry.dequant.file),
  ]);
  return {
    entry,
    input: new Float32Array(input),
    ...(imatrix ? { imatrix: new Float32Array(imatrix) } : {}),
    quant: new Uint8Array(quant),
    dequantBits: new Uint32Array(dequant),
  };
}
