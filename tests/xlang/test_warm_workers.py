"""The worker pool hands each job a worker process started before the job asked (imports
done), checks its assignment again in that process, and starts the next spare."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from liveinference_expansion.warm_workers import WarmWorkers

ROOT = Path(__file__).resolve().parents[2]


def _environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT / "expansion"), *sys.path]
    )
    return env


def _started_at(pid: int) -> float:
    """When the process started, in seconds since boot (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def test_a_worker_is_the_spare_started_before_the_request_and_checks_its_endpoint():
    workers = WarmWorkers(_environment())
    try:
        workers.prepare()
        asked = _uptime()
        # /proc counts in ticks of 1/100 s: let one pass, so that a worker started cold by this
        # request could not share the tick of `asked` with the spare.
        while _uptime() < asked + 0.02:
            pass
        worker = workers.start("job-1_env", "not-an-endpoint")
        assert _started_at(worker.pid) <= asked
        # The spare ran sdk_worker.main, which refused the endpoint.
        assert worker.wait(120) == 2
        second = workers.start("job-2_env", "also-not-an-endpoint")
        assert second.pid != worker.pid
        assert second.wait(120) == 2
    finally:
        workers.close()


def test_a_closed_pool_stops_its_spare_and_still_starts_workers_cold():
    workers = WarmWorkers(_environment())
    workers.prepare()
    started = time.monotonic()
    workers.close()
    assert time.monotonic() - started < 60
    workers.prepare()  # a closed pool starts no spare
    worker = workers.start("job-3_env", "nowhere")
    assert worker.wait(120) == 2
