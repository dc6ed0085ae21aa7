"""Python handlers run by the engine's worker core, against a real engine."""

import signal
import time


def test_tier_1_linear_runs_to_n_to_the_16th_with_python_handlers(engine):
    with engine.worker():
        task = engine.create_task("linear", {"even_number": 2}, "linear_workflow")
        assert engine.wait(task) == "complete"
    steps = engine.steps(task)
    assert [steps[f"linear_step_{i}"]["results"] for i in range(1, 5)] == [4, 16, 256, 65536]


def test_tier_1_diamond_with_a_class_handler_converges(engine):
    with engine.worker():
        task = engine.create_task("diamond", {"even_number": 2}, "diamond_workflow")
        assert engine.wait(task) == "complete"
    assert engine.steps(task)["diamond_end"]["results"] == 256  # 2^8


def test_a_raising_handler_fails_with_its_exception_type_and_text(engine):
    with engine.worker():
        task = engine.create_task("raising_python", {})
        assert engine.wait(task) == "error"
    error = engine.steps(task)["only_step"]["last_error"]
    assert error["error_type"] == "ZeroDivisionError", error
    assert "division by zero" in error["message"], error
    assert "Traceback" in error["message"], error


def test_a_handler_past_its_timeout_is_retried(engine):
    with engine.worker():
        task = engine.create_task("slow_python", {})
        assert engine.wait(task) == "complete"
    step = engine.steps(task)["only_step"]
    assert step["attempts"] == 2, step
    assert step["results"] == {"attempt": 2}


def test_a_worker_process_killed_mid_step_leaves_the_step_to_another(engine):
    doomed = engine.worker_process("doomed")
    try:
        task = engine.create_task("hang_python", {})
        deadline = time.monotonic() + 30
        while engine.steps(task)["only_step"]["state"] != "in_progress":
            assert time.monotonic() < deadline, "the step was never claimed"
            time.sleep(0.05)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        doomed.kill()
    with engine.worker("survivor"):
        assert engine.wait(task) == "complete"
    step = engine.steps(task)["only_step"]
    assert step["results"] == {"attempt": 2}, step
