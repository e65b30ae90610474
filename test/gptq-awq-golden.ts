/**
 * ../shared/golden/gptq_awq (see its README.md): per case W, X (and X_eval), per result the reference's
 * settings, errors and stored pieces. Pure: the caller passes how to read a file of that folder (Node:
 * readFile; browser tests: a fetch through Vite's /@fs/ route), so both test projects share this loader.
 */

export type ReadGolden = (relative: string) => Promise<ArrayBuffer>;

export interface GoldenFile {
  path: string;
  shape: number[];
  dtype: "float32" | "int32";
}

export interface GoldenLayerCase {
  kind: "synthetic" | "real";
  out_features: number;
  in_features: number;
  n_calib_tokens: number;
  n_eval_tokens: number;
  files: { W: GoldenFile; X: GoldenFile; X_eval?: GoldenFile };
}

export interface GoldenResult {
  case: string;
  id: string;
  method: "gptq" | "awq";
  bits: number;
  group: number;
  sym: boolean;
  act_order: boolean;
  static_groups: boolean;
  clip: boolean | null;
  err_calib: number;
  err_eval: number | null;
  weight_mse: number;
  rtn_err_calib: number;
  alpha?: number;
  alpha_grid_err_calib?: number[];
  clip_n_sample_token?: number;
  files: Record<string, GoldenFile>;
}

export interface GoldenGptqAwq {
  cases: Record<string, GoldenLayerCase>;
  results: GoldenResult[];
}

export const GPTQ_AWQ_GOLDEN = "golden/gptq_awq";

export async function goldenGptqAwqManifest(read: ReadGolden): Promise<GoldenGptqAwq> {
  return JSON.parse(new TextDecoder().decode(await read("manifest.json"))) as GoldenGptqAwq;
}

/** A float32/int32 file of the folder (little-endian; this runs on little-endian hosts only, as WebGPU does). */
export async function goldenArray(read: ReadGolden, file: GoldenFile): Promise<Float32Array | Int32Array> {
  const bytes = await read(file.path);
  const n = file.shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== n * 4) throw new Error(`${file.path}: ${bytes.byteLength} bytes, expected ${n * 4}`);
  return file.dtype === "int32" ? new Int32Array(bytes) : new Float32Array(bytes);
}

export async function goldenF32(read: ReadGolden, file: GoldenFile): Promise<Float32Array> {
  const a = await goldenArray(read, file);
  if (!(a instanceof Float32Array)) throw new Error(`${file.path} is not float32`);
  return a;
}

export interface GoldenLayer {
  name: string;
  c: GoldenLayerCase;
  w: Float32Array;
  x: Float32Array;
  xEval: Float32Array | undefined;
}

export async function goldenLayer(read: ReadGolden, manifest: GoldenGptqAwq, name: string): Promise<GoldenLayer> {
  const c = manifest.cases[name];
  if (!c) throw new Error(`no golden case ${name}`);
  const [w, x, xEval] = await Promise.all([goldenF32(read, c.files.W), goldenF32(read, c.files.X), c.files.X_eval ? goldenF32(read, c.files.X_eval) : undefined]);
  return { name, c, w, x, xEval };
}

/** The bar: ours at most 1.02x the reference's err_calib. */
export const ERR_CALIB_RATIO_BAR = 1.02;

/** Reads the golden files through the browser-mode test server (vitest serves ../shared under /@fs). */
export function fetchGoldenFile(sharedDir: string): ReadGolden {
  return async (relative) => {
    const response = await fetch(`/@fs${sharedDir}/${GPTQ_AWQ_GOLDEN}/${relative}`);
    if (!response.ok) throw new Error(`fetching ${GPTQ_AWQ_GOLDEN}/${relative}: HTTP ${response.status}`);
    return response.arrayBuffer();
  };
}
