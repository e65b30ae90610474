/**
 * An independent float64 forward pass of a LLaMA/Qwen2 decoder, written straight from the maths (loops, no
 * graph), for checking the ONNX graph on configurations ../shared has no model for (q/k/v biases, untied
 * head, other head groupings). Test-only and slow: tiny models.
 */
import type { DecoderArchitecture } from "../src/model/architecture.ts";

export function referenceForward(a: DecoderArchitecture, w: Map<string, Float32Array>, ids: readonly number[]): Float64Array {
  const { hiddenSize: H, numHeads: NH, numKvHeads: KV, headDim: D, intermediateSize: I, vocabSize: V } = a;
  const T = ids.length;
  const get = (n: string) => w.get(n) ?? (() => { throw new Error(`no ${n}`); })();
  const linear = (x: Float64Array, name: string, out: number, inF: number, bias?: string): Float64Array => {
    const W = get(name);
    const b = bias ? w.get(bias) : undefined;
    const y = new Float64Array(T * out);
    for (let t = 0; t < T; t++) for (let o = 0; o < out; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[t * inF + i]! * W[o * inF + i]!;
      y[t * out + o] = s;
    }
    return y;
  };
  const norm = (x: Float64Array, name: string): Float64Array => {
    const g = get(name);
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      let ms = 0;
      for (let i = 0; i < H; i++) ms += x[t * H + i]! ** 2;
      const r = 1 / Math.sqrt(ms / H + a.rmsNormEps);
      for (let i = 0; i < H; i++) y[t * H + i] = x[t * H + i]! * r * g[i]!;
    }
    return y;
  };
  const rope = (x: Float64Array, heads: number) => {
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let i = 0; i < D / 2; i++) {
      const angle = t * Math.pow(a.ropeTheta, (-2 * i) / D);
      const o = (t * heads + h) * D;
      const x1 = x[o + i]!;
      const x2 = x[o + i + D / 2]!;
      x[o + i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
      x[o + i + D / 2] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
    }
  };
  const emb = get("model.embed_tokens.weight");
  let x = new Float64Array(T * H);
  ids.forEach((id, t) => { for (let i = 0; i < H; i++) x[t * H + i] = emb[id * H + i]!; });
  for (let l = 0; l < a.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const h = norm(x, `${p}input_layernorm.weight`);
    const bias = (n: string) => (a.qkvBias ? `${p}self_attn.${n}.bias` : undefined);
    const q = linear(h, `${p}self_attn.q_proj.weight`, NH * D, H, bias("q_proj"));
    const k = linear(h, `${p}self_attn.k_proj.weight`, KV * D, H, bias("k_proj"));
    const v = linear(h, `${p}self_attn.v_proj.weight`, KV * D, H, bias("v_proj"));
    rope(q, NH);
    rope(k, KV);
    const att = new Float64Array(T * NH * D);
    for (let head = 0; head < NH; head++) {
      const kh = Math.floor(head / (NH / KV));
      for (let t = 0; t < T; t++) {
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[(t * NH + head) * D + d]! * k[(s * KV + kh) * D + d]!;
          scores[s] = dot / Math.sqrt(D);
          max = Math.max(max, scores[s]!);
        }
        let z = 0;
        for (let s = 0; s <= t; s++) z += scores[s] = Math.exp(scores[s]! - max);
        for (let s = 0; s <= t; s++) {
          for (let d = 0; d < D; d++) {
            const at = (t * NH + head) * D + d;
            att[at] = att[at]! + (scores[s]! / z) * v[(s * KV + kh) * D + d]!;
          }
        }
      }
    }
    const o = linear(att, `${p}self_attn.o_proj.weight`, H, NH * D);
    x = x.map((xv, i) => xv + o[i]!);
    const m = norm(x, `${p}post_attention_layernorm.weight`);
    const gate = linear(m, `${p}mlp.gate_proj.weight`, I, H);
    const up = linear(m, `${p}mlp.up_proj.weight`, I, H);
    const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
    const down = linear(act, `${p}mlp.down_proj.weight`, H, I);
    x = x.map((xv, i) => xv + down[i]!);
  }
  const f = norm(x, "model.norm.weight");
  return linear(f, a.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", V, H);
}
