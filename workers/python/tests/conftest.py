"""One engine for the session: tasker-server on a throwaway PostgreSQL
(--local-postgres), with the test templates; each test starts its own
Python worker(s) against it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tasker_worker import Worker

ROOT = Path(__file__).resolve().parents[3]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import handlers  # noqa: E402

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
SERVER = TARGET / "debug" / "tasker-server"
TIMEOUT_S = 60


def _one_step(namespace: str, callable_name: str, timeout_s: int, attempts: int) -> str:
    return f"""
name: {namespace}
namespace_name: {namespace}
version: "1.0.0"
steps:
  - name: only_step
    handler:
      callable: {callable_name}
    retry:
      retryable: true
      max_attempts: {attempts}
      backoff: exponential
      backoff_base_ms: 50
      max_backoff_ms: 200
    timeout_seconds: {timeout_s}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    if not SERVER.exists():
        pytest.fail(f"{SERVER} not found: build it with `cargo build --bins`")
    home = tmp_path_factory.mktemp("engine")
    templates = home / "templates"
    templates.mkdir()
    # Tier 1's templates unchanged: tier 4 runs them with Python handlers.
    for name in ("linear", "diamond"):
        shutil.copy(ROOT / "scenarios" / "templates" / f"{name}.yaml", templates)
    (templates / "raising_python.yaml").write_text(_one_step("raising_python", "py.divide_by_zero", 30, 1))
    (templates / "slow_python.yaml").write_text(_one_step("slow_python", "py.slow_first_attempt", 1, 2))
    (templates / "hang_python.yaml").write_text(_one_step("hang_python", "py.hang_first_attempt", 2, 3))
    config = home / "config"
    config.mkdir()
    toml = (ROOT / "config" / "tasker.toml").read_text()
    toml = re.sub(r'(?m)^paths = .*$', f'paths = ["{templates}"]', toml)
    (config / "tasker.toml").write_text(toml)
    port = _free_port()
    server = subprocess.Popen(
        [SERVER, "--config-dir", config, "--local-postgres", "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=home,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    database_url = None
    for line in server.stdout:
        if line.startswith("PostgreSQL: "):
            database_url = line.split(" ", 1)[1].strip()
        if "listening on" in line:
            break
    if database_url is None:
        server.kill()
        pytest.fail("tasker-server did not start: " + server.stdout.read())
    threading.Thread(target=server.stdout.read, daemon=True).start()  # drain
    yield Engine(f"http://127.0.0.1:{port}", database_url, config)
    server.terminate()
    server.wait(timeout=30)


class Engine:
    def __init__(self, api: str, database_url: str, config_dir: Path):
        self.api, self.database_url, self.config_dir = api, database_url, config_dir

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def create_task(self, namespace: str, context: dict, name: str | None = None) -> str:
        body = {"namespace": namespace, "name": name or namespace, "version": "1.0.0",
                "context": context}
        return self._call("POST", "/v1/tasks", body)["task_uuid"]

    def steps(self, task: str) -> dict[str, dict]:
        steps = self._call("GET", f"/v1/tasks/{task}/workflow_steps")
        return {s["name"]: s for s in steps}

    def wait(self, task: str) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            state = self._call("GET", f"/v1/tasks/{task}")["state"]
            if state in ("complete", "error"):
                return state
            time.sleep(0.05)
        raise AssertionError(f"task {task} did not finish within {TIMEOUT_S} s")

    def worker(self, worker_id: str = "pytest") -> "RunningWorker":
        os.environ["DATABASE_URL"] = self.database_url
        return RunningWorker(Worker(handlers.HANDLERS, str(self.config_dir), None, worker_id))

    def worker_process(self, worker_id: str) -> subprocess.Popen:
        """A worker in its own process (python -m tasker_worker)."""
        env = dict(os.environ, DATABASE_URL=self.database_url,
                   PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
        process = subprocess.Popen(
            [sys.executable, "-m", "tasker_worker", "--handlers", "handlers",
             "--config-dir", str(self.config_dir), "--worker-id", worker_id],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = process.stdout.readline()
        assert "running" in line, line + process.stdout.read()
        return process


class RunningWorker:
    """A Worker running on a thread for the length of a `with` block."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, name="tasker-worker")

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *_):
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the worker did not stop"
