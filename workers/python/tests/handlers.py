"""The test handlers: tier 1's arithmetic, and handlers that fail, hang
or outlive their timeout on their first attempt."""

import time


def square(step):
    parents = list(step.dependency_results.values())
    n = parents[0] if parents else step.task_context["even_number"]
    return n * n


class Multiply:
    """A class handler: call(step)."""

    def call(self, step):
        product = 1
        for name in sorted(step.dependency_results):
            product *= step.dependency(name)
        return product


def divide_by_zero(step):
    return 1 / 0


def slow_first_attempt(step):
    if step.attempt == 1:
        time.sleep(3)  # the step's timeout is 1 s
    return {"attempt": step.attempt}


def hang_first_attempt(step):
    if step.attempt == 1:
        time.sleep(3600)  # until the process is killed
    return {"attempt": step.attempt}


HANDLERS = {
    "py.square": square,
    "py.multiply": Multiply(),
    "py.divide_by_zero": divide_by_zero,
    "py.slow_first_attempt": slow_first_attempt,
    "py.hang_first_attempt": hang_first_attempt,
}
