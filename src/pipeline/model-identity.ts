/**
 * Which model this is, for caching its results: per safetensors file its name, its size and the SHA-256 of
 * its header (the 8-byte length and the JSON: every tensor's name, dtype, shape and offsets, and the
 * metadata). The same file opened again, from a picker, a drop or a URL, has the same identity; another
 * checkpoint of the same architecture has other sizes or metadata in practice, and a file rewritten with
 * other weights but the same header is the one case this cannot tell apart (hashing every weight would
 * cost a full read).
 *
 * Uses crypto.subtle (browsers on secure origins, workers, Node 20).
 */
import { sha256Hex } from "../common/sha256.ts";
import { baseName } from "../formats/model.ts";
import type { TensorInfo } from "../formats/safetensors.ts";
import type { ByteSource } from "../formats/source.ts";

export interface FileIdentity {
  name: string;
  size: number;
  /** Hex SHA-256 of the file's first 8 + header-length bytes. */
  headerSha256: string;
}

export interface ModelIdentity {
  /** In file-name order. */
  files: FileIdentity[];
  /** One string for all of it: the cache's key. */
  key: string;
}

/** One file's identity (two small reads: the header length, then the header). */
export async function fileIdentity(source: ByteSource, signal?: AbortSignal): Promise<FileIdentity> {
  const prefix = await source.read(0, 8, signal);
  const headerLength = new DataView(prefix.buffer, prefix.byteOffset, 8).getUint32(0, true);
  const header = await source.read(0, 8 + headerLength, signal);
  return { name: baseName(source.name), size: source.size, headerSha256: await sha256Hex(header) };
}

/** The identity of the model the tensors belong to (their files, each once). */
export async function modelIdentity(tensors: readonly TensorInfo[], signal?: AbortSignal): Promise<ModelIdentity> {
  const sources = [...new Set(tensors.map((t) => t.source))];
  const files = (await Promise.all(sources.map((s) => fileIdentity(s, signal)))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { files, key: files.map((f) => `${f.name}|${f.size}|${f.headerSha256}`).join("\n") };
}
