// Tier 4's TypeScript handlers: tier 1's arithmetic (scenarios/src/arithmetic.rs)
// under tier 1's callable names, so the TypeScript worker serves the linear
// and diamond templates unchanged. Built by scripts/typescript-worker into
// target/typescript/scenarios/ffi/typescript/handlers.js:
//
//   node target/typescript/workers/typescript/src-ts/cli.js \
//     --handlers target/typescript/scenarios/ffi/typescript/handlers.js
//
// Results must be exact JS numbers (up to 2^53 - 1, where the Rust
// handlers go to 2^64 - 1); beyond that the step fails permanently, as an
// overflow does in Rust. Linear with even_number 2 ends at 65536.
import { Handler, PermanentError, Step } from "../../../workers/typescript/src-ts/index";

function nonNegative(step: Step, value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new PermanentError(
      `step '${step.stepName}': ${what} ${JSON.stringify(value)} is not a non-negative integer`,
    );
  }
  return value;
}

function fits(step: Step, n: number): number {
  if (!Number.isSafeInteger(n)) {
    throw new PermanentError(`step '${step.stepName}': result does not fit exactly in a JS number`);
  }
  return n;
}

/** input²: the task's even_number for a root step, else the one parent's
 * result. Async, as a handler doing I/O would be. */
export async function square(step: Step): Promise<number> {
  const parents = Object.values(step.dependencyResults);
  if (parents.length > 1) {
    throw new PermanentError(`step '${step.stepName}' expects one parent, has ${parents.length}`);
  }
  const n =
    parents.length === 1
      ? nonNegative(step, parents[0], "parent result")
      : nonNegative(step, step.taskContext?.even_number, "even_number");
  return fits(step, n * n);
}

/** The product of all parents' results, in name order. */
export class Multiply {
  call(step: Step): number {
    let product = 1;
    for (const name of Object.keys(step.dependencyResults).sort()) {
      product *= nonNegative(step, step.dependency(name), "parent result");
    }
    return fits(step, product);
  }
}

export const HANDLERS: Record<string, Handler> = {
  "linear.square": square,
  "diamond.square": square,
  "diamond.multiply": new Multiply(),
};
