"""python -m tasker_worker: a worker serving the handlers of a module.

The module names its handlers in ``HANDLERS`` (callable name -> handler);
configuration is tasker-worker's (``--config-dir``, ``TASKER_ENV``,
``DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasker_worker", description=__doc__)
    parser.add_argument("--handlers", required=True, help="module with HANDLERS, e.g. scenarios_py.handlers")
    parser.add_argument("--config-dir", default=os.environ.get("TASKER_CONFIG_DIR", "config"))
    parser.add_argument("--env", default=os.environ.get("TASKER_ENV"))
    parser.add_argument("--worker-id")
    parser.add_argument("--threads", type=int, default=4, help="threads running handlers")
    args = parser.parse_args(argv)
    module = importlib.import_module(args.handlers)
    handlers = getattr(module, "HANDLERS", None)
    if not isinstance(handlers, dict) or not handlers:
        print(f"Error: {args.handlers} has no HANDLERS dict (callable name -> handler)", file=sys.stderr)
        return 2
    try:
        worker = Worker(handlers, args.config_dir, args.env, args.worker_id, args.threads)
    except RuntimeError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(f"tasker-worker (python) {worker.worker_id} running", flush=True)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
