/**
 * The CLI as a user runs it: `node bin/quantlab.js ...` in a child process, on ../shared's models,
 * on files this test writes, and on a local HTTP server. Each test spawns processes, so the tests
 * of a block run concurrently; none shares mutable state with another.
 */
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORIES_DIR, STORIES_SHARDED_DIR } from "../../test/shared-data.ts";
import { startRangeServer, type RangeServer } from "../../test/range-server.ts";
import { quantlab } from "../../test/quantlab-cli.ts";
import type { InspectJson } from "./inspect.ts";
import { safetensorsHeader } from "../formats/safetensors.ts";

const STORIES_FILE = path.join(STORIES_DIR, "model.safetensors");
const SHARDED_INDEX = path.join(STORIES_SHARDED_DIR, "model.safetensors.index.json");

async function inspectJson(target: string): Promise<InspectJson> {
  const run = await quantlab("inspect", target, "--json");
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as InspectJson;
}

/** The names, in the order the F32 model stores them (sorted), from its own header. */
async function headerOf(file: string): Promise<Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>> {
  const bytes = await readFile(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString("utf8"));
  delete header.__metadata__;
  return header;
}

describe.concurrent("quantlab help", () => {
  it("prints the overview for --help, -h and help, exit 0", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const run = await quantlab(...args);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("Usage: quantlab COMMAND");
      expect(run.stdout).toContain("quantlab inspect PATH|URL [--json]");
    }
  });

  it("prints each command's help for COMMAND --help and help COMMAND", async () => {
    for (const args of [["inspect", "--help"], ["help", "inspect"], ["help", "--help"]]) {
      const run = await quantlab(...args);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^Usage: quantlab (inspect|help)/);
    }
  });

  it("rejects an unknown command, a missing command and a bad option with usage and exit 2", async () => {
    const unknown = await quantlab("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain("Usage: quantlab COMMAND");
    expect((await quantlab()).code).toBe(2);
    const badOption = await quantlab("inspect", STORIES_FILE, "--frob");
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("Usage: quantlab inspect");
    expect((await quantlab("inspect")).code).toBe(2);
  });
});

