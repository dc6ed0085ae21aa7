"""Tier 4's Python handlers: tier 1's arithmetic (scenarios/src/arithmetic.rs)
under tier 1's callable names, so the Python worker serves the linear and
diamond templates unchanged.

    python -m tasker_worker --handlers handlers   (with this folder on PYTHONPATH)
"""

from tasker_worker import PermanentError, Step

U64_MAX = 2**64 - 1


def _non_negative(step: Step, value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PermanentError(f"step '{step.step_name}': {what} {value!r} is not a non-negative integer")
    return value


def _fits(step: Step, n: int) -> int:
    if n > U64_MAX:
        raise PermanentError(f"step '{step.step_name}': result does not fit in 64 bits")
    return n


def square(step: Step) -> int:
    """input²: the task's even_number for a root step, else the one parent's result."""
    parents = list(step.dependency_results.values())
    if len(parents) > 1:
        raise PermanentError(f"step '{step.step_name}' expects one parent, has {len(parents)}")
    if parents:
        n = _non_negative(step, parents[0], "parent result")
    else:
        n = _non_negative(step, step.task_context.get("even_number"), "even_number")
    return _fits(step, n * n)


class Multiply:
    """The product of all parents' results, in name order."""

    def call(self, step: Step) -> int:
        product = 1
        for name in sorted(step.dependency_results):
            product *= _non_negative(step, step.dependency(name), "parent result")
        return _fits(step, product)


HANDLERS = {
    "linear.square": square,
    "diamond.square": square,
    "diamond.multiply": Multiply(),
}
