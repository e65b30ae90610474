/**
 * Importing this module registers every WGSL kernel family with src/gpu/quantizer.ts
 * (registerGpuQuantizers runs when a family module is imported). Callers of gpuQuantizerFor import
 * it once. One import per family, nothing else: add yours to the list.
 */
import "./ggml-legacy.ts";
import "./intq.ts";
import "./casts.ts";
import "./kquants.ts";
import "./bnb.ts";
