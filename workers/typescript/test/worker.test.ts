// TypeScript handlers run by the engine's worker core, against a real engine.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { Engine, RunningWorker } from "./engine";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const LONG = { timeout: 120_000 };

let engine: Engine;
before(async () => {
  engine = await Engine.start();
}, LONG);
after(async () => {
  await engine?.stop();
}, LONG);

/** Runs body with an in-process worker, stopping it gracefully after. */
async function withWorker(body: (running: RunningWorker) => Promise<void>, workerId?: string): Promise<void> {
  const running = await engine.worker(workerId);
  try {
    await body(running);
  } finally {
    await running.stop();
  }
}

test("tier-1 linear runs to n^16 with TypeScript handlers", LONG, async () => {
  let task = "";
  await withWorker(async () => {
    task = await engine.createTask("linear", { even_number: 2 }, "linear_workflow");
    assert.equal(await engine.wait(task), "complete");
  });
  const steps = await engine.steps(task);
  assert.deepEqual([1, 2, 3, 4].map((i) => steps[`linear_step_${i}`].results), [4, 16, 256, 65536]);
});

test("tier-1 diamond converges with an async and a class handler", LONG, async () => {
  let task = "";
  await withWorker(async () => {
    task = await engine.createTask("diamond", { even_number: 2 }, "diamond_workflow");
    assert.equal(await engine.wait(task), "complete");
  });
  const steps = await engine.steps(task);
  assert.equal(steps.diamond_branch_b.results, 16);
  assert.equal(steps.diamond_end.results, 256); // 2^8
});

test("a throwing handler fails the step with its error's name, text and stack", LONG, async () => {
  let task = "";
  await withWorker(async () => {
    task = await engine.createTask("raising_ts", {});
    assert.equal(await engine.wait(task), "error");
  });
  const error = (await engine.steps(task)).only_step.last_error;
  assert.ok(error, "the step's error");
  assert.equal(error.error_type, "RangeError");
  assert.match(error.message, /the dial goes to 11, not 12/);
  assert.match(error.message, /\n\s+at rangeError \(.*handlers\.js:\d+/);
});

test("a retryable error is retried, a PermanentError is not", LONG, async () => {
  let flaky = "";
  let permanent = "";
  await withWorker(async () => {
    flaky = await engine.createTask("flaky_ts", {});
    permanent = await engine.createTask("permanent_ts", {});
    assert.equal(await engine.wait(flaky), "complete");
    assert.equal(await engine.wait(permanent), "error");
  });
  const retried = (await engine.steps(flaky)).only_step;
  assert.equal(retried.attempts, 2);
  assert.deepEqual(retried.results, { attempt: 2 });
  const failed = (await engine.steps(permanent)).only_step;
  assert.equal(failed.attempts, 1, "max_attempts is 3, but the error is permanent");
  assert.equal(failed.last_error?.error_type, "PermanentError");
});

test("a handler past its timeout is retried", LONG, async () => {
  let task = "";
  await withWorker(async () => {
    task = await engine.createTask("slow_ts", {});
    assert.equal(await engine.wait(task), "complete");
  });
  const step = (await engine.steps(task)).only_step;
  assert.equal(step.attempts, 2);
  assert.deepEqual(step.results, { attempt: 2 });
});

test("steps run side by side: two handlers wait for each other", LONG, async () => {
  let task = "";
  await withWorker(async (running) => {
    assert.ok(running.worker.concurrency >= 2, `concurrency ${running.worker.concurrency}`);
    task = await engine.createTask("barrier_ts", {});
    assert.equal(await engine.wait(task), "complete");
  });
  const steps = await engine.steps(task);
  assert.equal(steps.left.results, "left");
  assert.equal(steps.right.results, "right");
});

test("the event loop stays free while the worker waits for steps", LONG, async () => {
  await withWorker(async () => {
    // Polls last 1 s each; a poll that blocked would hold timers that long.
    let worst = 0;
    for (const end = Date.now() + 2500; Date.now() < end; ) {
      const start = Date.now();
      await sleep(10);
      worst = Math.max(worst, Date.now() - start - 10);
    }
    assert.ok(worst < 300, `a 10 ms timer fired ${worst} ms late`);
  });
});

test("a worker process killed mid-step leaves the step to another", LONG, async () => {
  const doomed = await engine.workerProcess("doomed");
  let task = "";
  try {
    task = await engine.createTask("hang_ts", {});
    const deadline = Date.now() + 30_000;
    while ((await engine.steps(task)).only_step.state !== "in_progress") {
      assert.ok(Date.now() < deadline, "the step was never claimed");
      await sleep(50);
    }
    const exited = new Promise((resolve) => doomed.once("exit", (_code, signal) => resolve(signal)));
    doomed.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL");
  } finally {
    doomed.kill("SIGKILL");
  }
  await withWorker(async () => {
    assert.equal(await engine.wait(task), "complete");
  }, "survivor");
  const step = (await engine.steps(task)).only_step;
  assert.deepEqual(step.results, { attempt: 2 });
  assert.equal(step.attempts, 2);
});

test("the CLI stops gracefully on SIGTERM and exits 0", LONG, async () => {
  const child = await engine.workerProcess("graceful");
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve([code, signal])));
  child.kill("SIGTERM");
  assert.deepEqual(await exited, [0, null]);
});

test("the CLI refuses a bad handlers file with one line naming it, exit 2", async () => {
  const missing = path.join(os.tmpdir(), "no-such-tasker-handlers.js");
  const child = spawn(process.execPath, [path.join(__dirname, "..", "src-ts", "cli.js"), "--handlers", missing], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr }).on("line", (line) => stderr.push(line));
  const code = await new Promise((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
  assert.equal(code, 2);
  assert.match(stderr[0], /^typescript-worker: cannot load handlers file .*no-such-tasker-handlers\.js: /);
});
