"""Python step handlers for the Tasker workflow engine.

A handler is a function taking a :class:`Step`, or an object with a
``call(step)`` method, registered under the callable name its templates
give (``handler.callable``). It returns anything ``json.dumps`` accepts.
An exception fails the step: its class name is the error type, its text
and traceback the message; the step is retried (up to the template's
``max_attempts``) unless the exception is a :class:`PermanentError` or has
``retryable = False``. Claiming, leases, timeouts and retries are the
engine's own Rust worker's (``tasker_worker._native``); a step crosses the
boundary once each way, as JSON text.
"""

from __future__ import annotations

import json
import signal
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ._native import NativeWorker, WorkerStopped

__all__ = ["PermanentError", "Step", "Worker", "WorkerStopped"]

POLL_MS = 100


class PermanentError(Exception):
    """A failure no retry can fix: the step ends at once."""

    retryable = False


@dataclass(frozen=True)
class Step:
    """What a handler sees of its step."""

    task_uuid: str
    step_uuid: str
    step_name: str
    task_context: Any
    dependency_results: Mapping[str, Any]
    initialization: Any
    inputs: Any
    attempt: int
    child_steps: list[str] = field(default_factory=list)

    def dependency(self, name: str) -> Any:
        """A parent's result, or a PermanentError naming the missing parent."""
        try:
            return self.dependency_results[name]
        except KeyError:
            raise PermanentError(f"step '{self.step_name}' has no result from '{name}'") from None


Handler = Callable[[Step], Any]


def _callable_of(handler: Any) -> Handler:
    call = getattr(handler, "call", None)
    if callable(call):
        return call
    if callable(handler):
        return handler
    raise TypeError(f"a handler must be callable or have call(step); got {handler!r}")


class Worker:
    """Serves ``handlers`` (callable name -> handler) until stopped."""

    def __init__(
        self,
        handlers: Mapping[str, Any],
        config_dir: str = "config",
        env: str | None = None,
        worker_id: str | None = None,
        threads: int = 4,
    ) -> None:
        # Handlers run on `threads` threads: one that hangs or outlives its
        # timeout (a Python thread cannot be cancelled) holds only its own.
        self._threads = max(1, threads)
        self._handlers = {name: _callable_of(h) for name, h in handlers.items()}
        self._native = NativeWorker(list(self._handlers), config_dir, env, worker_id)
        self._stopping = threading.Event()
        self._stopper: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self._native.worker_id

    def run(self) -> None:
        """Runs steps until SIGTERM or SIGINT (or :meth:`stop`), then lets the
        steps already claimed finish and report before returning."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        others = [
            threading.Thread(target=self._serve, name=f"tasker-handler-{i}", daemon=True)
            for i in range(1, self._threads)
        ]
        for thread in others:
            thread.start()
        self._serve()
        # The other threads are done too, or run a handler the engine gave
        # up on (timed out; its result would be refused): not waited for.
        # Stopped comes as the worker drops its handlers; their results
        # are submitted after that, so wait for stop() itself.
        if self._stopper is not None:
            self._stopper.join()

    def _serve(self) -> None:
        while True:
            try:
                step = self._native.poll(POLL_MS)
            except WorkerStopped:
                return
            if step is not None:
                self._run_one(*step)

    def stop(self) -> None:
        """Stops claiming; :meth:`run` returns once in-flight steps are done."""
        if not self._stopping.is_set():
            self._stopping.set()
            # stop() waits for in-flight steps, which run() completes; run()
            # joins this thread before returning.
            self._stopper = threading.Thread(target=self._native.stop, name="tasker-stop")
            self._stopper.start()

    def _run_one(self, step_id: int, callable_name: str, step_name: str, payload: str) -> None:
        handler = self._handlers[callable_name]
        try:
            result = handler(Step(**json.loads(payload)))
            text = json.dumps(result)
        except Exception as error:  # every failure is reported, never lost
            message = f"{error}\n{traceback.format_exc()}"
            retryable = bool(getattr(error, "retryable", True))
            self._native.complete_failure(step_id, type(error).__name__, message, retryable)
            return
        self._native.complete_success(step_id, text)
