/** ../shared/golden/gptq_awq read from disk, for Node-side tests, benches and the CLI tests. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SHARED_DIR } from "./shared-data.ts";
import { GPTQ_AWQ_GOLDEN, type ReadGolden } from "./gptq-awq-golden.ts";

export const GPTQ_AWQ_GOLDEN_DIR = path.join(SHARED_DIR, GPTQ_AWQ_GOLDEN);

export const readGoldenFile: ReadGolden = async (relative) => {
  const b = await readFile(path.join(GPTQ_AWQ_GOLDEN_DIR, relative));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
};
