/**
 * What the user opened, as plain data that crosses postMessage: the files they picked or dropped
 * (File objects are cloned by reference to the same bytes, nothing is copied), a URL, or the built-in
 * demo. Both workers turn it into byte sources with inputSources: the model worker to show the model,
 * the quantization worker to read the tensor it is asked to quantize.
 */
import { syntheticLlamaShard } from "../src/demo/synthetic.ts";
import { openUrlSources } from "../src/formats/model.ts";
import { BlobSource, type ByteSource } from "../src/formats/source.ts";

export type ModelInput =
  | { kind: "files"; files: File[] }
  | { kind: "url"; url: string }
  | { kind: "demo" };

/** The name the demo shard's single file goes by. */
export const DEMO_FILE_NAME = "synthetic-llama.safetensors";

/** The byte sources of an input (the demo shard is generated here: it is deterministic). */
export async function inputSources(input: ModelInput, signal?: AbortSignal): Promise<ByteSource[]> {
  switch (input.kind) {
    case "files":
      return input.files.map((f) => new BlobSource(f, f.name));
    case "url":
      return openUrlSources(input.url, { signal });
    case "demo":
      return [new BlobSource(new Blob([syntheticLlamaShard()]), DEMO_FILE_NAME)];
  }
}

/**
 * A JSON file that belongs with the model (config.json, tokenizer.json): picked along with the shards, or
 * next to the URL; undefined when there is none (the demo has none). Malformed JSON is reported.
 */
export async function inputSidecar(input: ModelInput, name: string, signal?: AbortSignal): Promise<unknown> {
  let text: string | undefined;
  if (input.kind === "files") {
    const file = input.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
    text = file ? await file.text() : undefined;
  } else if (input.kind === "url") {
    const response = await fetch(new URL(name, input.url), { signal }).catch(() => undefined);
    text = response?.ok ? await response.text() : undefined;
  }
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${name} is not valid JSON (${(e as Error).message})`);
  }
}
