/**
 * llama.cpp's K-quants q2_K..q6_K (256-weight super-blocks): CPU reference encoders (plain and
 * importance-weighted) and decoders, bit-exact with ggml. Each format lives in its own file next to its
 * byte layout; the scale searches are in kquant-search.ts, the row driver in kquant-format.ts.
 * (q8_K, the dot-product intermediate, is with the legacy formats.)
 */
import type { QuantFormat } from "../format.ts";
import { Q2_K } from "./q2_K.ts";
import { Q3_K } from "./q3_K.ts";
import { Q4_K } from "./q4_K.ts";
import { Q5_K } from "./q5_K.ts";
import { Q6_K } from "./q6_K.ts";

export { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };
export { QK_K, kRowLengthCheck } from "./kquant-format.ts";

export const GGML_K_FORMATS: QuantFormat[] = [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K];
