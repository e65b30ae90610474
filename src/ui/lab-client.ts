/**
 * The page's handle on the model worker. Every call goes to the worker through comlink; errors come
 * back as FormatError (code, file, detail intact) or CancelledError when a newer request replaced it.
 */
import * as Comlink from "comlink";
import type { GpuStatus } from "../gpu/device.ts";
import type { ModelSummary, ModelWorkerApi, TensorStatsResult } from "../../workers/model-worker-api.ts";
import { fromWireError } from "../../workers/wire-error.ts";

export class LabClient {
  private readonly worker: Worker;
  private readonly remote: Comlink.Remote<ModelWorkerApi>;

  constructor() {
    this.worker = new Worker(new URL("../../workers/model-worker.ts", import.meta.url), { type: "module", name: "quantlab-model" });
    this.remote = Comlink.wrap<ModelWorkerApi>(this.worker);
  }

  openFiles(files: File[]): Promise<ModelSummary> {
    return this.call(() => this.remote.openFiles(files));
  }

  openUrl(url: string): Promise<ModelSummary> {
    return this.call(() => this.remote.openUrl(url));
  }

  openDemo(): Promise<ModelSummary> {
    return this.call(() => this.remote.openDemo());
  }

  tensorStats(name: string): Promise<TensorStatsResult> {
    return this.call(() => this.remote.tensorStats(name));
  }

  gpuStatus(): Promise<GpuStatus> {
    // Comlink's Remote<> distributes over the union; the value is the plain GpuStatus the worker returned.
    return this.call(() => this.remote.gpuStatus() as Promise<GpuStatus>);
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (e) {
      throw fromWireError(e);
    }
  }
}
