/**
 * The decoder's tensors as float32, read from an opened safetensors model (any dtype the readers decode)
 * and checked against the shapes config.json implies, so a mismatch is reported by name before any graph
 * is built.
 */
import { isDType, type DType } from "../formats/dtypes.ts";
import { type OpenedModel, readTensorValues } from "../formats/model.ts";
import { expectedTensors, ModelInputError, type DecoderArchitecture } from "./architecture.ts";

export interface NamedTensor {
  name: string;
  shape: number[];
  values: Float32Array;
  /** The dtype the checkpoint stores it in (exports write unquantized tensors back in it). */
  sourceDtype?: DType;
}

export type DecoderWeights = Map<string, NamedTensor>;

export async function loadDecoderWeights(model: OpenedModel, arch: DecoderArchitecture, signal?: AbortSignal): Promise<DecoderWeights> {
  const byName = new Map(model.tensors.map((t) => [t.name, t]));
  const out: DecoderWeights = new Map();
  for (const [name, shape] of expectedTensors(arch)) {
    const t = byName.get(name);
    if (!t) throw new ModelInputError(`${model.name}: tensor "${name}" is missing (config.json ${arch.name} implies it)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelInputError(
        `${model.name}: tensor "${name}" has shape [${t.shape.join(", ")}] but ${arch.name} implies [${shape.join(", ")}]`,
      );
    }
    const values = await readTensorValues(t, signal);
    // A GGUF tensor in a ggml block type has no safetensors dtype: exports write it back as float32.
    out.set(name, { name, shape, values, ...(isDType(t.dtype) ? { sourceDtype: t.dtype } : {}) });
  }
  return out;
}
