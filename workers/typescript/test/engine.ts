// One engine for the suite: tasker-server on a throwaway PostgreSQL
// (--local-postgres) with the test templates; each test starts its own
// TypeScript worker(s) against it, in this process or as the CLI.
import { spawn, ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { Worker } from "../src-ts/index";
import { HANDLERS } from "./handlers";

// scripts/typescript-worker runs the tests from the repository's root.
const ROOT = process.env.TASKER_ROOT ?? process.cwd();
const TARGET = process.env.CARGO_TARGET_DIR ?? path.join(ROOT, "target");
const SERVER = path.join(TARGET, "debug", "tasker-server");
const TIMEOUT_MS = 60_000;

function retry(attempts: number): string {
  return `
    retry:
      retryable: true
      max_attempts: ${attempts}
      backoff: exponential
      backoff_base_ms: 50
      max_backoff_ms: 200`;
}

function oneStep(namespace: string, callable: string, timeoutS: number, attempts: number): string {
  return `
name: ${namespace}
namespace_name: ${namespace}
version: "1.0.0"
steps:
  - name: only_step
    handler:
      callable: ${callable}${retry(attempts)}
    timeout_seconds: ${timeoutS}
`;
}

// Two root steps, in flight at the same time or not at all.
const BARRIER = `
name: barrier_ts
namespace_name: barrier_ts
version: "1.0.0"
steps:
${["left", "right"]
  .map((name) => `  - name: ${name}\n    handler:\n      callable: ts.barrier${retry(1)}\n    timeout_seconds: 10`)
  .join("\n")}
`;

export interface StepView {
  name: string;
  state: string;
  results: unknown;
  attempts: number;
  last_error: { error_type: string; message: string } | null;
}

/** Lines of a child's output, as they come. */
function lines(stream: unknown, onLine: (line: string) => void): void {
  createInterface({ input: stream }).on("line", onLine);
}

export class Engine {
  private constructor(
    readonly api: string,
    readonly databaseUrl: string,
    readonly configDir: string,
    private readonly home: string,
    private readonly server: ChildProcess,
  ) {}

  static async start(): Promise<Engine> {
    if (!fs.existsSync(SERVER)) {
      throw new Error(`${SERVER} not found: build it with \`cargo build --bins\``);
    }
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "tasker-ts-"));
    const templates = path.join(home, "templates");
    fs.mkdirSync(templates);
    // Tier 1's templates unchanged: tier 4 runs them with TypeScript handlers.
    for (const name of ["linear", "diamond"]) {
      fs.copyFileSync(path.join(ROOT, "scenarios", "templates", `${name}.yaml`), path.join(templates, `${name}.yaml`));
    }
    const write = (name: string, text: string) => fs.writeFileSync(path.join(templates, `${name}.yaml`), text);
    write("raising_ts", oneStep("raising_ts", "ts.range_error", 30, 1));
    write("slow_ts", oneStep("slow_ts", "ts.slow_first_attempt", 1, 2));
    write("hang_ts", oneStep("hang_ts", "ts.hang_first_attempt", 2, 3));
    write("flaky_ts", oneStep("flaky_ts", "ts.flaky", 30, 3));
    write("permanent_ts", oneStep("permanent_ts", "ts.permanent", 30, 3));
    write("barrier_ts", BARRIER);
    const configDir = path.join(home, "config");
    fs.mkdirSync(configDir);
    const toml = fs.readFileSync(path.join(ROOT, "config", "tasker.toml"), "utf8");
    fs.writeFileSync(path.join(configDir, "tasker.toml"), toml.replace(/^paths = .*$/m, `paths = ${JSON.stringify([templates])}`));

    const env = { ...process.env };
    delete env.DATABASE_URL;
    // Port 0: the server prints the address it got.
    const server = spawn(SERVER, ["--config-dir", configDir, "--local-postgres", "--bind", "127.0.0.1:0"], {
      cwd: home,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log: string[] = [];
    lines(server.stderr, (line) => log.push(line));
    let databaseUrl: string | null = null;
    const api = await new Promise<string>((resolve, reject) => {
      lines(server.stdout, (line) => {
        log.push(line);
        if (line.startsWith("PostgreSQL: ")) databaseUrl = line.slice("PostgreSQL: ".length).trim();
        const listening = /listening on (http:\/\/\S+)/.exec(line);
        if (listening) resolve(listening[1]);
      });
      server.once("exit", (code) => reject(new Error(`tasker-server exited (${code}):\n${log.join("\n")}`)));
    });
    if (databaseUrl === null) throw new Error(`tasker-server printed no PostgreSQL URL:\n${log.join("\n")}`);
    return new Engine(api, databaseUrl, configDir, home, server);
  }

  async stop(): Promise<void> {
    if (this.server.exitCode === null && this.server.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.server.once("exit", () => resolve()));
      this.server.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(this.home, { recursive: true, force: true });
  }

  private async call(method: string, route: string, body?: unknown): Promise<any> {
    const response = await fetch(this.api + route, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  async createTask(namespace: string, context: object, name: string = namespace): Promise<string> {
    const body = { namespace, name, version: "1.0.0", context };
    return (await this.call("POST", "/v1/tasks", body)).task_uuid;
  }

  async steps(task: string): Promise<Record<string, StepView>> {
    const steps: StepView[] = await this.call("GET", `/v1/tasks/${task}/workflow_steps`);
    return Object.fromEntries(steps.map((s) => [s.name, s]));
  }

  /** The task's final state ("complete" or "error"). */
  async wait(task: string): Promise<string> {
    const deadline = Date.now() + TIMEOUT_MS;
    while (Date.now() < deadline) {
      const { state } = await this.call("GET", `/v1/tasks/${task}`);
      if (state === "complete" || state === "error") return state;
      await new Promise<void>((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`task ${task} did not finish within ${TIMEOUT_MS} ms`);
  }

  /** A Worker running in this process until the returned stop(). */
  async worker(workerId = "node-test"): Promise<RunningWorker> {
    process.env.DATABASE_URL = this.databaseUrl;
    const worker = await Worker.start(HANDLERS, { configDir: this.configDir, workerId });
    return new RunningWorker(worker);
  }

  /** A worker in its own process (the CLI), once it says it is running. */
  async workerProcess(workerId: string): Promise<ChildProcess> {
    const child = spawn(
      process.execPath,
      [
        path.join(__dirname, "..", "src-ts", "cli.js"),
        "--handlers", path.join(__dirname, "handlers.js"),
        "--config-dir", this.configDir,
        "--worker-id", workerId,
      ],
      { env: { ...process.env, DATABASE_URL: this.databaseUrl }, stdio: ["ignore", "pipe", "inherit"] },
    );
    const first = await new Promise<string>((resolve) => {
      lines(child.stdout, resolve);
      child.once("exit", (code) => resolve(`(exited with ${code})`));
    });
    if (first !== `tasker-worker (typescript) ${workerId} running`) {
      child.kill("SIGKILL");
      throw new Error(`the worker process did not start: ${first}`);
    }
    return child;
  }
}

export class RunningWorker {
  private readonly running: Promise<void>;

  constructor(readonly worker: Worker) {
    this.running = worker.run();
  }

  /** Stops it gracefully; run() must resolve. */
  async stop(): Promise<void> {
    await this.worker.stop();
    await this.running;
  }
}
