/** Where the reference data lives, for Node-side tests and benches: ../shared next to the repo. */
import path from "node:path";

export const REPO_ROOT = path.resolve(import.meta.dirname, "..");
export const SHARED_DIR = path.resolve(REPO_ROOT, "../shared");
/** stories260K, F32, one model.safetensors (47 tensors, 260,032 parameters). */
export const STORIES_DIR = path.resolve(SHARED_DIR, "models/stories260K");
/** The same weights in BF16, two shards and model.safetensors.index.json. */
export const STORIES_SHARDED_DIR = path.resolve(SHARED_DIR, "models/stories260K-sharded");
