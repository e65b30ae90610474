/**
 * Weight precisions and what each costs per tensor. Dense types store every tensor at one width; the
 * bitsandbytes, GPTQ and AWQ types quantize the layers' linear weights and keep embeddings, lm_head, norms
 * and biases at fp16 (bitsandbytes skips lm_head by default, llm_int8_skip_modules; GPTQ/AWQ quantize only
 * the decoder layers' nn.Linear); GGUF file types follow llama-quantize's per-tensor mix (gguf-size.ts).
 */
import { getFormat, findFormat } from "../quant/registry.ts";
import { MemoryInputError, type ModelConfig } from "./config.ts";
import { findGgufFileType, ggufTensorTypes, type GgufFileType } from "./gguf-size.ts";
import { isLinear, type ModelTensor } from "./tensors.ts";

export type Precision =
  | { id: string; kind: "dense"; bytes: 2 | 4; gguf: GgufFileType }
  | { id: string; kind: "linear"; description: string; linearBytes: (t: ModelTensor) => number }
  | { id: string; kind: "gguf"; ftype: GgufFileType };

/**
 * GPTQ's packed layout (AutoGPTQ/optimum QuantLinear): qweight int32 [in*bits/32, out], qzeros int32
 * [in/group, out*bits/32], scales fp16 [in/group, out], g_idx int32 [in]. AWQ's GEMM layout has the same
 * qweight, qzeros and scales and no g_idx. Group size 128, the default of both.
 */
function packedBytes(bits: number, gIdx: boolean) {
  const group = 128;
  return (t: ModelTensor) => {
    const groups = Math.ceil(t.cols / group);
    const perMatrix = (t.rows * t.cols * bits) / 8 + (groups * t.rows * bits) / 8 + groups * t.rows * 2 + (gIdx ? t.cols * 4 : 0);
    return perMatrix * t.experts;
  };
}

/** A registry format on each linear weight (its exact encodedBytes, scales included). */
function registryBytes(formatId: string) {
  const format = getFormat(formatId);
  return (t: ModelTensor) => format.encodedBytes({ rows: t.rows * t.experts, cols: t.cols });
}

const NAMED: Record<string, Precision> = {
  f32: { id: "f32", kind: "dense", bytes: 4, gguf: "f32" },
  fp32: { id: "f32", kind: "dense", bytes: 4, gguf: "f32" },
  fp16: { id: "fp16", kind: "dense", bytes: 2, gguf: "f16" },
  f16: { id: "fp16", kind: "dense", bytes: 2, gguf: "f16" },
  bf16: { id: "bf16", kind: "dense", bytes: 2, gguf: "bf16" },
  int8: { id: "int8", kind: "linear", description: "bitsandbytes LLM.int8 (int8 rows with an f32 absmax each)", linearBytes: registryBytes("llm-int8") },
  nf4: { id: "nf4", kind: "linear", description: "bitsandbytes 4-bit NF4, blocks of 64 with an f32 absmax", linearBytes: registryBytes("nf4") },
  "nf4-dq": { id: "nf4-dq", kind: "linear", description: "bitsandbytes NF4 with double quantization (QLoRA's default)", linearBytes: registryBytes("nf4-dq") },
  fp8: { id: "fp8", kind: "linear", description: "fp8 E4M3 weights with one f32 scale per tensor", linearBytes: (t) => registryBytes("fp8-e4m3")(t) + 4 },
  "gptq-int4": { id: "gptq-int4", kind: "linear", description: "GPTQ 4-bit, group 128 (qweight, qzeros, fp16 scales, g_idx)", linearBytes: packedBytes(4, true) },
  "gptq-int8": { id: "gptq-int8", kind: "linear", description: "GPTQ 8-bit, group 128 (qweight, qzeros, fp16 scales, g_idx)", linearBytes: packedBytes(8, true) },
  "awq-int4": { id: "awq-int4", kind: "linear", description: "AWQ 4-bit GEMM, group 128 (qweight, qzeros, fp16 scales)", linearBytes: packedBytes(4, false) },
};

export const PRECISION_NAMES = ["f32", "bf16", "fp16", "int8", "fp8", "nf4", "nf4-dq", "gptq-int4", "gptq-int8", "awq-int4"];

/** A precision by name: the names above, any GGUF file type or mix (q8_0 ... q4_K_M), or a registry format id. */
export function resolvePrecision(name: string): Precision {
  const named = NAMED[name.toLowerCase()];
  if (named) return named;
  const ftype = findGgufFileType(name);
  if (ftype) return { id: ftype, kind: "gguf", ftype };
  const format = findFormat(name);
  if (format) return { id: format.id, kind: "linear", description: format.description, linearBytes: registryBytes(format.id) };
  throw new MemoryInputError(
    `unknown precision "${name}" (known: ${PRECISION_NAMES.join(", ")}, a GGUF type or mix such as q8_0, q4_K_M, or any format of \`quantlab formats\`)`,
  );
}

/** The bytes of every tensor at this precision, in tensor order. */
export function tensorBytes(config: ModelConfig, tensors: readonly ModelTensor[], precision: Precision): number[] {
  switch (precision.kind) {
    case "dense":
      return tensors.map((t) => t.params * precision.bytes);
    case "linear":
      return tensors.map((t) => (isLinear(t) ? precision.linearBytes(t) : t.params * 2));
    case "gguf":
      return ggufTensorTypes(config, tensors, precision.ftype).map((c) => c.bytes);
  }
}

/** The precision llama.cpp loads: GGUF types as they are, dense types as the GGUF F32/F16/BF16 file. */
export function ggufFileTypeOf(precision: Precision): GgufFileType | undefined {
  if (precision.kind === "gguf") return precision.ftype;
  if (precision.kind === "dense") return precision.gguf;
  return undefined;
}
