/**
 * Files that belong with a model besides its safetensors (config.json, tokenizer.json): picked along with the
 * shards, or fetched next to the URL. Small, and without the readers, so the page can use it too.
 */
import type { ModelInput } from "./model-input.ts";

/**
 * A JSON file that belongs with the model (config.json, tokenizer.json): picked along with the shards, or
 * next to the URL; undefined when there is none (the demo has none). Malformed JSON is reported.
 */
export async function inputSidecar(input: ModelInput, name: string, signal?: AbortSignal): Promise<unknown> {
  const text = await inputSidecarText(input, name, signal);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${name} is not valid JSON (${(e as Error).message})`);
  }
}

/** The text of a file that belongs with the model (see inputSidecar), or undefined when there is none. */
export async function inputSidecarText(input: ModelInput, name: string, signal?: AbortSignal): Promise<string | undefined> {
  if (input.kind === "files") {
    const file = input.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
    return file ? await file.text() : undefined;
  }
  if (input.kind === "url") {
    const response = await fetch(new URL(name, input.url), { signal }).catch(() => undefined);
    return response?.ok ? await response.text() : undefined;
  }
  return undefined;
}

/** The bytes of a file that belongs with the model (binary ones such as tokenizer.model), or undefined. */
export async function inputSidecarBlob(input: ModelInput, name: string, signal?: AbortSignal): Promise<Blob | undefined> {
  if (input.kind === "files") return input.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
  if (input.kind === "url") {
    const response = await fetch(new URL(name, input.url), { signal }).catch(() => undefined);
    return response?.ok ? await response.blob() : undefined;
  }
  return undefined;
}
