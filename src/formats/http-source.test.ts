import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX, SHARD_1, SHARD_2, memorySource, rawSafetensors, sameBytes, shardedDir, storiesFile } from "../../test/formats-fixtures.ts";
import { catalogRows } from "./catalog.ts";
import { isFormatError } from "./errors.ts";
import { openModel, openUrlSources, readTensorBytes, readTensorValues } from "./model.ts";
import { BlobSource, FIRST_SLICE_BYTES, HttpRangeSource } from "./source.ts";

/** Size of the file behind the server that ignores Range. */
const IGNORED_FILE_BYTES = 256 * 1024 * 1024;

/** Files the servers serve, by URL path. */
const files = new Map<string, Buffer>([
  ["/stories/model.safetensors", readFileSync(storiesFile)],
  ...[INDEX, SHARD_1, SHARD_2].map((n): [string, Buffer] => [`/sharded/${n}`, readFileSync(path.join(shardedDir, n))]),
]);

interface Served {
  url: string;
  /** Requests received and body bytes written, since the last reset. */
  requests: { path: string; range: string | undefined; status: number }[];
  bytesSent: number;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1 with a handler; counts what it sends. */
async function serve(handle: (req: http.IncomingMessage, res: http.ServerResponse, served: Served) => void): Promise<Served> {
  const served: Served = { url: "", requests: [], bytesSent: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (chunk instanceof Uint8Array) served.bytesSent += chunk.length;
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (chunk instanceof Uint8Array) served.bytesSent += chunk.length;
      return (end as (...a: unknown[]) => http.ServerResponse)(chunk, ...rest);
    }) as typeof res.end;
    res.on("finish", () => served.requests.push({ path: req.url ?? "", range: req.headers.range, status: res.statusCode }));
    handle(req, res, served);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  served.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  served.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return served;
}

/** Serves Range requests the way a CDN does: 206 + Content-Range, ETag. */
function rangeHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const body = files.get(req.url ?? "");
  if (!body) {
    res.writeHead(404, "Not Found").end();
    return;
  }
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (!m) {
    res.writeHead(200, { "Content-Length": body.length }).end(body);
    return;
  }
  const start = Number(m[1]);
  const last = Math.min(m[2] ? Number(m[2]) : body.length - 1, body.length - 1);
  if (start >= body.length) {
    res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end();
    return;
  }
  res.writeHead(206, { "Content-Range": `bytes ${start}-${last}/${body.length}`, "Content-Length": last - start + 1, ETag: '"v1"' });
  res.end(body.subarray(start, last + 1));
}

