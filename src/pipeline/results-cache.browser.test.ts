/**
 * The results cache in real IndexedDB (Chromium): cells of a real run (stories260K tensors through
 * quantizeModel) come back equal, per model and format list; a run served from the cache computes
 * nothing; the last format list per model; and a cache that cannot open or save does not stop a run.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openModel, type OpenedModel } from "../formats/model.ts";
import { BlobSource } from "../formats/source.ts";
import { getFormat } from "../quant/registry.ts";
import { modelIdentity } from "./model-identity.ts";
import { quantizableTensors, quantizeModel, type ModelCell } from "./quantize-model.ts";
import { openResultsCache, type ResultsCache } from "./results-cache.ts";
import { activationFileOf, calibrationTargets, fileCalibration, runCalibration } from "./model-calibration.ts";
import { gaussian } from "../../test/random.ts";
import { labFormat } from "./quantize-layer.ts";

const DB = "quantlab-results-test";
let model: OpenedModel;
let cache: ResultsCache;
/** A run with no calibrated setting and no model run: no output errors measured. */
const NONE = runCalibration({ why: "no GPTQ / AWQ setting asked for" }, false);

beforeAll(async () => {
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(DB);
    request.onsuccess = request.onerror = resolve;
  });
  const response = await fetch(`/@fs/${inject("sharedDir")}/models/stories260K/model.safetensors`);
  model = await openModel([new BlobSource(await response.blob(), "model.safetensors")]);
  cache = await openResultsCache(indexedDB, DB);
});
afterAll(() => indexedDB.deleteDatabase(DB));

