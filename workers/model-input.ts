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

