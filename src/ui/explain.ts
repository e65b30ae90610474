/**
 * Short explanations, in English and Simplified Chinese, of what the lab shows: every format family and
 * format, every metric, GPTQ and AWQ, and the heatmap modes. <ql-explain topic="..."> (explain-button.ts)
 * shows one next to the thing it explains.
 *
 * Topics are the format ids of the registry (every one has an explanation: the plain integer formats are
 * described from their id), "family:<family>", "metric:<name>", "method:<name>" and "heatmap:<mode>". Bits
 * per weight are always computed from the registry, never written here.
 */
import { formatBitsPerWeight, formatShare } from "../common/format.ts";
import { bitsPerWeight, type FormatFamily } from "../quant/format.ts";
import { FORMATS, getFormat } from "../quant/registry.ts";
import { calibratedMethod } from "../quant/calibrated.ts";
import { currentLang, type Lang } from "./i18n.ts";

export interface Explanation {
  title: string;
  /** Paragraphs. */
  body: string[];
}

type Bilingual = Record<Lang, Explanation>;

/** Rows this long are what the explanations quote bits per weight for (per-channel formats depend on it). */
const ROW = 4096;

/** Bits per weight of a registry format on rows of ROW weights. */
function bpw(id: string): string {
  return formatBitsPerWeight(bitsPerWeight(getFormat(id), { rows: ROW, cols: ROW }));
}

/** The share a bf16 tensor of ROW x ROW saves in a format. */
function savedFromBf16(id: string): string {
  const shape = { rows: ROW, cols: ROW };
  return formatShare(1 - getFormat(id).encodedBytes(shape) / getFormat("bf16").encodedBytes(shape));
}

function both(enTitle: string, en: string[], zhTitle: string, zh: string[]): Bilingual {
  return { en: { title: enTitle, body: en }, "zh-CN": { title: zhTitle, body: zh } };
}

// ---- format families and formats ----------------------------------------------------------------------

const KQUANT_EN =
  "A K-quant super-block holds 256 weights: their low-bit codes, the scales (and for some types the minimums) of its sub-blocks, stored in a few bits each, and one fp16 super-scale d (plus an fp16 super-minimum d_min) that those small scales multiply. Quantizing the scales themselves is what keeps the overhead low.";
const KQUANT_ZH =
  "K-quant 的一个超级块包含 256 个权重：它们的低比特码值，若干子块的缩放因子（部分类型还有最小值），每个只用几个比特存储；以及一个 fp16 超级缩放因子 d（和一个 fp16 超级最小值 d_min），子块的缩放因子都要乘以它。正是把缩放因子本身也量化，才让额外开销很低。";

function ggufLegacy(id: string, bits: number, withMin: boolean): Bilingual {
  const levels = 2 ** bits;
  return both(
    id,
    [
      `llama.cpp block format: blocks of 32 weights, each with ${withMin ? "an fp16 scale d and an fp16 minimum m; a weight is stored as a " + bits + "-bit code q in 0…" + (levels - 1) + " and decodes to d·q + m, so the block's range need not be centred on zero" : "one fp16 scale d; a weight is stored as a " + bits + "-bit code and decodes to d·(q − " + levels / 2 + "): a grid centred on zero whose end is the block's largest-magnitude weight"}.`,
      `${bpw(id)} bits per weight: ${bits} for the code plus the block's ${withMin ? "scale and minimum" : "scale"} spread over 32 weights.`,
    ],
    id,
    [
      `llama.cpp 的分块格式：每 32 个权重一块，${withMin ? "每块存一个 fp16 缩放因子 d 和一个 fp16 最小值 m；权重存为 0…" + (levels - 1) + " 的 " + bits + " 比特码值 q，解码为 d·q + m，因此块的取值范围不必以零为中心" : "每块存一个 fp16 缩放因子 d；权重存为 " + bits + " 比特码值，解码为 d·(q − " + levels / 2 + ")：网格以零为中心，其端点是块内绝对值最大的权重"}。`,
      `每权重比特数 ${bpw(id)}：码值 ${bits} 比特，加上块的${withMin ? "缩放因子和最小值" : "缩放因子"}分摊到 32 个权重上。`,
    ],
  );
}

function kQuant(id: string, bits: number, en: string, zh: string): Bilingual {
  return both(
    id,
    [`${bits}-bit K-quant. ${en}`, KQUANT_EN, `${bpw(id)} bits per weight.`],
    id,
    [`${bits} 比特 K-quant。${zh}`, KQUANT_ZH, `每权重比特数 ${bpw(id)}。`],
  );
}