describe("HttpRangeSource against local servers", () => {
  let ranged: Served;
  let ignoring: Served;
  let redirecting: Served;

  beforeAll(async () => {
    ranged = await serve(rangeHandler);
    // A server that ignores Range: 200 and the whole file, here a 256 MiB one written in pieces with
    // backpressure, so a client that cancels the body really does stop the transfer.
    ignoring = await serve((_req, res) => {
      const piece = Buffer.alloc(1 << 16);
      const total = IGNORED_FILE_BYTES;
      res.writeHead(200, { "Content-Length": total });
      let pos = 0;
      const pump = () => {
        while (pos < total && !res.destroyed) {
          pos += piece.length;
          if (!res.write(piece)) return void res.once("drain", pump);
        }
        if (!res.destroyed) res.end();
      };
      pump();
    });
    redirecting = await serve((req, res) => {
      res.writeHead(302, { Location: `${ranged.url}${req.url}` }).end();
    });
  });
  afterAll(async () => {
    await Promise.all([ranged.close(), ignoring.close(), redirecting.close()]);
  });

  const reset = (...s: Served[]) => s.forEach((x) => ((x.requests.length = 0), (x.bytesSent = 0)));

  it("gives the same table as the file, transferring only the first slice and the tensor read", async () => {
    reset(ranged);
    const url = `${ranged.url}/stories/model.safetensors`;
    const source = await HttpRangeSource.open(url);
    expect(source.size).toBe(files.get("/stories/model.safetensors")!.length);
    const model = await openModel([source]);
    const fromFile = await openModel([memorySource(readFileSync(storiesFile), url)]);
    expect(catalogRows(model)).toEqual(catalogRows(fromFile));
    // Opening cost one request: the header (4,864 bytes) is inside the first 64 KiB slice.
    expect(source.requests).toBe(1);
    expect(source.bytesTransferred).toBe(FIRST_SLICE_BYTES);

    const t = model.tensors.find((x) => x.name === "model.layers.4.mlp.down_proj.weight")!;
    expect(t.offset).toBeGreaterThan(FIRST_SLICE_BYTES);
    const values = await readTensorValues(t);
    const raw = rawSafetensors(storiesFile).tensors.get(t.name)!;
    expect(Buffer.from(values.buffer).equals(readFileSync(storiesFile).subarray(raw.start, raw.end))).toBe(true);

    expect(source.bytesTransferred).toBe(FIRST_SLICE_BYTES + t.bytes);
    expect(ranged.bytesSent).toBe(FIRST_SLICE_BYTES + t.bytes);
    expect(ranged.requests.map((r) => [r.range, r.status])).toEqual([
      [`bytes=0-${FIRST_SLICE_BYTES - 1}`, 206],
      [`bytes=${t.offset}-${t.offset + t.bytes - 1}`, 206],
    ]);
  });

  it("reads a header longer than the first slice with one more request for the rest only", async () => {
    reset(ranged);
    const source = await HttpRangeSource.open(`${ranged.url}/stories/model.safetensors`, { firstSliceBytes: 1000 });
    const model = await openModel([source]);
    expect(model.tensors).toHaveLength(47);
    expect(source.requests).toBe(2);
    expect(source.bytesTransferred).toBe(8 + 4856);
    expect(ranged.bytesSent).toBe(8 + 4856);
  });

  it("follows a redirect once, then reads from the final URL directly", async () => {
    reset(ranged, redirecting);
    const source = await HttpRangeSource.open(`${redirecting.url}/stories/model.safetensors`);
    expect(source.name).toBe(`${redirecting.url}/stories/model.safetensors`);
    expect(source.url).toBe(`${ranged.url}/stories/model.safetensors`);
    const model = await openModel([source]);
    const t = model.tensors.at(-1)!;
    await readTensorBytes(t);
    expect(redirecting.requests).toHaveLength(1);
    expect(ranged.requests).toHaveLength(2);
    expect(source.bytesTransferred).toBe(FIRST_SLICE_BYTES + t.bytes);
  });

  it("reports a server that ignores Range, without downloading the file", async () => {
    reset(ignoring);
    const url = `${ignoring.url}/stories/model.safetensors`;
    const e = await HttpRangeSource.open(url).catch((x: unknown) => x);
    expect(isFormatError(e)).toBe(true);
    expect(e).toMatchObject({
      code: "range-unsupported",
      file: url,
      detail: `the server ignored the Range request (HTTP 200 for bytes=0-${FIRST_SLICE_BYTES - 1}); quantlab needs a server that supports HTTP Range requests`,
    });
    await new Promise((r) => setTimeout(r, 200)); // let the server notice the cancelled body
    // What the server pushed before the cancel reached it is bounded by socket buffers, not the file.
    expect(ignoring.bytesSent).toBeLessThan(IGNORED_FILE_BYTES / 8);
  });

  it("turns HTTP errors and unreachable servers into FormatError('http')", async () => {
    await expect(HttpRangeSource.open(`${ranged.url}/missing.safetensors`)).rejects.toMatchObject({ code: "http", detail: "HTTP 404 Not Found" });
    const closed = await serve(rangeHandler);
    const url = closed.url;
    await closed.close();
    await expect(HttpRangeSource.open(`${url}/stories/model.safetensors`)).rejects.toMatchObject({ code: "http" });
  });

  it("opens an index URL with its shards, resolved next to it, to the same values as the files", async () => {
    const sources = await openUrlSources(`${ranged.url}/sharded/${INDEX}`);
    expect(sources.map((s) => s.name)).toEqual([INDEX, SHARD_1, SHARD_2].map((n) => `${ranged.url}/sharded/${n}`));
    const model = await openModel(sources);
    expect(model.tensors).toHaveLength(47);
    const local = await openModel([INDEX, SHARD_1, SHARD_2].map((n) => memorySource(readFileSync(path.join(shardedDir, n)), n)));
    for (const [i, t] of model.tensors.entries()) {
      expect(t.name).toBe(local.tensors[i]!.name);
      expect(sameBytes(await readTensorBytes(t), await readTensorBytes(local.tensors[i]!))).toBe(true);
    }
  });

  it("refuses reads outside the file before asking the server", async () => {
    reset(ranged);
    const source = await HttpRangeSource.open(`${ranged.url}/stories/model.safetensors`);
    await expect(source.read(source.size - 4, 8)).rejects.toMatchObject({ code: "truncated" });
    expect(ranged.requests).toHaveLength(1);
  });
});

describe("BlobSource", () => {
  it("reads slices of a Blob and refuses reads past its end", async () => {
    const source = new BlobSource(new Blob([new Uint8Array([1, 2, 3, 4, 5])]), "five.bin");
    expect(source.size).toBe(5);
    expect([...(await source.read(1, 3))]).toEqual([2, 3, 4]);
    expect([...(await source.read(5, 0))]).toEqual([]);
    await expect(source.read(3, 3)).rejects.toMatchObject({ code: "truncated", file: "five.bin", detail: "needs bytes 3..6 but the file ends at byte 5" });
    await expect(source.read(-1, 1)).rejects.toThrow(RangeError);
  });

  it("takes a File's name", () => {
    expect(new BlobSource(new File([new Uint8Array(1)], "picked.safetensors")).name).toBe("picked.safetensors");
  });
});
