/**
 * Node's ByteSource: a file handle read at positions (positions past 2^32 are fine), and openPath,
 * which turns what a user types (a .safetensors file, an index json, or a folder) into sources.
 */
import { open, readdir, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { FormatError } from "../formats/errors.ts";
import { naturalCompare } from "../formats/catalog.ts";
import { isGgufName, isIndexName, readIndex } from "../formats/model.ts";
import { assertReadable, type ByteSource } from "../formats/source.ts";

/** Node reads at most this much per call (its limit is 2^31 - 1); longer reads loop. */
const MAX_READ_CALL = 1 << 30;

export class NodeFileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  /** Opens `filePath`; `name` (default: the path as given) is what messages call it. */
  static async open(filePath: string, name: string = filePath): Promise<NodeFileSource> {
    let handle: FileHandle;
    try {
      handle = await open(filePath, "r");
    } catch (e) {
      throw new FormatError("io", name, `cannot open the file: ${systemMessage(e)}`);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new FormatError("io", name, "not a regular file");
      return new NodeFileSource(name, info.size, handle);
    } catch (e) {
      await handle.close();
      throw e instanceof FormatError ? e : new FormatError("io", name, `cannot read the file: ${systemMessage(e)}`);
    }
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    assertReadable(this, offset, length);
    signal?.throwIfAborted();
    const out = new Uint8Array(length);
    await this.readInto(offset, out, signal);
    return out;
  }

  async readInto(offset: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    const length = target.byteLength;
    assertReadable(this, offset, length);
    signal?.throwIfAborted();
    let filled = 0;
    while (filled < length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await this.handle.read(target, filled, Math.min(length - filled, MAX_READ_CALL), offset + filled));
      } catch (e) {
        throw new FormatError("io", this.name, `reading bytes ${offset}..${offset + length} failed: ${systemMessage(e)}`);
      }
      if (bytesRead === 0) {
        throw new FormatError("truncated", this.name, `the file ended at byte ${offset + filled} while reading bytes ${offset}..${offset + length} (it shrank?)`);
      }
      filled += bytesRead;
      signal?.throwIfAborted();
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function systemMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === "ENOENT") return "no such file or directory";
  if (err?.code === "EACCES") return "permission denied";
  if (err?.code === "EISDIR") return "it is a folder";
  return err instanceof Error ? err.message : String(e);
}

const INDEX_NAME = "model.safetensors.index.json";

/**
 * Sources for a path: a file as itself; an index json with the shards it lists that exist next to
 * it (a missing one is left out, so openModel reports it by name); a folder: its index (prefer
 * model.safetensors.index.json) and the index's shards, or else every *.safetensors in it, or else
 * every *.gguf.
 * Close the sources when done.
 */
export async function openPath(p: string): Promise<ByteSource[]> {
  let info;
  try {
    info = await stat(p);
  } catch (e) {
    throw new FormatError("io", p, systemMessage(e));
  }
  if (info.isDirectory()) {
    const names = (await readdir(p)).sort(naturalCompare);
    const indexName = names.includes(INDEX_NAME) ? INDEX_NAME : names.find((n) => isIndexName(n));
    if (indexName) return openIndexAndShards(path.join(p, indexName));
    const shards = names.filter((n) => n.toLowerCase().endsWith(".safetensors"));
    // A folder of GGUF files only (one model, or the shards of a split GGUF).
    const ggufs = shards.length === 0 ? names.filter((n) => isGgufName(n)) : [];
    if (shards.length === 0 && ggufs.length === 0) {
      throw new FormatError("io", p, "this folder holds no .safetensors file, no model.safetensors.index.json and no .gguf file");
    }
    if (ggufs.length > 1 && !ggufs.every((n) => /-\d{5}-of-\d{5}\.gguf$/i.test(n))) {
      throw new FormatError("io", p, `this folder holds ${ggufs.length} GGUF files that are not the shards of one split model (${ggufs.join(", ")}); name the one to open`);
    }
    return openAll([...shards, ...ggufs].map((n) => path.join(p, n)));
  }
  if (isIndexName(p)) return openIndexAndShards(p);
  return [await NodeFileSource.open(p)];
}

async function openIndexAndShards(indexPath: string): Promise<ByteSource[]> {
  const index = await NodeFileSource.open(indexPath);
  try {
    const { shards } = await readIndex(index);
    const dir = path.dirname(indexPath);
    const present: string[] = [];
    for (const shard of shards) {
      const shardPath = path.join(dir, path.basename(shard)); // shards live next to their index
      if (await stat(shardPath).then((s) => s.isFile(), () => false)) present.push(shardPath);
    }
    return [index, ...(await openAll(present))];
  } catch (e) {
    await index.close();
    throw e;
  }
}

/** Opens every path, or none: on a failure the ones already open are closed. */
async function openAll(paths: string[]): Promise<ByteSource[]> {
  const results = await Promise.allSettled(paths.map((p) => NodeFileSource.open(p)));
  const failure = results.find((r) => r.status === "rejected");
  if (failure) {
    await Promise.all(results.map((r) => (r.status === "fulfilled" ? r.value.close() : undefined)));
    throw (failure as PromiseRejectedResult).reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<NodeFileSource>).value);
}

/** Closes every source that has handles. */
export async function closeSources(sources: readonly ByteSource[]): Promise<void> {
  await Promise.allSettled(sources.map((s) => s.close?.()));
}
