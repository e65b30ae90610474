/** A Hugging Face model folder in Node: config.json, the safetensors (single or sharded) and tokenizer files. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { openModel } from "../formats/model.ts";
import { ModelInputError } from "../model/architecture.ts";
import { loadDecoder, type LoadedDecoder, type ModelTextFiles } from "../model/load.ts";
import { closeSources, openPath } from "./file-source.ts";

async function optionalText(file: string): Promise<string | undefined> {
  return readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new ModelInputError(`${file}: ${e.message}`);
  });
}

export async function loadModelDir(dir: string): Promise<LoadedDecoder> {
  const config = await optionalText(path.join(dir, "config.json"));
  if (config === undefined) throw new ModelInputError(`${dir}: no config.json in this folder`);
  const files: ModelTextFiles = { config };
  const tokenizer = await optionalText(path.join(dir, "tokenizer.json"));
  const tokenizerConfig = await optionalText(path.join(dir, "tokenizer_config.json"));
  const generationConfig = await optionalText(path.join(dir, "generation_config.json"));
  if (tokenizer !== undefined) files.tokenizer = tokenizer;
  if (tokenizerConfig !== undefined) files.tokenizerConfig = tokenizerConfig;
  if (generationConfig !== undefined) files.generationConfig = generationConfig;
  const sources = await openPath(dir);
  try {
    return await loadDecoder(files, await openModel(sources));
  } finally {
    await closeSources(sources); // the weights are in memory now
  }
}
