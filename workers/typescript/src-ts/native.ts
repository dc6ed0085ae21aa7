// The addon (workers/typescript/src/lib.rs), built by
// scripts/typescript-worker into target/typescript/tasker_worker_node.node:
// three directories above this file's compiled copy, which mirrors the
// source tree there. TASKER_NODE_ADDON names another build.
import * as path from "node:path";

/** `[id, callable, stepName, payloadJson]`; ids are exact JS numbers. */
export type PolledStep = [number, string, string, string];

export interface NativeWorker {
  readonly workerId: string;
  /** worker.concurrency: the most steps handed over at once. */
  readonly concurrency: number;
  /** A step, or null after timeoutMs; rejects once the worker stopped. */
  poll(timeoutMs: number): Promise<PolledStep | null>;
  /** False: the engine no longer waits for this step (it timed out). */
  completeSuccess(id: number, resultJson: string): boolean;
  completeFailure(id: number, errorType: string, message: string, retryable: boolean): boolean;
  /** Resolves once the steps handed over are completed and submitted. */
  stop(): Promise<void>;
}

export interface NativeWorkerClass {
  start(
    callables: string[],
    configDir: string,
    env?: string | null,
    workerId?: string | null,
  ): Promise<NativeWorker>;
}

export const addonPath: string =
  process.env.TASKER_NODE_ADDON ?? path.join(__dirname, "..", "..", "..", "tasker_worker_node.node");

export function loadNative(): NativeWorkerClass {
  return require(addonPath).NativeWorker as NativeWorkerClass;
}
