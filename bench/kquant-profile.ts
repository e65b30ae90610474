/**
 * Where the K-quant encode kernels spend their time on this machine's WebGPU (Dawn on SwiftShader, which
 * runs the "GPU" on the CPU cores), and how that compares with a copy and with the CPU references.
 *
 * In one process, interleaved (each path once per round, the median of 5 rounds), on the same weights
 * already on the device: the copy kernel (shaders/copy.wgsl); a kernel that only loads every super-block's
 * 256 weights with the encoders' layout (one invocation per super-block) and sums them; each K-quant's
 * reference encoder (kquants.wgsl, unchanged); for q2_K, q4_K and q5_K the same encoder with its scale
 * search's candidate loop removed (make_qkx*_quants keeps its first fit), which shows what the search
 * costs; the TypeScript reference; and a JS memcpy. Kernel figures are dispatch to completion, without
 * upload or read-back.
 *
 * Two speeds per path: wall MB/s, and MB/s per CPU-second of this process (SwiftShader's worker threads
 * included). The second does not depend on how many other processes share the 2 cores; llama.cpp's C
 * figures (../shared/golden/ggml/README.md) are single-thread, i.e. per CPU-second on an idle core.
 *
 * `npx tsx bench/kquant-profile.ts [--rows 32] [--formats q4_K,q5_K,q2_K,q3_K,q6_K]`
 */
import { readFileSync } from "node:fs";
import { register } from "node:module";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { gaussian } from "../test/random.ts";
import { getFormat } from "../src/quant/registry.ts";

const { values: args } = parseArgs({ options: { rows: { type: "string", default: "32" }, formats: { type: "string", default: "q4_K,q5_K,q2_K,q3_K,q6_K" } } });
const rows = Number(args.rows);
const cols = 4096;
const formats = args.formats.split(",");
const ROUNDS = 5;

register(new URL("../bin/raw-imports.js", import.meta.url));
const { openGpuDevice, describeDevice } = await import("../src/cli/backend.ts");
const { dispatch, outputStorage, uniformU32, uploadStorage } = await import("../src/gpu/buffers.ts");
const { withCommonWgsl } = await import("../src/gpu/wgsl.ts");
const { blocksPerInvocation } = await import("../src/gpu/kquants.ts");

const shader = (file: string) => readFileSync(new URL(`../shaders/${file}`, import.meta.url), "utf8");
const SEARCH_LOOP = "for (var k = 0; k <= nstep; k++) {";
const search = shader("kquant-search.wgsl");
if (!search.includes(SEARCH_LOOP)) throw new Error("kquant-search.wgsl: the candidate loop this profile removes has changed");
/** The encoders' weight layout, loads only: invocation i sums super-block i's 256 weights. */
const LOADS_ONLY = `
@compute @workgroup_size(WORKGROUP_SIZE)
fn loads_only(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = invocation_index(gid, nwg);
  if (block >= params.blocks) { return; }
  var s = 0.0f;
  for (var k = 0u; k < 16u; k++) { s = sum16(s, weights16(block * QK_K + 16u * k)); }
  encoded[block * 36u] = bitcast<u32>(s);
}`;

const dev = await openGpuDevice();
const { device } = dev;
try {
  const x = gaussian(rows * cols, 0.02, 20240611);
  const blocks = (rows * cols) / 256;
  const kquants = device.createShaderModule({ code: withCommonWgsl(shader("kquants.wgsl") + LOADS_ONLY, "kquants.wgsl", [["kquant-search.wgsl", search]]) });
  const noSearch = device.createShaderModule({
    code: withCommonWgsl(shader("kquants.wgsl"), "kquants.wgsl", [["kquant-search.wgsl", search.replace(SEARCH_LOOP, "for (var k = 0; k < 0; k++) {")]]),
  });
  const copy = device.createShaderModule({ code: shader("copy.wgsl") });
  const params = uniformU32(device, [blocks, cols / 256, 0], "profile params");
  const weights = uploadStorage(device, x, "profile weights");
  const encoded = outputStorage(device, x.byteLength, "profile output");
  const status = outputStorage(device, 4 * (1 + Math.ceil(blocks / 32)), "profile status");
  const importance = uploadStorage(device, new Float32Array(4), "profile importance");
  const copyParams = uniformU32(device, [x.byteLength / 16], "profile copy params");

  const pipeline = (module: GPUShaderModule, entryPoint: string) => device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint } });
  const kernel = (p: GPUComputePipeline, buffers: GPUBuffer[], workgroups: number) => async () => {
    dispatch(device, p, buffers, workgroups, "profile");
    await device.queue.onSubmittedWorkDone();
  };
  const paths: [string, () => Promise<void> | void][] = [];
  paths.push(["copy kernel", kernel(await pipeline(copy, "copy"), [copyParams, weights, encoded], Math.ceil(x.byteLength / 16 / 256))]);
  paths.push(["loads-only kernel", kernel(await pipeline(kquants, "loads_only"), [params, weights, encoded], Math.ceil(blocks / 64))]);
  const y = new Float32Array(x.length);
  paths.push(["memcpy (JS)", () => y.set(x)]);
  for (const id of formats) {
    const format = getFormat(id);
    const invocations = Math.ceil(blocks / blocksPerInvocation(format));
    const buffers = [params, weights, encoded, status, importance];
    const workgroups = Math.ceil(invocations / 64);
    paths.push([`${id} kernel`, kernel(await pipeline(kquants, `encode_${id}_ref`), buffers, workgroups)]);
    if (["q2_K", "q4_K", "q5_K"].includes(id)) paths.push([`${id} kernel, no search`, kernel(await pipeline(noSearch, `encode_${id}_ref`), buffers, workgroups)]);
    const out = new Uint8Array(format.encodedBytes({ rows, cols }));
    paths.push([`${id} TypeScript`, () => void format.encode(x, { rows, cols }, { out })]);
  }

  const perCpu = new Map<string, number[]>(paths.map(([name]) => [name, []]));
  const wall = new Map<string, number[]>(paths.map(([name]) => [name, []]));
  for (const [, run] of paths) await run(); // pipelines compiled, code warm
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of paths) {
      const cpu = process.cpuUsage();
      const start = performance.now();
      await run();
      const used = process.cpuUsage(cpu);
      perCpu.get(name)!.push(x.byteLength / (used.user + used.system));
      wall.get(name)!.push(x.byteLength / 1e3 / (performance.now() - start));
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  console.log(`${describeDevice(dev)}; ${rows}x${cols} float32, N(0, 0.02^2); medians of ${ROUNDS} interleaved rounds`);
  console.log(`${"path".padEnd(24)}  ${"MB/s per CPU-second".padStart(19)}  ${"MB/s wall".padStart(9)}`);
  for (const [name] of paths) {
    console.log(`${name.padEnd(24)}  ${median(perCpu.get(name)!).toFixed(1).padStart(19)}  ${median(wall.get(name)!).toFixed(1).padStart(9)}`);
  }
} finally {
  device.destroy();
}
process.exit(0);
