/**
 * Whole-model results kept in IndexedDB, so a model opened again shows its table at once.
 *
 * Kept per cell: one record per (model, calibration, tensor, format), the model named by its identity
 * (src/pipeline/model-identity.ts: each file's name, size and header hash), the calibration by its source
 * and token count (runCalibration's key: the output errors, and GPTQ / AWQ's weights, depend on the
 * activations, so a cell computed on synthetic activations is never reused once the model run's real ones
 * are there, nor the other way round). A run asks for the cells of its format list and calibration and
 * computes only the missing ones, so a run with one format more, or a run cancelled half-way and started
 * again, redoes nothing already done. Per model the last run's format list and calibration are kept too:
 * what to show when the model is opened again.
 *
 * A cache that cannot work (no IndexedDB, a private window that refuses it, a blocked upgrade) says why in
 * `unavailable` and keeps nothing; loads that fail give nothing. Saves reject, so the caller can report
 * the failure (quota) and go on: nothing here can stop a run.
 */
import { errorWithName } from "../common/error-text.ts";
import type { ModelCell } from "./quantize-model.ts";
import type { RunCalibration } from "./model-calibration.ts";

export const RESULTS_DB_NAME = "quantlab-results";
const DB_VERSION = 1;
const CELLS = "cells";
const RUNS = "runs";
/**
 * Part of every key: raise it when the lab's figures for the same input change (a corrected quantizer or
 * metric), so cells computed before are not shown as current.
 */
export const RESULTS_SCHEMA = 2;
/** How long opening the database may take (an upgrade blocked by another tab never finishes). */
const OPEN_TIMEOUT_MS = 3000;

interface CellRecord {
  model: string;
  tensor: string;
  format: string;
  cell: ModelCell;
}

interface RunRecord {
  model: string;
  formats: string[];
  calibration: RunCalibration;
  savedAt: number;
}

/** A model's last run: its format list and the activations it was measured on. */
export interface LastRun {
  formats: string[];
  calibration: RunCalibration;
}

export interface ResultsCache {
  /** Why nothing is kept; undefined when the cache works. */
  readonly unavailable: string | undefined;
  /**
   * The cached cells of the model on that calibration (a RunCalibration key) for those formats:
   * tensor -> format -> cell (empty when none, or on failure).
   */
  load(model: string, calibration: string, formats: readonly string[]): Promise<Map<string, Map<string, ModelCell>>>;
  /** Keeps a tensor's cells computed on that calibration; rejects when IndexedDB refuses (quota...). */
  save(model: string, calibration: string, tensor: string, cells: readonly ModelCell[]): Promise<void>;
  /** The model's last run, if any. */
  lastRun(model: string): Promise<LastRun | undefined>;
  saveRun(model: string, formats: readonly string[], calibration: RunCalibration): Promise<void>;
}


function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

const keyOf = (model: string) => `${RESULTS_SCHEMA}\n${model}`;
/** The cells' model key: the model and the activations they were computed on. */
const cellsKeyOf = (model: string, calibration: string) => `${keyOf(model)}\n${calibration}`;

class IndexedDbResultsCache implements ResultsCache {
  readonly unavailable = undefined;
  constructor(private readonly db: IDBDatabase) {}

  async load(model: string, calibration: string, formats: readonly string[]): Promise<Map<string, Map<string, ModelCell>>> {
    const out = new Map<string, Map<string, ModelCell>>();
    const wanted = new Set(formats);
    try {
      const tx = this.db.transaction(CELLS, "readonly");
      // Every [model, tensor, format] key: arrays sort after strings, so [key, []] bounds the model's keys.
      const key = cellsKeyOf(model, calibration);
      const range = IDBKeyRange.bound([key], [key, []]);
      const records = (await done(tx.objectStore(CELLS).getAll(range))) as CellRecord[];
      for (const r of records) {
        if (!wanted.has(r.format)) continue;
        let cells = out.get(r.tensor);
        if (!cells) out.set(r.tensor, (cells = new Map()));
        cells.set(r.format, r.cell);
      }
    } catch (e) {
      console.warn("The results cache could not be read:", e);
      return new Map();
    }
    return out;
  }

  async save(model: string, calibration: string, tensor: string, cells: readonly ModelCell[]): Promise<void> {
    const tx = this.db.transaction(CELLS, "readwrite");
    const store = tx.objectStore(CELLS);
    const finished = committed(tx);
    try {
      for (const cell of cells) store.put({ model: cellsKeyOf(model, calibration), tensor, format: cell.format, cell } satisfies CellRecord);
    } catch (e) {
      // A put that throws (a value that cannot be cloned) leaves the transaction to abort by itself.
      tx.abort();
      await finished.catch(() => {});
      throw e;
    }
    await finished;
  }

  async lastRun(model: string): Promise<LastRun | undefined> {
    try {
      const record = (await done(this.db.transaction(RUNS, "readonly").objectStore(RUNS).get(keyOf(model)))) as RunRecord | undefined;
      return record && { formats: record.formats, calibration: record.calibration };
    } catch (e) {
      console.warn("The results cache could not be read:", e);
      return undefined;
    }
  }

  async saveRun(model: string, formats: readonly string[], calibration: RunCalibration): Promise<void> {
    const tx = this.db.transaction(RUNS, "readwrite");
    tx.objectStore(RUNS).put({ model: keyOf(model), formats: [...formats], calibration: { ...calibration }, savedAt: Date.now() } satisfies RunRecord);
    await committed(tx);
  }
}

/** A cache that keeps nothing, and says why. */
class NoResultsCache implements ResultsCache {
  constructor(readonly unavailable: string) {}
  async load(): Promise<Map<string, Map<string, ModelCell>>> {
    return new Map();
  }
  async save(): Promise<void> {}
  async lastRun(): Promise<LastRun | undefined> {
    return undefined;
  }
  async saveRun(): Promise<void> {}
}

/**
 * Opens the cache in `factory` (default: the global indexedDB; null: none). Never rejects: when IndexedDB cannot be
 * used, the cache keeps nothing and `unavailable` says why.
 */
export async function openResultsCache(factory: IDBFactory | null = globalThis.indexedDB ?? null, name = RESULTS_DB_NAME): Promise<ResultsCache> {
  if (!factory) return new NoResultsCache("this browser has no IndexedDB");
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const request = factory.open(name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(CELLS)) db.createObjectStore(CELLS, { keyPath: ["model", "tensor", "format"] });
      if (!db.objectStoreNames.contains(RUNS)) db.createObjectStore(RUNS, { keyPath: "model" });
    };
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`IndexedDB did not open within ${OPEN_TIMEOUT_MS} ms (blocked by another tab?)`)), OPEN_TIMEOUT_MS);
    });
    const db = await Promise.race([done(request), timeout]);
    // Another tab upgrading the database: step aside rather than block it.
    db.onversionchange = () => db.close();
    return new IndexedDbResultsCache(db);
  } catch (e) {
    return new NoResultsCache(`IndexedDB cannot be used here (${errorWithName(e)}): results are not kept`);
  } finally {
    clearTimeout(timer);
  }
}
