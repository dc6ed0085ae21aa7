// The test handlers: tier 4's (tier 1's arithmetic under tier 1's callable
// names, from scenarios/ffi/typescript), and handlers that throw, hang,
// outlive their timeout or need a partner step in flight beside them.
import { Handler, PermanentError, Step } from "../src-ts/index";
import { HANDLERS as TIER4 } from "../../../scenarios/ffi/typescript/handlers";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function rangeError(): never {
  throw new RangeError("the dial goes to 11, not 12");
}

async function slowFirstAttempt(step: Step) {
  if (step.attempt === 1) await sleep(3000); // the step's timeout is 1 s
  return { attempt: step.attempt };
}

async function hangFirstAttempt(step: Step) {
  if (step.attempt === 1) await sleep(3_600_000); // until the process is killed
  return { attempt: step.attempt };
}

// Fails once with a retryable error, then succeeds.
function flaky(step: Step) {
  if (step.attempt === 1) throw new TypeError("not yet");
  return { attempt: step.attempt };
}

function permanent(): never {
  throw new PermanentError("no retry can fix this");
}

// Both root steps of a barrier task wait here for each other: they finish
// only if the worker runs two handlers at once.
const arrived = new Map<string, number>();
async function barrier(step: Step) {
  arrived.set(step.taskUuid, (arrived.get(step.taskUuid) ?? 0) + 1);
  for (let waited = 0; (arrived.get(step.taskUuid) ?? 0) < 2; waited += 10) {
    if (waited >= 5000) throw new PermanentError("the other step never ran beside this one");
    await sleep(10);
  }
  return step.stepName;
}

export const HANDLERS: Record<string, Handler> = {
  ...TIER4,
  "ts.range_error": rangeError,
  "ts.slow_first_attempt": slowFirstAttempt,
  "ts.hang_first_attempt": hangFirstAttempt,
  "ts.flaky": flaky,
  "ts.permanent": permanent,
  "ts.barrier": barrier,
};
