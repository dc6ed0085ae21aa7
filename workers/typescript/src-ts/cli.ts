// node target/typescript/workers/typescript/src-ts/cli.js --handlers FILE.js
//   [--config-dir DIR] [--env ENV] [--worker-id ID] [--concurrency N]
//
// A worker serving the handlers of a compiled module, which exports
// HANDLERS (callable name -> handler). Configuration is tasker-worker's:
// --config-dir (default $TASKER_CONFIG_DIR, else "config"), --env
// (default $TASKER_ENV), DATABASE_URL, TASKER__* variables. Prints
// "tasker-worker (typescript) <worker_id> running" once claiming;
// SIGTERM/SIGINT stop it gracefully (exit 0). Exit 2: bad arguments or
// handlers file; 1: the worker could not start.
import * as path from "node:path";
import { Handler, handlerFunctions, Worker } from "./index";

const USAGE =
  "usage: cli.js --handlers FILE.js [--config-dir DIR] [--env ENV] [--worker-id ID] [--concurrency N]";
const FLAGS = ["handlers", "config-dir", "env", "worker-id", "concurrency"];

class UsageError extends Error {}

function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const name = flag.startsWith("--") ? flag.slice(2) : "";
    if (!FLAGS.includes(name)) {
      throw new UsageError(`unknown argument '${argv[i]}'`);
    }
    const value = inline ?? argv[++i];
    if (value === undefined) {
      throw new UsageError(`${flag} needs a value`);
    }
    args.set(name, value);
  }
  if (!args.has("handlers")) {
    throw new UsageError("--handlers is required");
  }
  const concurrency = args.get("concurrency");
  if (concurrency !== undefined && !/^[1-9][0-9]*$/.test(concurrency)) {
    throw new UsageError(`--concurrency must be a positive integer, not '${concurrency}'`);
  }
  return args;
}

/** The module's HANDLERS, or an error naming the file. */
function loadHandlers(file: string): Record<string, Handler> {
  const where = path.resolve(file);
  let handlers: unknown;
  try {
    handlers = require(where).HANDLERS;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new UsageError(`cannot load handlers file ${where}: ${reason}`);
  }
  if (handlers === null || typeof handlers !== "object" || Object.keys(handlers).length === 0) {
    throw new UsageError(`handlers file ${where} exports no HANDLERS object (callable name -> handler)`);
  }
  try {
    handlerFunctions(handlers as Record<string, Handler>);
  } catch (error) {
    throw new UsageError(`handlers file ${where}: ${(error as Error).message}`);
  }
  return handlers as Record<string, Handler>;
}

async function main(argv: string[]): Promise<number> {
  let args: Map<string, string>;
  let handlers: Record<string, Handler>;
  try {
    args = parseArgs(argv);
    handlers = loadHandlers(args.get("handlers")!);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`typescript-worker: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  let worker: Worker;
  try {
    const concurrency = args.get("concurrency");
    worker = await Worker.start(handlers, {
      configDir: args.get("config-dir"),
      env: args.get("env"),
      workerId: args.get("worker-id"),
      concurrency: concurrency === undefined ? undefined : Number(concurrency),
    });
  } catch (error) {
    process.stderr.write(`typescript-worker: cannot start: ${(error as Error).message}\n`);
    return 1;
  }
  // run() takes over SIGTERM/SIGINT before it returns: a supervisor that
  // signals as soon as it reads the line stops the worker gracefully.
  const running = worker.run();
  process.stdout.write(`tasker-worker (typescript) ${worker.workerId} running\n`);
  await running;
  return 0;
}

main(process.argv.slice(2)).then(
  // Exit now: a handler the engine gave up on may still hold a timer.
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`typescript-worker: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
