// TypeScript step handlers for the Tasker workflow engine.
//
// A handler is a function taking a Step, or an object with call(step),
// registered under the callable name its templates give
// (handler.callable). It returns (or resolves to) anything JSON.stringify
// accepts. A throw or rejection fails the step: the error's constructor
// name is the error type, its message and stack the message; the step is
// retried (up to the template's max_attempts) unless the error is a
// PermanentError or has `retryable = false`. Claiming, leases, timeouts
// and retries are the engine's own Rust worker's (the addon); a step
// crosses the boundary once each way, as JSON text.
//
// The event loop never blocks: N loops each await the addon's poll (a
// Promise settled from a Rust thread), await their handler, and hand the
// result back; N handlers are in flight at most.
import { loadNative, NativeWorker, PolledStep } from "./native";

/** How long one poll waits before it resolves null and is issued again. */
const POLL_MS = 1000;

/** A failure no retry can fix: the step ends at once. */
export class PermanentError extends Error {
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = "PermanentError";
  }
}

/** The step as the engine sends it (snake_case JSON). */
interface StepPayload {
  task_uuid: string;
  step_uuid: string;
  step_name: string;
  task_context: any;
  dependency_results: Record<string, unknown>;
  initialization: any;
  inputs: any;
  attempt: number;
  child_steps: string[];
}

/** What a handler sees of its step; fields are camelCase. */
export class Step {
  readonly taskUuid: string;
  readonly stepUuid: string;
  readonly stepName: string;
  /** The task's context, as given when the task was created. */
  readonly taskContext: any;
  /** Parent steps' results, by step name. */
  readonly dependencyResults: Record<string, unknown>;
  /** handler.initialization from the template. */
  readonly initialization: any;
  /** The step's own inputs (batch workers), else null. */
  readonly inputs: any;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Steps that depend on this one. */
  readonly childSteps: string[];

  constructor(payload: StepPayload) {
    this.taskUuid = payload.task_uuid;
    this.stepUuid = payload.step_uuid;
    this.stepName = payload.step_name;
    this.taskContext = payload.task_context;
    this.dependencyResults = payload.dependency_results;
    this.initialization = payload.initialization;
    this.inputs = payload.inputs;
    this.attempt = payload.attempt;
    this.childSteps = payload.child_steps;
  }

  /** A parent's result, or a PermanentError naming the missing parent. */
  dependency(name: string): unknown {
    if (!Object.prototype.hasOwnProperty.call(this.dependencyResults, name)) {
      throw new PermanentError(`step '${this.stepName}' has no result from '${name}'`);
    }
    return this.dependencyResults[name];
  }
}

export type HandlerFunction = (step: Step) => unknown;
export type Handler = HandlerFunction | { call(step: Step): unknown };

/** Each handler as a function; a TypeError names one that is neither. */
export function handlerFunctions(handlers: Record<string, Handler>): Map<string, HandlerFunction> {
  const functions = new Map<string, HandlerFunction>();
  for (const [name, handler] of Object.entries(handlers)) {
    // Functions first: every function has a `call` (Function.prototype's).
    if (typeof handler === "function") {
      functions.set(name, handler as HandlerFunction);
    } else if (handler !== null && typeof handler === "object" && typeof handler.call === "function") {
      functions.set(name, (step) => handler.call(step));
    } else {
      throw new TypeError(`handler '${name}' must be a function or have call(step)`);
    }
  }
  return functions;
}

export interface WorkerOptions {
  /** Default: $TASKER_CONFIG_DIR, else "config". */
  configDir?: string;
  /** Default: $TASKER_ENV. */
  env?: string;
  /** Overrides worker.worker_id. */
  workerId?: string;
  /** Handlers running at once; default: worker.concurrency. */
  concurrency?: number;
}

/** Serves handlers (callable name -> handler) until stopped. */
export class Worker {
  private readonly handlers: Map<string, HandlerFunction>;
  private readonly native: NativeWorker;
  readonly concurrency: number;
  private running = false;
  private stopping: Promise<void> | null = null;
  private stopRequested!: () => void;
  private readonly stopCalled = new Promise<void>((resolve) => (this.stopRequested = resolve));

