/**
 * AWQ's searches with their heavy part on WebGPU: the algorithm is the CPU reference's (awqSearchSteps in
 * src/quant/awq.ts, the candidates quantized on the CPU, O(rows x cols) each), and every output-error
 * measurement it asks for, O(rows x cols^2), is a matrix multiply on the GPU (shaders/matmul.wgsl):
 *   "total":  E = D G (G the calibration Gram matrix, uploaded once), then sum(E * D) in float64;
 *   "groups": E_k = D_k G'_k for every group k (G' the clip sample's Gram matrix of X/s, block-diagonal: one
 *             dispatch per group with offsets), then per (row, group) sum(E * D) over the group.
 * f32 on the GPU: the errors compared differ by far more than its rounding, except at near-ties.
 */
import type { LabDevice } from "./device.ts";
import { outputStorage, readBack, uploadStorage } from "./buffers.ts";
import { encodeMatmul, matmulPipeline } from "./gptq.ts";
import { awqFinish, awqSearchSteps, clipGroupGram, type AwqCalibration, type AwqOptions, type AwqResult, type AwqSearch } from "../quant/awq.ts";
import type { MatrixShape } from "../quant/format.ts";

export async function gpuAwqSearch(dev: LabDevice, weights: Float32Array, shape: MatrixShape, calib: AwqCalibration, options: AwqOptions): Promise<AwqSearch> {
  const { device } = dev;
  const { rows, cols } = shape;
  const pipeline = await matmulPipeline(device);
  const steps = awqSearchSteps(weights, shape, calib, options);
  const gram = uploadStorage(device, Float32Array.from(calib.gram), "awq gram");
  const d = outputStorage(device, rows * cols * 4, "awq d");
  const e = outputStorage(device, rows * cols * 4, "awq e");
  let clipGram: GPUBuffer | undefined;
  const dF32 = new Float32Array(rows * cols);

  /** E = D G (or block-diagonal per group of `size` columns) for the D given; returns E. */
  const multiply = async (dValues: Float64Array, b: GPUBuffer, size: number | undefined): Promise<Float32Array> => {
    dF32.set(dValues);
    device.queue.writeBuffer(d, 0, dF32);
    const encoder = device.createCommandEncoder({ label: "awq error" });
    const pass = encoder.beginComputePass({ label: "awq error" });
    const uniforms: GPUBuffer[] = [];
    if (size === undefined) {
      uniforms.push(encodeMatmul(device, pass, pipeline, { m: rows, n: cols, k: cols, a: d, aRow: cols, aCol: 1, b, bRow: cols, bCol: 1, c: e, cRow: cols }));
    } else {
      for (let c0 = 0; c0 < cols; c0 += size) {
        uniforms.push(
          encodeMatmul(device, pass, pipeline, { m: rows, n: size, k: size, a: d, aOff: c0, aRow: cols, aCol: 1, b, bOff: c0 * cols + c0, bRow: cols, bCol: 1, c: e, cOff: c0, cRow: cols }),
        );
      }
    }
    pass.end();
    device.queue.submit([encoder.finish()]);
    try {
      return new Float32Array((await readBack(device, e, rows * cols * 4)).buffer);
    } finally {
      for (const u of uniforms) u.destroy();
    }
  };

  try {
    let next = steps.next();
    while (!next.done) {
      const m = next.value;
      if (m.kind === "total") {
        const prod = await multiply(m.d, gram, undefined);
        let total = 0;
        for (let i = 0; i < prod.length; i++) total += prod[i]! * m.d[i]!;
        next = steps.next(total);
        continue;
      }
      const nGroups = cols / m.size;
      if (!clipGram) {
        // The blocks of G' on the diagonal, laid out in a cols x cols matrix (the rest is never read).
        const full = new Float32Array(cols * cols);
        for (let k = 0; k < nGroups; k++) {
          const block = clipGroupGram(calib, cols, m.s, m.size, k);
          for (let i = 0; i < m.size; i++) for (let j = 0; j < m.size; j++) full[(k * m.size + i) * cols + k * m.size + j] = block[i * m.size + j]!;
        }
        clipGram = uploadStorage(device, full, "awq clip gram");
      }
      const prod = await multiply(m.d, clipGram, m.size);
      const errs = new Float64Array(rows * nGroups);
      for (let i = 0; i < prod.length; i++) {
        const g = Math.floor(i / cols) * nGroups + Math.floor((i % cols) / m.size);
        errs[g] = errs[g]! + prod[i]! * m.d[i]!;
      }
      next = steps.next(errs);
    }
    return next.value;
  } finally {
    for (const b of [gram, d, e, clipGram]) b?.destroy();
  }
}

/** AWQ with the searches' error measurements on the GPU; same result as awqQuantize. */
export async function gpuAwqQuantize(dev: LabDevice, weights: Float32Array, shape: MatrixShape, calib: AwqCalibration, options: AwqOptions): Promise<AwqResult> {
  return awqFinish(weights, shape, calib, options, await gpuAwqSearch(dev, weights, shape, calib, options));
}
