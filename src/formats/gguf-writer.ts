/**
 * GGUF (version 3) writer, pure: the header bytes for typed key-values and tensor infos, then each
 * tensor's data at 32-byte-aligned offsets, handed to a sink one piece at a time so a model larger than
 * memory streams out. The byte layout is the one src/formats/gguf.ts's reader documents (the same file
 * format, read and written; the reader's tests parse what this writes).
 */
import type { GgmlType } from "./gguf.ts";
import { ggmlTensorBytes } from "./gguf.ts";

/** A value with the GGUF type it is written as. */
export type GgufTypedValue =
  | { type: "u32" | "i32" | "f32" | "u64"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; elementType: "string"; value: string[] }
  | { type: "array"; elementType: "f32" | "i32" | "u32"; value: ArrayLike<number> };

export interface GgufKeyValue {
  key: string;
  value: GgufTypedValue;
}

export interface GgufTensorEntry {
  /** llama.cpp's name, e.g. "blk.0.attn_q.weight". */
  name: string;
  /** ggml order: ne0 (the row length) first. */
  dims: number[];
  type: GgmlType;
}

/** Where the sink gets the file: bytes in order. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

const TYPE_ID = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const;

/** Growable little-endian byte buffer. */
class Bytes {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private static readonly encoder = new TextEncoder();

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.room(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.room(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }
  string(s: string): void {
    const bytes = Bytes.encoder.encode(s);
    this.u64(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeValue(out: Bytes, v: GgufTypedValue): void {
  switch (v.type) {
    case "u32": return out.u32(v.value);
    case "i32": return out.i32(v.value);
    case "f32": return out.f32(v.value);
    case "u64": return out.u64(v.value);
    case "bool": return out.u8(v.value ? 1 : 0);
    case "string": return out.string(v.value);
    case "array": {
      out.u32(TYPE_ID[v.elementType]);
      out.u64(v.value.length);
      if (v.elementType === "string") for (const s of v.value as string[]) out.string(s);
      else {
        const put = v.elementType === "f32" ? out.f32.bind(out) : v.elementType === "i32" ? out.i32.bind(out) : out.u32.bind(out);
        for (let i = 0; i < v.value.length; i++) put((v.value as ArrayLike<number>)[i]!);
      }
      return;
    }
  }
}

export interface GgufLayout {
  /** The header with its padding: the data section starts right after. */
  header: Uint8Array;
  /** Each tensor's offset in the data section, and its byte size. */
  offsets: number[];
  nbytes: number[];
  /** The whole file's size. */
  fileBytes: number;
}

/** The header of a GGUF file holding these key-values and tensors, and where each tensor's data goes. */
export function ggufLayout(kv: readonly GgufKeyValue[], tensors: readonly GgufTensorEntry[], alignment = GGUF_DEFAULT_ALIGNMENT): GgufLayout {
  const keys = new Set<string>();
  for (const { key } of kv) {
    if (keys.has(key)) throw new Error(`GGUF key "${key}" is given twice`);
    keys.add(key);
  }
  const names = new Set<string>();
  const out = new Bytes();
  out.u8(0x47), out.u8(0x47), out.u8(0x55), out.u8(0x46); // "GGUF"
  out.u32(GGUF_VERSION);
  out.u64(tensors.length);
  out.u64(kv.length);
  for (const { key, value } of kv) {
    out.string(key);
    out.u32(TYPE_ID[value.type]);
    writeValue(out, value);
  }
  const offsets: number[] = [];
  const nbytes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`tensor "${t.name}" is given twice`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > 4) throw new Error(`tensor "${t.name}" has ${t.dims.length} dimensions (GGUF takes 1 to 4)`);
    if (t.dims[0]! % t.type.blockWeights !== 0) {
      throw new Error(`tensor "${t.name}": rows of ${t.dims[0]} are not a multiple of the ${t.type.name} block (${t.type.blockWeights})`);
    }
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type.id);
    out.u64(offset);
    const size = ggmlTensorBytes(t.type, t.dims);
    offsets.push(offset);
    nbytes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  out.pad(alignment);
  const header = out.result();
  const last = nbytes.length > 0 ? offsets[offsets.length - 1]! + nbytes[nbytes.length - 1]! : 0;
  return { header, offsets, nbytes, fileBytes: header.length + last };
}

/**
 * Writes a whole GGUF file to `sink`: the header, then each tensor's bytes as `data(i)` produces them (in
 * order, one tensor in memory at a time), zero-padded to the alignment between tensors.
 */
export async function writeGguf(
  sink: ByteSink,
  kv: readonly GgufKeyValue[],
  tensors: readonly GgufTensorEntry[],
  data: (index: number) => Promise<Uint8Array>,
  opts: { alignment?: number; signal?: AbortSignal; onTensor?: (index: number) => void } = {},
): Promise<GgufLayout> {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const layout = ggufLayout(kv, tensors, alignment);
  await sink.write(layout.header);
  for (let i = 0; i < tensors.length; i++) {
    opts.signal?.throwIfAborted();
    const bytes = await data(i);
    if (bytes.length !== layout.nbytes[i]) {
      throw new Error(`tensor "${tensors[i]!.name}": ${bytes.length} bytes given, ${layout.nbytes[i]} expected for ${tensors[i]!.type.name} ${tensors[i]!.dims.join("x")}`);
    }
    await sink.write(bytes);
    const pad = i < tensors.length - 1 ? (alignment - (bytes.length % alignment)) % alignment : 0;
    if (pad > 0) await sink.write(new Uint8Array(pad));
    opts.onTensor?.(i);
  }
  return layout;
}