  private constructor(native: NativeWorker, handlers: Map<string, HandlerFunction>, concurrency?: number) {
    this.native = native;
    this.handlers = handlers;
    this.concurrency = Math.max(1, Math.floor(concurrency ?? native.concurrency));
  }

  /** Connects (off the event loop) and starts claiming steps. */
  static async start(handlers: Record<string, Handler>, options: WorkerOptions = {}): Promise<Worker> {
    const functions = handlerFunctions(handlers);
    const configDir = options.configDir ?? process.env.TASKER_CONFIG_DIR ?? "config";
    const env = options.env ?? process.env.TASKER_ENV;
    const native = await loadNative().start([...functions.keys()], configDir, env, options.workerId);
    return new Worker(native, functions, options.concurrency);
  }

  get workerId(): string {
    return this.native.workerId;
  }

  /**
   * Runs steps until SIGTERM or SIGINT (handled from the moment run() is
   * called) or stop(); resolves once the steps already claimed have
   * finished and their results are submitted.
   */
  async run(): Promise<void> {
    if (this.running) throw new Error("the worker is already running");
    this.running = true;
    const onSignal = () => void this.stop().catch(() => undefined);
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      for (let i = 0; i < this.concurrency; i++) {
        void this.serve();
      }
      await this.stopCalled;
      // Not the loops: one may still await a handler the engine gave up
      // on (timed out; its result would be refused).
      await this.stopping;
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  }

  /** Stops claiming; resolves (as run() does) once in-flight steps are done. */
  stop(): Promise<void> {
    if (this.stopping === null) {
      this.stopping = this.native.stop();
      this.stopRequested();
    }
    return this.stopping;
  }

  private async serve(): Promise<void> {
    for (;;) {
      let step: PolledStep | null;
      try {
        step = await this.native.poll(POLL_MS);
      } catch (error) {
        // WorkerStopped is the normal end; anything else stops the worker.
        if (this.stopping === null) {
          console.error("tasker-worker: polling failed, stopping:", error);
          void this.stop().catch(() => undefined);
        }
        return;
      }
      if (step !== null) {
        await this.runOne(step);
      }
    }
  }

  /** Runs one step and reports it; never throws, so no step is lost. */
  private async runOne([id, callable, , payload]: PolledStep): Promise<void> {
    let text: string;
    try {
      const handler = this.handlers.get(callable);
      if (handler === undefined) {
        throw new PermanentError(`no handler for callable '${callable}'`);
      }
      const result = await handler(new Step(JSON.parse(payload) as StepPayload));
      // undefined (no return) is JSON's null.
      text = JSON.stringify(result) ?? "null";
    } catch (error) {
      this.report(() => this.native.completeFailure(id, ...describeError(error)));
      return;
    }
    this.report(() => this.native.completeSuccess(id, text));
  }

  // False (the engine stopped waiting: the step timed out) needs nothing:
  // the attempt is already recorded as failed and retried.
  private report(complete: () => boolean): void {
    try {
      complete();
    } catch (error) {
      console.error("tasker-worker: reporting a step failed:", error);
    }
  }
}

/** [error type, message with stack, retryable] of anything thrown; never
 * throws itself (a hostile getter or toString cannot lose the step). */
export function describeError(error: unknown): [string, string, boolean] {
  try {
    return describe(error);
  } catch {
    return ["Error", "the handler failed with an error that cannot be described", true];
  }
}

function describe(error: unknown): [string, string, boolean] {
  const retryable = !(
    error !== null &&
    typeof error === "object" &&
    (error as { retryable?: unknown }).retryable === false
  );
  if (error instanceof Error) {
    const errorType = error.constructor?.name || error.name || "Error";
    const message = error.stack ? `${error.message}\n${error.stack}` : error.message;
    return [errorType, message, retryable];
  }
  // A thrown string, number or plain object.
  const errorType = error !== null && typeof error === "object" ? error.constructor?.name ?? "Object" : typeof error;
  let message: string;
  try {
    message = typeof error === "string" ? error : JSON.stringify(error) ?? String(error);
  } catch {
    message = String(error);
  }
  return [errorType, message, retryable];
}
