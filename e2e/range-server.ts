/**
 * A tiny static HTTP server for the URL tests: serves one file on 127.0.0.1 with CORS, honours single
 * Range requests (or, when asked, ignores them like a naive server), and counts the body bytes it sent
 * so a test can check that opening a URL did not download the whole file.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RangeServer {
  /** URL of the served file. */
  url: string;
  /** Body bytes sent so far. */
  bytesSent(): number;
  /** The Range headers received, in order ("" for a request without one). */
  ranges: string[];
  close(): Promise<void>;
}

const CORS_HEADERS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
  "Access-Control-Allow-Headers": "Range",
  "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges",
};

export async function startRangeServer(
  filePath: string,
  opts: { urlPath: string; honourRange?: boolean },
): Promise<RangeServer> {
  const size = statSync(filePath).size;
  const honourRange = opts.honourRange ?? true;
  let sent = 0;
  const ranges: string[] = [];

  const send = (res: ServerResponse, status: number, headers: Record<string, string>, start: number, end: number, head: boolean) => {
    res.writeHead(status, { ...CORS_HEADERS, ...headers, "Content-Length": String(end - start) });
    if (head || end === start) {
      res.end();
      return;
    }
    const stream = createReadStream(filePath, { start, end: end - 1 });
    stream.on("data", (chunk) => (sent += chunk.length));
    stream.pipe(res);
    // A client that stops reading (it saw the server ignore Range) closes the socket.
    res.on("close", () => stream.destroy());
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === "OPTIONS") {
      res.writeHead(204, CORS_HEADERS);
      res.end();
      return;
    }
    if (req.url?.split("?")[0] !== opts.urlPath || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, CORS_HEADERS);
      res.end("not found");
      return;
    }
    const head = req.method === "HEAD";
    const range = req.headers.range ?? "";
    ranges.push(range);
    const baseHeaders: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      ...(honourRange ? { "Accept-Ranges": "bytes" } : {}),
    };
    if (!honourRange || !range) {
      send(res, 200, baseHeaders, 0, size, head);
      return;
    }
    const parsed = parseRange(range, size);
    if (!parsed) {
      res.writeHead(416, { ...CORS_HEADERS, "Content-Range": `bytes */${size}` });
      res.end();
      return;
    }
    const [start, end] = parsed;
    send(res, 206, { ...baseHeaders, "Content-Range": `bytes ${start}-${end - 1}/${size}` }, start, end, head);
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${opts.urlPath}`,
    bytesSent: () => sent,
    ranges,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** "bytes=a-b", "bytes=a-" or "bytes=-n" -> [start, end) within the file; null if unsatisfiable. */
function parseRange(header: string, size: number): [number, number] | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  const [, from, to] = m;
  let start: number;
  let end: number;
  if (from === "") {
    const suffix = Number(to);
    start = Math.max(0, size - suffix);
    end = size;
  } else {
    start = Number(from);
    end = to === "" ? size : Math.min(size, Number(to) + 1);
  }
  return start < end && start < size ? [start, end] : null;
}
