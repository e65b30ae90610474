/**
 * A local HTTP file server for tests: serves one folder on 127.0.0.1 with single-range
 * `Range: bytes=a-b` support (206 + Content-Range), or, with ignoreRange, answers every request with
 * the whole file (200), like servers that do not support Range. It counts the body bytes it sends,
 * so tests can prove a reader fetched only what it needed.
 */
import { createServer, type Server } from "node:http";
import { open, stat } from "node:fs/promises";
import path from "node:path";
import type { AddressInfo } from "node:net";

export interface RangeServer {
  /** Base URL with a trailing slash: `${url}model.safetensors`. */
  url: string;
  /** Body bytes sent since start (or the last reset). */
  bytesSent(): number;
  /** Requests served: method, path, the Range header (if any), status. */
  requests: { method: string; path: string; range: string | undefined; status: number }[];
  reset(): void;
  close(): Promise<void>;
}

export async function startRangeServer(root: string, opts: { ignoreRange?: boolean } = {}): Promise<RangeServer> {
  let sent = 0;
  const requests: RangeServer["requests"] = [];
  const server: Server = createServer(async (req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = path.resolve(root, "." + urlPath);
    const range = req.headers.range;
    const reply = (status: number, headers: Record<string, string | number>, body?: Uint8Array) => {
      requests.push({ method: req.method ?? "GET", path: urlPath, range, status });
      res.writeHead(status, headers);
      if (body && req.method !== "HEAD") {
        sent += body.byteLength;
        res.end(body);
      } else res.end();
    };
    try {
      if (!file.startsWith(path.resolve(root) + path.sep)) return reply(403, {});
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile()) return reply(404, { "Content-Type": "text/plain" });
      const size = info.size;
      let start = 0;
      let end = size - 1;
      let status = 200;
      const m = !opts.ignoreRange && range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
      if (m) {
        if (m[1] === "") {
          start = Math.max(0, size - Number(m[2]));
        } else {
          start = Number(m[1]);
          if (m[2] !== "") end = Math.min(Number(m[2]), size - 1);
        }
        if (start >= size || start > end) return reply(416, { "Content-Range": `bytes */${size}` });
        status = 206;
      }
      const body = new Uint8Array(end - start + 1);
      const handle = await open(file, "r");
      try {
        await handle.read(body, 0, body.byteLength, start);
      } finally {
        await handle.close();
      }
      const headers: Record<string, string | number> = {
        "Content-Type": "application/octet-stream",
        "Content-Length": body.byteLength,
        "Accept-Ranges": opts.ignoreRange ? "none" : "bytes",
      };
      if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
      reply(status, headers, body);
    } catch (e) {
      reply(500, { "Content-Type": "text/plain" }, new TextEncoder().encode(String(e)));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    bytesSent: () => sent,
    requests,
    reset() {
      sent = 0;
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
