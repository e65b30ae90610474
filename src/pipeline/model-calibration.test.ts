/**
 * Calibration from raw activation files: ../shared's reference dumps of stories260K's linear-layer inputs
 * (layers.N.attn_in.f32 ...) calibrate the layers they feed, GPTQ on them beats round-to-nearest as on the
 * model run's own activations, and files that cannot be used are refused with the file's name and the reason.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openModel } from "../formats/model.ts";
import { closeSources, openPath } from "../node/file-source.ts";
import { loadStories } from "../../test/model-fixtures.ts";
import { STORIES_DIR } from "../../test/shared-data.ts";
import { activationFileOf, activationFileTensors, calibrationTargets, fileCalibration, type ActivationFile } from "./model-calibration.ts";
import { labFormat, quantizeLayer } from "./quantize-layer.ts";

const CALIB_DIR = path.join(STORIES_DIR, "reference/calib");
const dumps: ActivationFile[] = readdirSync(CALIB_DIR)
  .filter((f) => f.endsWith(".f32"))
  .map((name) => activationFileOf(name, new Uint8Array(readFileSync(path.join(CALIB_DIR, name)))));
const bytesOf = async (f: ActivationFile) => f.read();
const model = await loadStories();
const sources = await openPath(STORIES_DIR);
const opened = await openModel(sources);
afterAll(() => closeSources(sources));
const linears = calibrationTargets([...model.weights.values()]);

describe("activation files", () => {
  it("are for the matrices of the model's blocks", () => {
    expect(linears.length).toBe(35);
    expect(linears.find((l) => l.name === "model.layers.4.mlp.down_proj.weight")?.cols).toBe(172);
    expect(linears.some((l) => l.name === "model.embed_tokens.weight")).toBe(false);
  });

  it("map by tensor name or by the reference dump names, and only to layers the model has", () => {
    const names = linears.map((l) => l.name);
    expect(activationFileTensors("layers.3.attn_in.f32", names)).toEqual(["q_proj", "k_proj", "v_proj"].map((p) => `model.layers.3.self_attn.${p}.weight`));
    expect(activationFileTensors("dir/layers.0.mlp_in.f32", names)).toEqual(["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"]);
    expect(activationFileTensors("model.layers.1.mlp.down_proj.weight.f32", names)).toEqual(["model.layers.1.mlp.down_proj.weight"]);
    expect(activationFileTensors("model.layers.1.mlp.down_proj.F32", names)).toEqual(["model.layers.1.mlp.down_proj.weight"]);
    expect(activationFileTensors("layers.9.attn_in.f32", names)).toEqual([]);
    expect(activationFileTensors("notes.f32", names)).toEqual([]);
  });

  it("calibrate every linear layer of stories260K from its reference dumps; GPTQ beats round-to-nearest on them", async () => {
    const cal = await fileCalibration(dumps, linears);
    expect(cal.source).toBe("file");
    expect(cal.tokens).toBe(509);
    expect(cal.label).toBe("activation files (20 files for 35 of 35 linear layers, 509 tokens)");
    const q = (await cal.layer("model.layers.2.self_attn.q_proj.weight", 64))!;
    // q, k and v read one input: one set of statistics; down_proj reads its own, 172 wide.
    expect(await cal.layer("model.layers.2.self_attn.v_proj.weight", 64)).toBe(q);
    expect(q.stats.tokens + q.heldOut!.tokens).toBe(509);
    expect(q.label).toBe("activations from layers.2.attn_in.f32, 382 tokens (+127 held out)");
    expect((await cal.layer("model.layers.2.mlp.down_proj.weight", 172))!.stats.tokens).toBe(382);
    expect(await cal.layer("model.embed_tokens.weight", 64)).toBeUndefined();

    const tensor = opened.tensors.find((x) => x.name === "model.layers.2.self_attn.q_proj.weight")!;
    const run = await quantizeLayer(tensor, ["gptq4-g32", "int4-g32"].map(labFormat), { calibration: async (x, shape) => cal.layer(x.name, shape.cols) });
    expect(run.calibration).toMatchObject({ source: "file", label: "activations from layers.2.attn_in.f32, 382 tokens (+127 held out)" });
    const [gptq, int4] = run.results.map((r) => (r.ok ? r.outputError! : undefined));
    expect(gptq!.source).toBe("file");
    expect(gptq!.calibration).toBeLessThan(int4!.calibration);
    expect(gptq!.heldOut).toBeGreaterThan(0);
  });

  it("are told apart by content in the cache key, and read whole only when a layer needs them", async () => {
    const bytes = await bytesOf(dumps[0]!);
    const reads: number[] = [];
    const counted: ActivationFile = { ...dumps[0]!, read: (start = 0, end = bytes.byteLength) => (reads.push(end - start), dumps[0]!.read(start, end)) };
    const one = await fileCalibration([counted], linears);
    // Choosing reads each end of the file for its fingerprint, not the file.
    expect(Math.max(...reads)).toBeLessThanOrEqual(1 << 16);
    expect(one.label).toBe("activation files (1 file for 3 of 35 linear layers, 509 tokens)");
    expect(one.missing).toBe("no activation file for this layer");
    const changed = bytes.slice();
    changed[100] = changed[100]! ^ 1;
    expect((await fileCalibration([activationFileOf(dumps[0]!.name, changed)], linears)).key).not.toBe(one.key);
    expect((await fileCalibration([dumps[0]!], linears)).key).toBe(one.key);
    reads.length = 0;
    await one.layer("model.layers.0.self_attn.q_proj.weight", 64);
    expect(reads).toEqual([bytes.byteLength]);
  });

  it("that cannot be used are refused, naming the file and the reason", async () => {
    const attn = dumps.find((d) => d.name === "layers.0.attn_in.f32")!;
    const bytes = await bytesOf(attn);
    const refused = (files: ActivationFile[]) =>
      fileCalibration(files, linears).then(
        () => "accepted",
        (e: Error) => e.message,
      );
    expect(await refused([])).toBe("no activation file given");
    expect(await refused([activationFileOf("weights.f32", bytes)])).toMatch(/^weights\.f32 names no linear layer of the model: name each file after/);
    expect(await refused([activationFileOf(attn.name, bytes.subarray(0, 10))])).toBe("layers.0.attn_in.f32: 10 bytes are not whole float32 values");
    expect(await refused([activationFileOf(attn.name, bytes.subarray(0, 4 * 100))])).toBe(
      "layers.0.attn_in.f32: 100 values are not whole tokens of 64 (the input width of model.layers.0.self_attn.q_proj.weight)",
    );
    expect(await refused([attn, activationFileOf("model.layers.0.self_attn.k_proj.weight.f32", bytes)])).toBe(
      "model.layers.0.self_attn.k_proj.weight.f32 and layers.0.attn_in.f32 both hold the inputs of model.layers.0.self_attn.k_proj.weight",
    );
    // A file named after no layer feeds the tensor in view, when there is one, if its width fits.
    const q0 = "model.layers.0.self_attn.q_proj.weight";
    const unnamed = await fileCalibration([activationFileOf("x.f32", bytes)], linears, q0);
    expect(unnamed.label).toBe("activation files (1 file for 1 of 35 linear layers, 509 tokens)");
    expect((await unnamed.layer(q0, 64))!.label).toBe("activations from x.f32, 382 tokens (+127 held out)");
    expect(await unnamed.layer("model.layers.0.self_attn.k_proj.weight", 64)).toBeUndefined();
    expect(await fileCalibration([activationFileOf("x.f32", bytes)], linears, "model.layers.0.mlp.down_proj.weight").then(() => "accepted", (e: Error) => e.message)).toBe(
      "x.f32: 32576 values are not whole tokens of 172 (the input width of model.layers.0.mlp.down_proj.weight)",
    );

    // Values are checked when the file is read: a NaN fails the layer it feeds, naming the file, token and channel.
    const nan = bytes.slice();
    new DataView(nan.buffer).setFloat32(4 * (64 * 7 + 5), NaN, true);
    const cal = await fileCalibration([activationFileOf(attn.name, nan)], linears);
    await expect(cal.layer("model.layers.0.self_attn.k_proj.weight", 64)).rejects.toThrow(
      /^layers\.0\.attn_in\.f32: the activations hold 1 non-finite value \(NaN at token 7, channel 5\)/,
    );
  });
});