describe("results cache in IndexedDB", () => {
  it("keeps a run's cells per model and format; a second run is served from it without computing", async () => {
    expect(cache.unavailable).toBeUndefined();
    const { key } = await modelIdentity(model.tensors);
    const tensors = quantizableTensors(model.tensors).slice(0, 8);
    const formats = ["int8-channel", "int4-g32", "q4_K"].map(getFormat);
    const first = await quantizeModel(tensors, formats, { save: (t, cells) => cache.save(key, NONE.key, t, cells) });
    await cache.saveRun(key, first.formats, NONE);

    const cached = await cache.load(key, NONE.key, first.formats);
    expect([...cached.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const row of first.rows) expect([...cached.get(row.tensor)!.values()].sort((a, b) => (a.format < b.format ? -1 : 1))).toEqual(
      [...row.cells].sort((a, b) => (a.format < b.format ? -1 : 1)),
    );
    // Another format list gets only its formats; another model nothing.
    const int8Only = await cache.load(key, NONE.key, ["int8-channel", "nf4"]);
    expect([...int8Only.values()].every((cells) => [...cells.keys()].join() === "int8-channel")).toBe(true);
    expect((await cache.load(`${key}x`, NONE.key, first.formats)).size).toBe(0);
    expect(await cache.lastRun(key)).toEqual({ formats: ["int8-channel", "int4-g32", "q4_K"], calibration: NONE });
    expect(await cache.lastRun(`${key}x`)).toBeUndefined();

    const again = await quantizeModel(tensors, formats, { cached, save: () => Promise.reject(new Error("nothing new to save")) });
    expect(again.computedCells).toBe(0);
    expect(again.rows.map((r) => r.cells)).toEqual(first.rows.map((r) => r.cells));
    // A reopened database holds the same.
    const reopened = await openResultsCache(indexedDB, DB);
    expect((await reopened.load(key, NONE.key, first.formats)).size).toBe(8);
  });

  it("keeps cells apart by calibration: cells computed on synthetic activations are not served once the model run's are there", async () => {
    // A model key of its own: the test above keeps cells of these tensors under no calibration.
    const key = `${(await modelIdentity(model.tensors)).key} (calibration test)`;
    // The linear layers of the first block (the GPTQ setting's groups of 32 divide their rows).
    const tensors = quantizableTensors(model.tensors).filter((t) => t.name.startsWith("model.layers.0.") && t.shape.length === 2 && t.shape[1]! % 32 === 0).slice(0, 2);
    expect(tensors.length).toBe(2);
    const formats = [labFormat("gptq4-g32"), labFormat("int8-channel")];
    const synthetic = runCalibration({ why: "a lone shard" }, true);
    const first = await quantizeModel(tensors, formats, { syntheticWhy: "a lone shard", save: (t, cells) => cache.save(key, synthetic.key, t, cells) });
    await cache.saveRun(key, first.formats, synthetic);
    // Its output errors were measured on synthetic activations, for the GPTQ cell and the plain one alike.
    expect(first.rows.flatMap((r) => r.cells).every((c) => c.ok && c.outputError?.source === "synthetic")).toBe(true);

    expect((await cache.load(key, synthetic.key, first.formats)).size).toBe(2);
    // Real activations (a file of the first layer's inputs), the same file with more tokens, and a run that
    // measures no output error: none of them gets those cells.
    const linears = calibrationTargets(model.tensors);
    const inputs = (tokens: number) => activationFileOf(`${tensors[0]!.name}.f32`, new Uint8Array(gaussian(tokens * tensors[0]!.shape[1]!, 1, 5).buffer));
    for (const other of [
      runCalibration({ model: await fileCalibration([inputs(100)], linears) }, true),
      runCalibration({ model: await fileCalibration([inputs(120)], linears) }, true),
      runCalibration({ why: "no GPTQ / AWQ setting asked for" }, false),
    ]) {
      expect(other.key).not.toBe(synthetic.key);
      const cached = await cache.load(key, other.key, first.formats);
      expect(cached.size).toBe(0);
      const run = await quantizeModel(tensors, [getFormat("int8-channel")], { cached });
      expect(run.computedCells).toBe(2);
    }
    // The last run says which activations its cells were measured on (what a reopened file shows).
    expect(await cache.lastRun(key)).toEqual({ formats: ["gptq4-g32", "int8-channel"], calibration: synthetic });
  });

  it("a save IndexedDB refuses rejects (the run reports it and goes on); the cache still works after", async () => {
    const bad = { format: "q8_0", ok: false, error: { problem: "shape", message: "x" }, stored: { bytes: 1, as: "F32", kind: "source" }, extra: () => 1 } as unknown as ModelCell;
    await expect(cache.save("m", NONE.key, "t", [bad])).rejects.toMatchObject({ name: "DataCloneError" });
    expect((await cache.load("m", NONE.key, ["q8_0"])).size).toBe(0);
    const errors: unknown[] = [];
    const tensors = quantizableTensors(model.tensors).slice(0, 2);
    const run = await quantizeModel(tensors, [getFormat("q8_0")], {
      save: (t, cells) => cache.save("m", NONE.key, t, cells.map((c) => ({ ...c, extra: () => 1 }) as unknown as ModelCell)),
      onCacheError: (e) => errors.push(e),
    });
    expect(run.rows).toHaveLength(2);
    expect(errors).toHaveLength(2);
    await cache.save("m", NONE.key, "t", [run.rows[0]!.cells[0]!]);
    expect((await cache.load("m", NONE.key, ["q8_0"])).get("t")?.get("q8_0")).toEqual(run.rows[0]!.cells[0]);
  });

  it("no IndexedDB, or one that refuses to open (private mode): a cache that keeps nothing and says why", async () => {
    const none = await openResultsCache(null);
    expect(none.unavailable).toMatch(/no IndexedDB/);
    const refusing = {
      open() {
        throw new DOMException("The user denied permission to access the database.", "SecurityError");
      },
    } as unknown as IDBFactory;
    const refused = await openResultsCache(refusing);
    expect(refused.unavailable).toMatch(/SecurityError: The user denied permission/);
    await expect(refused.save("m", NONE.key, "t", [])).resolves.toBeUndefined();
    expect((await refused.load("m", NONE.key, ["q8_0"])).size).toBe(0);
    expect(await refused.lastRun("m")).toBeUndefined();
    // A run with it works.
    const run = await quantizeModel(quantizableTensors(model.tensors).slice(0, 1), [getFormat("int8")], { save: (t, c) => refused.save("m", NONE.key, t, c) });
    expect(run.rows[0]!.cells[0]!.ok).toBe(true);
  });
});