describe.concurrent("quantlab inspect on stories260K", () => {
  it("lists every tensor of the F32 file with the header's dtype, shape and offset", async () => {
    const header = await headerOf(STORIES_FILE);
    const json = await inspectJson(STORIES_FILE);
    expect(json.tensors).toHaveLength(47);
    expect(json.params).toBe(260_032);
    expect(json.bytes).toBe(1_040_128);
    const dataStart = 8 + 4_856; // header length from the README
    for (const t of json.tensors) {
      expect(Object.keys(t).sort()).toEqual(["bytes", "dtype", "file", "name", "offset", "params", "shape"]);
      const h = header[t.name]!;
      expect(h, t.name).toBeDefined();
      expect(t.dtype).toBe(h.dtype);
      expect(t.shape).toEqual(h.shape);
      expect(t.offset).toBe(dataStart + h.data_offsets[0]);
      expect(t.bytes).toBe(h.data_offsets[1] - h.data_offsets[0]);
      expect(t.params).toBe(h.shape.reduce((a, b) => a * b, 1));
    }
    expect(new Set(json.tensors.map((t) => t.name))).toEqual(new Set(Object.keys(header)));
    expect(Object.keys(json).sort()).toEqual(["bytes", "format", "metadata", "params", "tensors"]);
    expect([json.format, json.metadata]).toEqual(["safetensors", { format: "pt" }]);
  });

  it("gives the same tensors for the folder as for the file", async () => {
    expect(await inspectJson(STORIES_DIR)).toEqual(await inspectJson(STORIES_FILE));
  });

  it("reads the BF16 shards through the index, from the index file or the folder", async () => {
    const f32 = await inspectJson(STORIES_FILE);
    for (const target of [SHARDED_INDEX, STORIES_SHARDED_DIR]) {
      const json = await inspectJson(target);
      expect(json.params).toBe(260_032);
      expect(json.bytes).toBe(520_064);
      expect(json.tensors.map((t) => [t.name, t.shape])).toEqual(
        expect.arrayContaining(f32.tensors.map((t) => [t.name, t.shape])),
      );
      expect(json.tensors).toHaveLength(47);
      expect(new Set(json.tensors.map((t) => t.dtype))).toEqual(new Set(["BF16"]));
      // Layer 2 is split across the shards (stories260K-sharded README).
      const fileOf = (name: string) => path.basename(json.tensors.find((t) => t.name === name)!.file);
      expect(fileOf("model.layers.2.self_attn.o_proj.weight")).toBe("model-00001-of-00002.safetensors");
      expect(fileOf("model.layers.2.mlp.up_proj.weight")).toBe("model-00002-of-00002.safetensors");
    }
  });

  it("prints the table grouped by layer with totals and the files", async () => {
    const run = await quantlab("inspect", STORIES_SHARDED_DIR);
    expect(run.code).toBe(0);
    const lines = run.stdout.split("\n");
    expect(lines[0]).toBe("model.safetensors.index.json");
    expect(run.stdout).toContain("model-00001-of-00002.safetensors");
    expect(run.stdout).toContain("model-00002-of-00002.safetensors");
    expect(lines.find((l) => l.startsWith("name"))).toMatch(/^name\s+dtype\s+shape\s+params\s+bytes\s+share$/);
    for (let layer = 0; layer < 5; layer++) {
      expect(lines.find((l) => l.startsWith(`model.layers.${layer} `))).toMatch(/\(9 tensors\)\s+45,440\s+90,880\s+17\.47 %$/);
    }
    expect(lines.find((l) => l.trim().startsWith("model.layers.4.mlp.down_proj.weight"))).toMatch(
      /BF16\s+\[64, 172\]\s+11,008\s+22,016\s+4\.23 %$/,
    );
    expect(lines.find((l) => l.startsWith("total"))).toMatch(/\(47 tensors\)\s+260,032\s+520,064\s+100\.00 %$/);
    // A tensor line sits under its own layer's heading.
    const heading = lines.findIndex((l) => l.startsWith("model.layers.3 "));
    expect(lines.slice(heading + 1, heading + 10).every((l) => l.trim().startsWith("model.layers.3."))).toBe(true);
  });
});