const STATIC_TOPICS: Record<string, () => Bilingual> = {
  "family:gguf": () =>
    both(
      "llama.cpp (GGUF) block formats",
      [
        "The formats llama.cpp stores in GGUF files. Each row is cut into blocks; each block keeps its own scale (and sometimes a minimum), so an outlier only coarsens the grid of its own block.",
        "Legacy types (q4_0, q4_1, q5_0, q5_1, q8_0) use blocks of 32 with fp16 scales. K-quants (q2_K…q6_K) use super-blocks of 256 whose sub-block scales are themselves quantized, and their encoders search the scales that minimise the error.",
        "Block formats need rows whose length is a multiple of the block (32 or 256); otherwise llama.cpp falls back to another type.",
      ],
      "llama.cpp（GGUF）分块格式",
      [
        "llama.cpp 在 GGUF 文件中使用的格式。每一行被切成若干块，每块有自己的缩放因子（有时还有最小值），因此一个离群值只会让它所在块的网格变粗。",
        "旧式类型（q4_0、q4_1、q5_0、q5_1、q8_0）使用 32 个权重的块和 fp16 缩放因子。K-quant（q2_K…q6_K）使用 256 个权重的超级块，子块的缩放因子本身也被量化，编码器会搜索使误差最小的缩放因子。",
        "分块格式要求行长度是块大小（32 或 256）的整数倍，否则 llama.cpp 会回退到其他类型。",
      ],
    ),
  "family:int": () =>
    both(
      "Plain integers (round to nearest)",
      [
        "Each weight is divided by a scale and rounded to the nearest integer code; decoding multiplies back. This is what GPTQ and AWQ checkpoints store too (they only choose the codes more cleverly).",
        "Symmetric formats use codes −Q…Q around zero (Q = 2^(bits−1) − 1) and one scale; asymmetric formats add a zero point, so a range such as [−0.1, 0.5] uses every level.",
        "Granularity: one scale for the whole tensor, one per row (output channel), or one per group of 32/64/128 weights along a row. Smaller groups follow the weights more closely but store more scales.",
      ],
      "普通整数（就近舍入）",
      [
        "每个权重除以缩放因子后舍入到最近的整数码值，解码时再乘回去。GPTQ 和 AWQ 的检查点存储的也是这种格式（它们只是更聪明地选择码值）。",
        "对称格式使用以零为中心的码值 −Q…Q（Q = 2^(比特数−1) − 1）和一个缩放因子；非对称格式多存一个零点，因此像 [−0.1, 0.5] 这样的范围也能用上全部量化级。",
        "粒度：整个张量一个缩放因子、每行（输出通道）一个，或沿行每 32/64/128 个权重一组、每组一个。分组越小越贴合权重，但要存的缩放因子越多。",
      ],
    ),
  "family:bnb": () =>
    both(
      "bitsandbytes formats",
      [
        "The formats of the bitsandbytes library used by Hugging Face transformers: LLM.int8 (int8 rows) and the 4-bit NF4 and FP4 of QLoRA, with blocks of 64 weights that each store their absolute maximum.",
        `Their double-quantized variants also quantize those per-block maxima: nf4 takes ${bpw("nf4")} bits per weight, nf4-dq ${bpw("nf4-dq")}.`,
      ],
      "bitsandbytes 格式",
      [
        "Hugging Face transformers 所用 bitsandbytes 库的格式：LLM.int8（按行 int8），以及 QLoRA 的 4 比特 NF4 和 FP4，它们以 64 个权重为一块，每块存储其绝对值最大值。",
        `双重量化变体把这些每块的最大值也量化：nf4 每权重 ${bpw("nf4")} 比特，nf4-dq 为 ${bpw("nf4-dq")} 比特。`,
      ],
    ),
  "family:cast": () =>
    both(
      "Casts to smaller floats",
      [
        "Every weight is rounded on its own to a shorter floating-point number; there are no blocks and no scales. The relative error is about the same for small and large weights, but the range is limited: values beyond it overflow or saturate.",
      ],
      "转换为更短的浮点数",
      [
        "每个权重单独舍入为更短的浮点数，没有分块，也没有缩放因子。大小权重的相对误差大致相同，但表示范围有限：超出范围的值会溢出或饱和。",
      ],
    ),

  "family:calibrated": () =>
    both(
      "GPTQ / AWQ (calibrated)",
      [
        "Methods that look at what the layer computes, not only at its weights: they run on the layer's input activations (calibration) and minimise the error of its output. Their result is stored like int4/int8 with group scales and zero points (and, with act-order, each column's group).",
        "The output error column shows what they are for: the layer's relative output error on the calibration tokens and on held-out tokens. Activations come from running the model on a calibration text when the model's config.json and tokenizer are open with it; otherwise synthetic ones stand in, and the table says so.",
        "Settings: bits, group size (or per channel), act-order, static groups, symmetric, dampening for GPTQ; clipping and the zero point for AWQ; AWQ+GPTQ runs AWQ's scale search and then GPTQ.",
      ],
      "GPTQ / AWQ（校准量化）",
      [
        "这些方法关注层的计算结果，而不仅仅是权重：它们基于该层的输入激活（校准数据）运行，最小化该层输出的误差。结果像 int4/int8 一样以分组缩放因子和零点存储（开启 act-order 时还存储每列所属的分组）。",
        "“输出误差”一列正是它们的目的：该层在校准词元和留出词元上的相对输出误差。当模型的 config.json 和分词器一同打开时，激活值来自在校准文本上运行模型；否则使用合成激活值，表格会注明。",
        "设置：GPTQ 的比特数、分组大小（或按通道）、act-order、静态分组、对称量化、阻尼；AWQ 的裁剪与零点；AWQ+GPTQ 先进行 AWQ 的缩放搜索，再运行 GPTQ。",
      ],
    ),

  q4_0: () => ggufLegacy("q4_0", 4, false),
  q4_1: () => ggufLegacy("q4_1", 4, true),
  q5_0: () => ggufLegacy("q5_0", 5, false),
  q5_1: () => ggufLegacy("q5_1", 5, true),
  q8_0: () =>
    both(
      "q8_0",
      [
        "llama.cpp block format: blocks of 32 weights, one fp16 scale d = (largest |weight|) / 127 each, and an int8 code per weight; decodes to d·q. Nearly lossless for model weights.",
        `${bpw("q8_0")} bits per weight.`,
      ],
      "q8_0",
      [
        "llama.cpp 的分块格式：每 32 个权重一块，每块一个 fp16 缩放因子 d =（最大 |权重|）/ 127，每个权重一个 int8 码值，解码为 d·q。对模型权重几乎无损。",
        `每权重比特数 ${bpw("q8_0")}。`,
      ],
    ),
  q2_K: () =>
    kQuant(
      "q2_K",
      2,
      "16 sub-blocks of 16 weights, each with a 4-bit scale and a 4-bit minimum; decodes to d·sᵢ·q − d_min·mᵢ. Four levels per weight: usable only with importance-weighted encoding and for the least sensitive tensors.",
      "16 个子块、每块 16 个权重，每个子块有 4 比特缩放因子和 4 比特最小值；解码为 d·sᵢ·q − d_min·mᵢ。每个权重只有四个量化级：只适合配合重要性加权编码、用于最不敏感的张量。",
    ),
  q3_K: () =>
    kQuant(
      "q3_K",
      3,
      "16 sub-blocks of 16 weights with a 6-bit scale each and no minimum (symmetric); decodes to d·sᵢ·(q − 4).",
      "16 个子块、每块 16 个权重，每个子块一个 6 比特缩放因子，没有最小值（对称）；解码为 d·sᵢ·(q − 4)。",
    ),
  q4_K: () =>
    kQuant(
      "q4_K",
      4,
      "8 sub-blocks of 32 weights, each with a 6-bit scale and a 6-bit minimum; decodes to d·sᵢ·q − d_min·mᵢ. The usual default (Q4_K_M files use it for most tensors).",
      "8 个子块、每块 32 个权重，每个子块有 6 比特缩放因子和 6 比特最小值；解码为 d·sᵢ·q − d_min·mᵢ。最常用的默认选择（Q4_K_M 文件的大多数张量用它）。",
    ),
  q5_K: () =>
    kQuant(
      "q5_K",
      5,
      "Like q4_K (8 sub-blocks of 32 with 6-bit scales and minimums) with one more bit per code.",
      "与 q4_K 相同（8 个 32 权重的子块，6 比特缩放因子和最小值），每个码值多一个比特。",
    ),
  q6_K: () =>
    kQuant(
      "q6_K",
      6,
      "16 sub-blocks of 16 weights with an 8-bit scale each and no minimum; decodes to d·sᵢ·(q − 32). Close to q8_0 in accuracy at fewer bits.",
      "16 个子块、每块 16 个权重，每个子块一个 8 比特缩放因子，没有最小值；解码为 d·sᵢ·(q − 32)。精度接近 q8_0，但比特更少。",
    ),
  q8_K: () =>
    both(
      "q8_K",
      [
        "8-bit codes in super-blocks of 256 weights with one f32 scale and the sums of its 16 groups of 16 codes. llama.cpp uses it for activations inside K-quant dot products (the sums make the minimums cheap); it is not a storage type of GGUF files.",
        `${bpw("q8_K")} bits per weight.`,
      ],
      "q8_K",
      [
        "8 比特码值，256 个权重为一个超级块，存一个 f32 缩放因子，以及其中 16 组（每组 16 个码值）的和。llama.cpp 在 K-quant 点积内部用它表示激活值（这些和让最小值的计算很便宜）；它不是 GGUF 文件的存储类型。",
        `每权重比特数 ${bpw("q8_K")}。`,
      ],
    ),

  nf4: () =>
    both(
      "nf4 (4-bit NormalFloat)",
      [
        "bitsandbytes/QLoRA: 16 levels placed at quantiles of a normal distribution (with an exact zero), because trained weights are roughly normally distributed: more levels where most weights are. Each block of 64 weights stores its absolute maximum (f32); a weight decodes to level × absmax.",
        `${bpw("nf4")} bits per weight.`,
      ],
      "nf4（4 比特 NormalFloat）",
      [
        "bitsandbytes/QLoRA：16 个量化级按正态分布的分位数排列（含精确的零），因为训练好的权重大致服从正态分布：权重多的地方量化级也多。每 64 个权重一块，每块存其绝对值最大值（f32）；权重解码为 量化级 × 最大值。",
        `每权重比特数 ${bpw("nf4")}。`,
      ],
    ),
  fp4: () =>
    both(
      "fp4 (bitsandbytes e2m1)",
      [
        "bitsandbytes' 4-bit float: 1 sign, 2 exponent and 1 mantissa bit, so the 16 levels are dense near zero and sparse near the block maximum. Blocks of 64 weights with an f32 absolute maximum each; usually a little less accurate than nf4 on weights.",
        `${bpw("fp4")} bits per weight.`,
      ],
      "fp4（bitsandbytes e2m1）",
      [
        "bitsandbytes 的 4 比特浮点数：1 位符号、2 位指数、1 位尾数，因此 16 个量化级在零附近密集、在块最大值附近稀疏。每 64 个权重一块，每块一个 f32 绝对值最大值；用于权重时通常比 nf4 略差。",
        `每权重比特数 ${bpw("fp4")}。`,
      ],
    ),
  "double-quant": () =>
    both(
      "Double quantization",
      [
        `QLoRA's trick: the f32 maxima of the 64-weight blocks cost 0.5 bits per weight, so they are quantized too: their mean is subtracted and they are stored as 8-bit codes in blocks of 256, with one f32 scale per 256 blocks. nf4 takes ${bpw("nf4")} bits per weight, nf4-dq ${bpw("nf4-dq")}; the extra error is tiny.`,
      ],
      "双重量化",
      [
        `QLoRA 的技巧：64 权重块的 f32 最大值每个权重要占 0.5 比特，于是把它们也量化：减去均值后，以 256 个为一块存为 8 比特码值，每 256 块存一个 f32 缩放因子。nf4 每权重 ${bpw("nf4")} 比特，nf4-dq 为 ${bpw("nf4-dq")}；增加的误差极小。`,
      ],
    ),
  "llm-int8": () =>
    both(
      "llm-int8 (LLM.int8)",
      [
        "bitsandbytes' 8-bit weights: each row stores its absolute maximum (f32) and int8 codes round(x·127 / absmax). At inference LLM.int8 also splits off the few activation features with outliers (above 6) and multiplies them in fp16; the stored weights are all int8.",
        `${bpw("llm-int8")} bits per weight on rows of ${ROW}.`,
      ],
      "llm-int8（LLM.int8）",
      [
        "bitsandbytes 的 8 比特权重：每行存其绝对值最大值（f32）和 int8 码值 x·127 / 最大值（四舍五入）。推理时 LLM.int8 还会把少数含离群值（大于 6）的激活特征分离出来用 fp16 相乘；存储的权重全部是 int8。",
        `行长 ${ROW} 时每权重比特数为 ${bpw("llm-int8")}。`,
      ],
    ),
  f16: () =>
    both(
      "f16 (IEEE half precision)",
      [
        "1 sign, 5 exponent and 10 mantissa bits: about 3 significant decimal digits, largest value 65504. Values beyond that become infinity, and values below about 6·10⁻⁵ lose precision (subnormals).",
        `${bpw("f16")} bits per weight.`,
      ],
      "f16（IEEE 半精度）",
      [
        "1 位符号、5 位指数、10 位尾数：约 3 位有效十进制数字，最大值 65504。超出的值变为无穷大，小于约 6·10⁻⁵ 的值精度下降（次正规数）。",
        `每权重比特数 ${bpw("f16")}。`,
      ],
    ),
  bf16: () =>
    both(
      "bf16 (bfloat16)",
      [
        "The top half of a float32: 1 sign, 8 exponent and 7 mantissa bits. The same range as float32 (nothing overflows) but only 2–3 significant digits; most models are trained and shipped in it.",
        `${bpw("bf16")} bits per weight.`,
      ],
      "bf16（bfloat16）",
      [
        "float32 的高 16 位：1 位符号、8 位指数、7 位尾数。表示范围与 float32 相同（不会溢出），但只有 2–3 位有效数字；大多数模型以它训练和发布。",
        `每权重比特数 ${bpw("bf16")}。`,
      ],
    ),
  "fp8-e4m3": () =>
    both(
      "fp8 E4M3",
      [
        "8-bit float with 4 exponent and 3 mantissa bits (e4m3fn): largest value 448, no infinity; here values beyond ±448 saturate. The fp8 used for inference weights and activations, usually with a per-tensor or per-channel scale in front.",
        `${bpw("fp8-e4m3")} bits per weight.`,
      ],
      "fp8 E4M3",
      [
        "8 比特浮点数，4 位指数、3 位尾数（e4m3fn）：最大值 448，没有无穷大；这里超过 ±448 的值会饱和。推理中权重和激活值使用的 fp8，通常前面还有按张量或按通道的缩放因子。",
        `每权重比特数 ${bpw("fp8-e4m3")}。`,
      ],
    ),
  "fp8-e5m2": () =>
    both(
      "fp8 E5M2",
      [
        "8-bit float with 5 exponent and 2 mantissa bits: the range of f16 (largest 57344, with infinity) at a quarter of its precision. Mostly used for gradients; coarser than E4M3 on weights.",
        `${bpw("fp8-e5m2")} bits per weight.`,
      ],
      "fp8 E5M2",
      [
        "8 比特浮点数，5 位指数、2 位尾数：与 f16 的范围相当（最大 57344，有无穷大），精度只有其四分之一。主要用于梯度；用于权重时比 E4M3 粗。",
        `每权重比特数 ${bpw("fp8-e5m2")}。`,
      ],
    ),

  // ---- metrics ----------------------------------------------------------------------------------------
  "metric:mse": () =>
    both(
      "MSE (mean squared error)",
      ["The mean of (original − decoded)² over every weight. Squaring makes large errors count much more than small ones; compare formats on the same tensor (the value scales with the weights²)."],
      "MSE（均方误差）",
      ["所有权重的（原值 − 解码值）² 的平均。平方让大误差的权重远大于小误差；应在同一张量上比较不同格式（其数值随权重的平方缩放）。"],
    ),
  "metric:rmse": () =>
    both(
      "RMSE (root mean squared error)",
      ["The square root of the MSE: a typical error, in the same units as the weights. Compare it with the weights' standard deviation in the Tensor panel."],
      "RMSE（均方根误差）",
      ["MSE 的平方根：典型误差大小，单位与权重相同。可与张量面板中权重的标准差比较。"],
    ),
  "metric:max-err": () =>
    both(
      "max |error|",
      ["The largest error of any single weight (hover the cell for where it is). Block formats bound it by about half a step of the block's grid; one outlier in a block enlarges that step for all its weights."],
      "最大 |误差|",
      ["单个权重的最大误差（悬停单元格可看到位置）。分块格式中它大约不超过块内网格步长的一半；块内的一个离群值会让全块的步长变大。"],
    ),
  "metric:snr": () =>
    both(
      "SNR in dB (signal-to-noise ratio)",
      [
        "10·log₁₀(Σ original² / Σ error²): how much larger the weights are than the error, in decibels. Higher is better; each extra bit of a good quantizer adds about 6 dB (8-bit formats reach ~40 dB and more, 4-bit ~20 dB).",
      ],
      "信噪比（SNR，单位 dB）",
      [
        "10·log₁₀(Σ 原值² / Σ 误差²)：权重比误差大多少，以分贝表示。越高越好；好的量化器每多一个比特约提高 6 dB（8 比特格式可达 40 dB 以上，4 比特约 20 dB）。",
      ],
    ),
  "metric:cosine": () =>
    both(
      "Cosine similarity",
      ["Σ original·decoded / (‖original‖·‖decoded‖): whether the decoded tensor points the same way as the original, ignoring its overall size. 1 is identical; quantized weights are usually 0.99…0.99999, so watch the number of nines."],
      "余弦相似度",
      ["Σ 原值·解码值 / (‖原值‖·‖解码值‖)：解码后的张量与原张量方向是否一致，不考虑整体大小。1 表示完全相同；量化后的权重通常在 0.99…0.99999 之间，所以要看有几个 9。"],
    ),
  "metric:bpw": () =>
    both(
      "Bits per weight",
      ["The encoded size in bits divided by the number of weights, counting every scale, minimum and zero point: q4_K stores 4-bit codes but takes " + bpw("q4_K") + " bits per weight, int4-g128 " + bpw("int4-g128") + ". Multiply by the parameter count and divide by 8 for the bytes."],
      "每权重比特数",
      ["编码后的总比特数除以权重个数，缩放因子、最小值和零点都计算在内：q4_K 的码值是 4 比特，但每权重占 " + bpw("q4_K") + " 比特，int4-g128 为 " + bpw("int4-g128") + "。乘以参数量再除以 8 即为字节数。"],
    ),
  "metric:bytes": () =>
    both(
      "Bytes after",
      ["The exact size of the tensor in this format, with every scale and minimum; hover for the count in bytes and the size before."],
      "量化后字节数",
      ["张量在此格式下的精确大小，包括所有缩放因子和最小值；悬停可看到精确字节数和量化前的大小。"],
    ),
  "metric:saved": () =>
    both(
      "Bytes saved",
      [`1 − bytes after / bytes before: the share of the tensor's current size (in its stored dtype) that the format saves. A bf16 tensor saves ${savedFromBf16("q4_K")} in q4_K.`],
      "节省的字节",
      [`1 − 量化后字节数 / 量化前字节数：相对张量当前存储类型的大小所节省的比例。一个 bf16 张量转为 q4_K 可节省 ${savedFromBf16("q4_K")}。`],
    ),
  "metric:rel": () =>
    both(
      "Relative error",
      ["|error| / |original| of a weight (undefined where the weight is 0). It shows small weights that a coarse block grid rounds to zero, which the absolute error hides."],
      "相对误差",
      ["某个权重的 |误差| / |原值|（权重为 0 时无定义）。它能显示被粗糙的块网格舍入为零的小权重，而绝对误差会掩盖这些。"],
    ),
  "metric:block-scale": () =>
    both(
      "Block scale",
      ["The factor a block (or K-quant sub-block) stores: its codes are multiplied by it, so it is the block's step size. Large scales mark blocks holding large weights or outliers, where every weight of the block is rounded more coarsely."],
      "块缩放因子",
      ["每个块（或 K-quant 子块）存储的系数：码值要乘以它，因此它就是该块的步长。缩放因子大的块含有较大的权重或离群值，块内每个权重都被更粗地舍入。"],
    ),
  "metric:perplexity": () =>
    both(
      "Perplexity",
      ["exp of the mean negative log-likelihood the model gives the true next token over a text: how many tokens it is effectively choosing between. Lower is better; compare the quantized model with the original on the same text."],
      "困惑度",
      ["模型对一段文本中真实下一个词元的平均负对数似然取指数：相当于模型实际上在多少个词元之间犹豫。越低越好；应在同一文本上比较量化模型与原模型。"],
    ),
  "metric:kl": () =>
    both(
      "KL divergence",
      ["Σ p·log(p/q) between the original model's next-token distribution p and the quantized model's q, averaged over the tokens of a text. 0 means the same predictions; more sensitive than perplexity to changes in the whole distribution."],
      "KL 散度",
      ["原模型的下一词元分布 p 与量化模型的分布 q 之间的 Σ p·log(p/q)，在文本的所有词元上取平均。0 表示预测完全相同；它比困惑度更能反映整个分布的变化。"],
    ),
  "metric:output-error": () =>
    both(
      "Output error",
      [
        "What GPTQ and AWQ minimise: the layer's relative output error ||XWᵀ − XQᵀ||² / ||XWᵀ||² on its input activations X, for the original weights W and the quantized Q. The first figure is on the calibration tokens, the second (after /) on held-out tokens the methods never saw: a method can fit its calibration set and do worse elsewhere.",
        "\"synthetic\" marks figures from synthetic activations (no model to run); \"model run\" ones come from running the model on its calibration text.",
      ],
      "输出误差",
      [
        "GPTQ 和 AWQ 最小化的量：该层在输入激活 X 上的相对输出误差 ||XWᵀ − XQᵀ||² / ||XWᵀ||²，W 为原始权重，Q 为量化后的权重。第一个数是在校准词元上的误差，第二个数（/ 之后）是在方法从未见过的留出词元上的误差：方法可能拟合了校准集，却在别处表现更差。",
        "“synthetic”（合成）表示该数值来自合成激活值（没有可运行的模型）；“model run”（模型运行）表示来自在校准文本上运行模型。",
      ],
    ),
  "metric:top1": () =>
    both(
      "Top-1 agreement",
      ["The share of positions in a text where the quantized model's most likely next token is the same as the original model's."],
      "Top-1 一致率",
      ["在一段文本的各个位置上，量化模型最可能的下一个词元与原模型相同的比例。"],
    ),

  // ---- methods ----------------------------------------------------------------------------------------
  "method:gptq": () =>
    both(
      "GPTQ",
      [
        "Quantizes a layer's weight matrix one column at a time and, after each column, adjusts the columns not yet quantized to cancel the error just made, using the inverse Hessian (XᵀX) of the layer's inputs on calibration text.",
        "It minimises the error of the layer's output, not of the weights: the stored format is plain int4/int8 with group scales, so the weight error can even be a little higher than round-to-nearest while the model works better.",
      ],
      "GPTQ",
      [
        "逐列量化一层的权重矩阵，每量化一列后，利用校准文本上该层输入的海森矩阵（XᵀX）之逆，调整尚未量化的列以抵消刚产生的误差。",
        "它最小化的是该层输出的误差，而不是权重误差：存储格式仍是带分组缩放因子的普通 int4/int8，因此权重误差甚至可能比就近舍入略高，模型效果却更好。",
      ],
    ),
  "method:awq": () =>
    both(
      "AWQ (activation-aware weight quantization)",
      [
        "A small share of input channels meets much larger activations than the rest, and the errors of their weights matter most. AWQ multiplies those weight columns by a factor s > 1 and divides the matching activations by s (folded into the previous layer), so the important weights use more of the quantization grid and lose less, at no runtime cost.",
        "The factors are searched per layer on calibration text (s = mean |activation|^α, α chosen to minimise the layer's output error); the result is stored as plain int4 with group scales and zero points.",
      ],
      "AWQ（激活感知权重量化）",
      [
        "少数输入通道遇到的激活值远大于其他通道，它们对应权重的误差影响最大。AWQ 把这些权重列乘以系数 s > 1，并把对应的激活值除以 s（合并进前一层），这样重要的权重占用更多量化网格、损失更少，且不增加推理开销。",
        "系数在校准文本上逐层搜索（s = 平均 |激活值|^α，α 取使该层输出误差最小的值）；结果以带分组缩放因子和零点的普通 int4 存储。",
      ],
    ),

  // ---- heatmap modes ----------------------------------------------------------------------------------
  "heatmap:weights": () =>
    both(
      "Weights",
      ["The original weights (blue negative, red positive). Look for rows or columns of large weights: they are where block formats struggle."],
      "权重",
      ["原始权重（蓝色为负，红色为正）。留意大权重集中的行或列：分块格式在那里最吃力。"],
    ),
  "heatmap:abs": () =>
    both(
      "|error|",
      ["|decoded − original| of each weight, on one colour scale shared by every panel, so the same shade means the same error in every format."],
      "|误差|",
      ["每个权重的 |解码值 − 原值|，所有面板共用同一色标，因此同样的颜色在每种格式里代表同样的误差。"],
    ),
  "heatmap:rel": () =>
    both(
      "Relative error",
      ["|error| / |original| (mean pooling: Σ|error| / Σ|original|). Bright cells are small weights that their block's grid cannot represent, often rounded to zero."],
      "相对误差",
      ["|误差| / |原值|（均值池化时为 Σ|误差| / Σ|原值|）。亮的单元格是块网格无法表示的小权重，常被舍入为零。"],
    ),
  "heatmap:signed": () =>
    both(
      "Signed error",
      ["decoded − original, blue where the format rounds down and red where it rounds up. A cell that stays one colour shows a bias, such as a block minimum that shifts all its weights."],
      "带符号误差",
      ["解码值 − 原值，蓝色表示向下舍入，红色表示向上舍入。持续同一颜色的区域表示存在偏差，例如块最小值让整块权重一起偏移。"],
    ),
  "heatmap:scale": () =>
    both(
      "Block scales",
      ["The scale of each block (K-quants: sub-block) the cell covers. A large scale is a coarse step for every weight of that block; casts have no blocks, so no scales."],
      "块缩放因子",
      ["单元格所覆盖的每个块（K-quant 为子块）的缩放因子。缩放因子大意味着该块每个权重的步长都粗；类型转换格式没有分块，也就没有缩放因子。"],
    ),
  "heatmap:pooling": () =>
    both(
      "Max or mean pooling",
      ["When the view holds more weights than the canvas has pixels, each cell stands for many weights. Max shows the worst weight of the cell, so a single outlier never disappears; mean shows the typical level and gives a smoother, darker picture."],
      "最大值或均值池化",
      ["当视图中的权重多于画布像素时，每个单元格代表许多权重。最大值池化显示单元格中最差的权重，单个离群值不会被淹没；均值池化显示典型水平，图像更平滑、更暗。"],
    ),
  "heatmap:log": () =>
    both(
      "Log scale",
      ["Colours follow log₁₀ of the value instead of the value. Errors span several orders of magnitude; on a log scale small errors stay visible next to the largest ones."],
      "对数刻度",
      ["颜色对应数值的 log₁₀，而不是数值本身。误差跨越好几个数量级；在对数刻度下，小误差在最大误差旁边也依然可见。"],
    ),
};

