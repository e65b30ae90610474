/**
 * Model identity on the real files: stories260K (one file) and its two BF16 shards, the same bytes read
 * through another source, and a header that differs in one byte.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openModel } from "../formats/model.ts";
import { BlobSource } from "../formats/source.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { STORIES_DIR, STORIES_SHARDED_DIR } from "../../test/shared-data.ts";
import { fileIdentity, modelIdentity } from "./model-identity.ts";

const STORIES_FILE = path.join(STORIES_DIR, "model.safetensors");

describe("modelIdentity", () => {
  it("name, size and the SHA-256 of the 8 + n header bytes; the same from a file handle and from a Blob", async () => {
    const bytes = await readFile(STORIES_FILE);
    const n = Number(bytes.readBigUInt64LE(0));
    const expected = {
      name: "model.safetensors",
      size: bytes.length,
      headerSha256: createHash("sha256").update(bytes.subarray(0, 8 + n)).digest("hex"),
    };
    const sources = await openPath(STORIES_FILE);
    try {
      const model = await openModel(sources);
      const identity = await modelIdentity(model.tensors);
      expect(identity.files).toEqual([expected]);
      // A picked File is named by its base name; a URL or path by its last segment: the same identity.
      const blob = new BlobSource(new Blob([bytes]), "model.safetensors");
      expect(await fileIdentity(blob)).toEqual(expected);
      expect((await modelIdentity((await openModel([blob])).tensors)).key).toBe(identity.key);
    } finally {
      await closeSources(sources);
    }
  });

  it("a sharded model: each shard once, in name order; another key than the single file", async () => {
    const sharded = await openPath(STORIES_SHARDED_DIR);
    const single = await openPath(STORIES_FILE);
    try {
      const identity = await modelIdentity((await openModel(sharded)).tensors);
      expect(identity.files.map((f) => f.name)).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
      expect(new Set(identity.files.map((f) => f.headerSha256)).size).toBe(2);
      expect(identity.key).not.toBe((await modelIdentity((await openModel(single)).tensors)).key);
    } finally {
      await closeSources([...sharded, ...single]);
    }
  });

  it("one changed byte in the header changes the identity; one in the data does not", async () => {
    const bytes = new Uint8Array(await readFile(STORIES_FILE));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const original = await fileIdentity(new BlobSource(new Blob([bytes]), "m.safetensors"));
    const dataChanged = bytes.slice();
    dataChanged[8 + n + 5]! ^= 1;
    expect(await fileIdentity(new BlobSource(new Blob([dataChanged]), "m.safetensors"))).toEqual(original);
    const headerChanged = bytes.slice();
    headerChanged[8 + n - 1]! ^= 1; // the header's last byte
    expect((await fileIdentity(new BlobSource(new Blob([headerChanged]), "m.safetensors"))).headerSha256).not.toBe(original.headerSha256);
  });
});