describe.concurrent("quantlab inspect on files the test writes", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "quantlab-cli-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Exit code 2 and exactly one stderr line that names the file. */
  async function expectOneLineError(target: string, problem: RegExp) {
    const run = await quantlab("inspect", target);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    const lines = run.stderr.split("\n").filter((l) => l !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.startsWith(`quantlab: ${target}: `), lines[0]).toBe(true);
    expect(lines[0]).toMatch(problem);
  }

  it("a truncated copy of the model", async () => {
    const file = path.join(dir, "truncated.safetensors");
    await writeFile(file, (await readFile(STORIES_FILE)).subarray(0, 300_000));
    await expectOneLineError(file, /truncated|past|ends/i);
  });

  it("a header length past the end of the file", async () => {
    const file = path.join(dir, "huge-header.safetensors");
    const bytes = Buffer.alloc(64);
    bytes.writeBigUInt64LE(1_000_000n, 0);
    await writeFile(file, bytes);
    await expectOneLineError(file, /header/i);
  });

  it("a header that is not JSON", async () => {
    const file = path.join(dir, "not-json.safetensors");
    const json = Buffer.from("{this is not json}     ");
    const bytes = Buffer.alloc(8 + json.length);
    bytes.writeBigUInt64LE(BigInt(json.length), 0);
    json.copy(bytes, 8);
    await writeFile(file, bytes);
    await expectOneLineError(file, /JSON/);
  });

  it("a sparse file past 4 GiB is listed from its header alone", async () => {
    // A 4.5 GiB U8 tensor (zeros, never written: the file is sparse), then 4 F32 values past 2^32.
    const big = 4.5 * 2 ** 30;
    const header = safetensorsHeader([
      { name: "huge", dtype: "U8", shape: [big], byteLength: big },
      { name: "tail", dtype: "F32", shape: [4], byteLength: 16 },
    ]);
    const file = path.join(dir, "sparse-5GiB.safetensors");
    const handle = await open(file, "w");
    try {
      await handle.write(header, 0, header.length, 0);
      await handle.truncate(header.length + big + 16);
    } finally {
      await handle.close();
    }
    const json = await inspectJson(file);
    expect(json.tensors.map((t) => [t.name, t.offset, t.bytes])).toEqual([
      ["huge", header.length, big],
      ["tail", header.length + big, 16],
    ]);
    expect(json.tensors[1]!.offset).toBeGreaterThan(2 ** 32);
    expect(json.bytes).toBe(big + 16);
    const table = await quantlab("inspect", file);
    expect(table.stdout).toMatch(/total  \(2 tensors\)\s+4,831,838,212\s+4,831,838,224\s+100\.00 %/);
    await rm(file);
  });

  it("a path that does not exist", async () => {
    await expectOneLineError(path.join(dir, "nothing-here.safetensors"), /no such file/i);
  });

  it("an index whose shard is missing", async () => {
    const shardDir = path.join(dir, "half-sharded");
    await rm(shardDir, { recursive: true, force: true });
    await mkdir(shardDir);
    await copyFile(SHARDED_INDEX, path.join(shardDir, "model.safetensors.index.json"));
    await copyFile(path.join(STORIES_SHARDED_DIR, "model-00001-of-00002.safetensors"), path.join(shardDir, "model-00001-of-00002.safetensors"));
    await expectOneLineError(path.join(shardDir, "model.safetensors.index.json"), /model-00002-of-00002\.safetensors/);
  });
});

describe.concurrent("quantlab inspect URL", () => {
  let server: RangeServer;
  let noRange: RangeServer;
  beforeAll(async () => {
    server = await startRangeServer(path.dirname(STORIES_DIR));
    noRange = await startRangeServer(path.dirname(STORIES_DIR), { ignoreRange: true });
  });
  afterAll(async () => {
    await server.close();
    await noRange.close();
  });

  it("gives the file's table over HTTP Range, fetching only the start of the file", async () => {
    // A server of its own, so the byte count is this test's alone.
    const counting = await startRangeServer(path.dirname(STORIES_DIR));
    try {
      const url = `${counting.url}stories260K/model.safetensors`;
      const json = await inspectJson(url);
      const local = await inspectJson(STORIES_FILE);
      expect(json.tensors.map(({ file: _, ...t }) => t)).toEqual(local.tensors.map(({ file: _, ...t }) => t));
      expect(json.tensors.every((t) => t.file === url)).toBe(true);
      expect(counting.requests.length).toBeGreaterThan(0);
      expect(counting.requests.every((r) => r.status === 206 && r.range !== undefined)).toBe(true);
      expect(counting.bytesSent()).toBeLessThan(100_000); // the file is 1,044,992 bytes; its header 4,864
    } finally {
      await counting.close();
    }
  });

  it("opens a sharded model from its index URL", async () => {
    const json = await inspectJson(`${server.url}stories260K-sharded/model.safetensors.index.json`);
    expect(json.tensors).toHaveLength(47);
    expect(json.bytes).toBe(520_064);
  });

  it("reports a server that ignores Range in one line, exit 2", async () => {
    const url = `${noRange.url}stories260K/model.safetensors`;
    const run = await quantlab("inspect", url);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(new RegExp(`^quantlab: ${url.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: .*Range`));
  });

  it("reports an HTTP 404 in one line, exit 2", async () => {
    const run = await quantlab("inspect", `${server.url}stories260K/missing.safetensors`);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^quantlab: http:\/\/127\.0\.0\.1:\d+\/stories260K\/missing\.safetensors: .*404/);
  });
});
