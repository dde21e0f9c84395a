"""Warm SDK workers: the next job's Python worker is started before the job asks for it.

A fresh Python worker spends seconds of CPU importing Beam's worker, liveinference and
scikit-learn before it can answer the runner; Prism and Flink ask the pool for a new worker
for every job, so every job used to wait for those imports. `WarmWorkers` keeps one spare
process that has done its imports and waits on its standard input. A StartWorker request
hands the spare its worker id and control endpoint (one JSON line, checked again in the
spare: never source code), and a new spare starts in the background for the next job. Each
job still gets a process of its own, so nothing is shared between jobs; only the imports were
done ahead of time.

The spare is `python -m liveinference_expansion.warm_workers MODULE...`; once assigned it runs
`liveinference_expansion.sdk_worker.main`, as a worker started cold does.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Dict, List, Optional

__all__ = ["PRELOADED", "WarmWorkers", "child_environment", "main", "preloaded_modules"]

_LOGGER = logging.getLogger(__name__)

# What every job's worker imports before its first bundle; scikit-learn when installed (the
# common model), other frameworks import as their model loads.
PRELOADED = (
    "liveinference_expansion.sdk_worker",
    "apache_beam.runners.worker.bundle_processor",
    "liveinference_expansion.transform",
)
_OPTIONAL = ("sklearn.linear_model",)


def preloaded_modules() -> List[str]:
    """What a spare worker imports ahead of its job: `PRELOADED` and scikit-learn if installed."""
    optional = [name for name in _OPTIONAL
                if importlib.util.find_spec(name.split(".")[0]) is not None]
    return [*PRELOADED, *optional]


def child_environment() -> Dict[str, str]:
    """This process's environment, with its import path first on PYTHONPATH, for workers."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        path for path in [*sys.path, os.environ.get("PYTHONPATH", "")] if path
    )
    return environment


class WarmWorkers:
    """Starts SDK workers for a pool, each from a spare process started ahead of time.

    Args:
        environment: The environment of the worker processes.
    """

    def __init__(self, environment: Dict[str, str]) -> None:
        self._environment = environment
        self._lock = threading.Lock()
        self._spare: Optional[subprocess.Popen] = None
        self._closed = False

    def _new_spare(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "liveinference_expansion.warm_workers", *preloaded_modules()],
            env=self._environment, stdin=subprocess.PIPE, stdout=sys.stderr.fileno(),
            close_fds=True, text=True,
        )

    def prepare(self) -> None:
        """Starts a spare worker if there is none (and the pool is open)."""
        with self._lock:
            if self._closed or (self._spare is not None and self._spare.poll() is None):
                return
            self._spare = self._new_spare()

    def start(self, worker_id: str, control_endpoint: str) -> subprocess.Popen:
        """Starts the worker `worker_id` for the runner at `control_endpoint`.

        Takes the spare (starting one now if it is missing or ended) and starts the next
        spare in the background.

        Args:
            worker_id: The worker id the runner gave (already checked by the pool).
            control_endpoint: The runner's control endpoint (already checked by the pool).

        Returns:
            The worker's process.

        Raises:
            OSError: if no worker process can be started or handed its assignment.
        """
        with self._lock:
            worker, self._spare = self._spare, None
            if worker is None or worker.poll() is not None:
                worker = self._new_spare()
        assert worker.stdin is not None
        worker.stdin.write(json.dumps({"worker_id": worker_id,
                                       "control_endpoint": control_endpoint}) + "\n")
        worker.stdin.close()
        threading.Thread(target=self.prepare, name="warm-worker", daemon=True).start()
        return worker

    def close(self) -> None:
        """Stops the spare; workers already handed out are the pool's to stop."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare.stdin is not None:
                spare.stdin.close()
            try:
                spare.wait(5.0)
            except subprocess.TimeoutExpired:
                spare.kill()
                spare.wait()


def main(argv: Optional[List[str]] = None) -> int:
    """The spare: imports the given modules, then runs the worker its standard input names.

    Args:
        argv: Module names to import first; defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 0 when closed without an assignment or after the worker ran, 2 for
        a malformed assignment (`sdk_worker.main` checks the endpoint again).
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in sys.argv[1:] if argv is None else argv:
        importlib.import_module(name)
    line = sys.stdin.readline()
    if not line:
        return 0
    try:
        assignment = json.loads(line)
        argv = ["--worker-id", str(assignment["worker_id"]),
                "--control-endpoint", str(assignment["control_endpoint"])]
    except (ValueError, KeyError, TypeError) as error:
        _LOGGER.error("malformed worker assignment %r: %s", line[:200], error)
        return 2
    from apache_beam.runners.worker.worker_id_interceptor import WorkerIdInterceptor

    from liveinference_expansion import sdk_worker

    # Beam reads WORKER_ID once, at import, for the channels it opens without an id (state):
    # set it as a worker started with WORKER_ID in its environment would have it.
    os.environ["WORKER_ID"] = argv[1]
    WorkerIdInterceptor._worker_id = argv[1]
    return sdk_worker.main(argv)

if __name__ == "__main__":
    sys.exit(main())
