/**
 * (f2) The lab's matrix-multiply kernel (shaders/matmul.wgsl, what GPTQ's block updates, the Hessian, the
 * factorization's panels and AWQ's error measurements run on) against onnxruntime-web's WebGPU MatMul, in
 * Chromium, on the same adapter (both ask navigator.gpu for it), on the shapes GPTQ uses: the lazy batch
 * update (rows x 128) @ (128 x n) and a Hessian-sized product. Both sides upload A and B, multiply and read C
 * back, timed in turns (median of `runs`) after a warm-up; the results are checked equal within float32
 * rounding, so a fast wrong answer shows.
 *
 * Run by `npm run bench` (bench/run.ts) through bench/vitest.bench.config.ts; it prints one line per shape
 * ("matmul-ort {json}") that bench/run.ts turns into the table. SwiftShader is a CPU: the shapes are scaled
 * down by default (QUANTLAB_BENCH_MATMUL_FULL=1 for the issue's 4096 x 128 @ 128 x 4096 and
 * 2048 x 4096 @ 4096 x 4096).
 */
import * as ort from "onnxruntime-web/webgpu";
import { expect, inject, it } from "vitest";
import { gpuMatmul } from "../src/gpu/gptq.ts";
import { encodeOnnxModel, ONNX_TYPE } from "../src/model/onnx-proto.ts";
import { gaussian } from "../test/random.ts";
import { useLabDevice } from "../test/gpu-device.ts";

declare module "vitest" {
  export interface ProvidedContext {
    matmulShapes: [number, number, number][];
    matmulRuns: number;
  }
}

const gpu = useLabDevice();

function matmulModel(m: number, k: number, n: number): Uint8Array {
  return encodeOnnxModel({
    graph: {
      name: "matmul",
      nodes: [{ opType: "MatMul", inputs: ["a", "b"], outputs: ["c"] }],
      initializers: [],
      inputs: [
        { name: "a", elemType: ONNX_TYPE.float, dims: [m, k] },
        { name: "b", elemType: ONNX_TYPE.float, dims: [k, n] },
      ],
      outputs: [{ name: "c", elemType: ONNX_TYPE.float, dims: [m, n] }],
    },
    opsets: [{ domain: "", version: 17 }],
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

it("our matmul kernel against onnxruntime-web's WebGPU MatMul", async () => {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  const runs = inject("matmulRuns");
  for (const [m, k, n] of inject("matmulShapes")) {
    const a = gaussian(m * k, 1, 1);
    const b = gaussian(k * n, 1, 2);
    const session = await ort.InferenceSession.create(matmulModel(m, k, n), { executionProviders: ["webgpu"] });
    try {
      const ortRun = async () => {
        const out = await session.run({ a: new ort.Tensor("float32", a, [m, k]), b: new ort.Tensor("float32", b, [k, n]) });
        return (await out["c"]!.getData()) as Float32Array;
      };
      const ours = () => gpuMatmul(gpu(), a, b, m, k, n);
      // Warm-up (pipeline compilation), and the check that both compute the same product.
      const [x, y] = [await ours(), await ortRun()];
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < x.length; i++) {
        diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
        scale = Math.max(scale, Math.abs(y[i]!));
      }
      expect(diff / scale).toBeLessThan(1e-4);
      const times = { ours: [] as number[], ort: [] as number[] };
      for (let r = 0; r < runs; r++) {
        let t = performance.now();
        await ours();
        times.ours.push(performance.now() - t);
        t = performance.now();
        await ortRun();
        times.ort.push(performance.now() - t);
      }
      const oursMs = median(times.ours);
      const ortMs = median(times.ort);
      const info = gpu().info;
      console.log(`matmul-ort ${JSON.stringify({ m, k, n, oursMs, ortMs, ratio: oursMs / ortMs, adapter: `${info.vendor} ${info.architecture}` })}`);
    } finally {
      await session.release();
    }
  }
}, 3_600_000);
