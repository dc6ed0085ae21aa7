"""The test handlers: tier 4's (tier 1's arithmetic under tier 1's callable
names, from scenarios/ffi/python), and handlers that fail, hang or outlive
their timeout on their first attempt."""

import importlib.util
import time
from pathlib import Path

_TIER4 = Path(__file__).resolve().parents[3] / "scenarios" / "ffi" / "python" / "handlers.py"
_spec = importlib.util.spec_from_file_location("tier4_handlers", _TIER4)
tier4 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tier4)


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
    **tier4.HANDLERS,
    "py.divide_by_zero": divide_by_zero,
    "py.slow_first_attempt": slow_first_attempt,
    "py.hang_first_attempt": hang_first_attempt,
}