// ---- the plain integer formats, described from their id -------------------------------------------------

const INT_ID = /^int(\d)(-asym)?-(tensor|channel|g(\d+))$/;

function intFormat(id: string): Bilingual | undefined {
  const m = INT_ID.exec(id);
  if (!m) return undefined;
  const bits = Number(m[1]);
  const asym = m[2] !== undefined;
  const group = m[4];
  const q = 2 ** (bits - 1) - 1;
  const top = 2 ** bits - 1;
  const enGrain =
    m[3] === "tensor"
      ? "One fp16 scale for the whole tensor: a single outlier stretches the step of every weight."
      : m[3] === "channel"
        ? "One fp16 scale per row (output channel): an outlier coarsens only its own row."
        : `One fp16 scale per group of ${group} consecutive weights of a row: an outlier coarsens only its group.`;
  const zhGrain =
    m[3] === "tensor"
      ? "整个张量一个 fp16 缩放因子：一个离群值就会拉大所有权重的步长。"
      : m[3] === "channel"
        ? "每行（输出通道）一个 fp16 缩放因子：离群值只影响它所在的行。"
        : `沿行每 ${group} 个连续权重一组，每组一个 fp16 缩放因子：离群值只影响它所在的组。`;
  return both(
    id,
    [
      asym
        ? `${bits}-bit asymmetric integers, rounded to nearest: codes 0…${top} with a u8 zero point, so the grid spans exactly the range [min, max] (which always holds 0).`
        : `${bits}-bit symmetric integers, rounded to nearest: codes −${q}…${q}, scale = largest |weight| / ${q}; the grid is centred on zero.`,
      enGrain,
      `${bpw(id)} bits per weight on ${ROW}×${ROW} (codes plus ${asym ? "scales and zero points" : "scales"}).`,
    ],
    id,
    [
      asym
        ? `${bits} 比特非对称整数，就近舍入：码值 0…${top}，外加一个 u8 零点，因此网格恰好覆盖 [最小值, 最大值]（始终包含 0）。`
        : `${bits} 比特对称整数，就近舍入：码值 −${q}…${q}，缩放因子 = 最大 |权重| / ${q}；网格以零为中心。`,
      zhGrain,
      `在 ${ROW}×${ROW} 上每权重比特数为 ${bpw(id)}（码值加上${asym ? "缩放因子和零点" : "缩放因子"}）。`,
    ],
  );
}

