/**
 * llama.cpp's importance-matrix file (llama-imatrix's legacy ".dat" format, which llama-quantize --imatrix
 * reads): per weight tensor, the mean of x^2 over the calibration tokens for each input column.
 *
 * Byte layout (little-endian):
 *   n_entries i32
 *   n_entries x { name_len i32 | name (UTF-8, name_len bytes, no terminator) | ncall i32 | nval i32 |
 *                 values f32[nval] }
 *   then optionally: last_call i32 | dataset_len i32 | dataset (UTF-8)
 * Stored values are (sum x^2 / count) * ncall; llama-quantize divides them by ncall again, giving the
 * per-column mean of x^2. Names are GGUF tensor names ("blk.0.attn_q.weight").
 */
import { FormatError } from "./errors.ts";

export type ImportanceMatrix = Map<string, Float32Array>;

/** Reads an imatrix .dat: every entry's per-column mean of x^2. */
export function parseImatrix(bytes: Uint8Array, name: string): ImportanceMatrix {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const i32 = () => {
    if (pos + 4 > bytes.length) throw new FormatError("truncated", name, `the imatrix ends at byte ${bytes.length}, inside an entry`);
    pos += 4;
    return view.getInt32(pos - 4, true);
  };
  const n = i32();
  if (n < 0 || n > 1_000_000) throw new FormatError("bad-header", name, `${n} entries is not an imatrix file's count`);
  const out: ImportanceMatrix = new Map();
  const text = new TextDecoder();
  for (let e = 0; e < n; e++) {
    const len = i32();
    if (len <= 0 || pos + len > bytes.length) throw new FormatError("bad-header", name, `entry ${e} has a name of ${len} bytes`);
    const key = text.decode(bytes.subarray(pos, pos + len));
    pos += len;
    const ncall = i32();
    const nval = i32();
    if (nval < 0 || pos + 4 * nval > bytes.length) throw new FormatError("truncated", name, `entry "${key}" claims ${nval} values past the end of the file`);
    const values = new Float32Array(nval);
    for (let j = 0; j < nval; j++) values[j] = view.getFloat32(pos + 4 * j, true) / (ncall > 0 ? ncall : 1);
    pos += 4 * nval;
    if (values.some((v) => !(v >= 0) || !Number.isFinite(v))) throw new FormatError("bad-header", name, `entry "${key}" holds a negative or non-finite importance`);
    out.set(key, values);
  }
  return out;
}

/** Writes an imatrix .dat (ncall 1) that llama-quantize reads. */
export function writeImatrix(matrix: ImportanceMatrix, dataset = ""): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  const i32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    parts.push(b);
  };
  i32(matrix.size);
  for (const [key, values] of matrix) {
    const name = encoder.encode(key);
    i32(name.length);
    parts.push(name);
    i32(1);
    i32(values.length);
    parts.push(new Uint8Array(Float32Array.from(values).buffer));
  }
  i32(1);
  const ds = encoder.encode(dataset);
  i32(ds.length);
  parts.push(ds);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

/** The importance of each input column from activations x (tokens x cols, row-major): mean of x^2. */
export function importanceFromActivations(x: Float32Array, cols: number): Float32Array {
  const tokens = x.length / cols;
  const sums = new Float64Array(cols);
  for (let t = 0; t < tokens; t++) for (let c = 0; c < cols; c++) sums[c]! += x[t * cols + c]! ** 2;
  return Float32Array.from(sums, (s) => s / tokens);
}