function withDoubleQuant(base: string, id: string): Bilingual {
  const a = STATIC_TOPICS[base]!();
  const dq = STATIC_TOPICS["double-quant"]!();
  return {
    en: { title: id, body: [...a.en.body.slice(0, -1), ...dq.en.body] },
    "zh-CN": { title: id, body: [...a["zh-CN"].body.slice(0, -1), ...dq["zh-CN"].body] },
  };
}

function bilingual(topic: string): Bilingual | undefined {
  const fixed = STATIC_TOPICS[topic];
  if (fixed) return fixed();
  if (topic === "nf4-dq") return withDoubleQuant("nf4", topic);
  if (topic === "fp4-dq") return withDoubleQuant("fp4", topic);
  const calibrated = calibratedMethod(topic);
  if (calibrated) return STATIC_TOPICS[calibrated.method === "gptq" ? "method:gptq" : "method:awq"]!();
  return intFormat(topic);
}

/** The explanation of a topic in a language (the current one by default), or undefined for an unknown topic. */
export function explanation(topic: string, lang: Lang = currentLang()): Explanation | undefined {
  return bilingual(topic)?.[lang];
}

/** The topic of a format family. */
export function familyTopic(family: FormatFamily | "calibrated"): string {
  return `family:${family}`;
}

/** Every topic: the static ones and every format of the registry. */
export function allTopics(): string[] {
  return [...new Set([...Object.keys(STATIC_TOPICS), ...FORMATS.map((f) => f.id)])];
}

/**
 * A format's tooltip in the current language: the registry's one-line description in English (engine text),
 * its explanation in Chinese.
 */
export function formatTooltip(id: string, description: string): string {
  return currentLang() === "zh-CN" ? (explanation(id, "zh-CN")?.body.join("\n") ?? description) : description;
}
