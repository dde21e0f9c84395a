"""The PROCESS environment's boot program, started by a real runner (Prism): it provisions a
worker that runs the pipeline with the temp directory and log folder it was given, as a Flink
TaskManager's workers need (each TaskManager its own)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import apache_beam as beam

from conftest import process_environment
from liveinference_expansion.boot import write_boot_command


def _where(element: int) -> str:
    import tempfile

    return json.dumps({"element": element, "pid": os.getpid(), "tmpdir": tempfile.gettempdir(),
                       "semi": os.environ.get("SEMI_PERSISTENT_DIRECTORY", "")})


def test_a_worker_booted_by_the_runner_uses_the_given_temp_dir_and_log_folder(prism, tmp_path):
    taskmanager = tmp_path / "tm-1"
    (taskmanager / "bin").mkdir(parents=True, mode=0o700)
    command = write_boot_command(str(taskmanager / "bin"), tmpdir=str(taskmanager / "tmp"),
                                 log_dir=str(taskmanager / "workers"))
    assert stat.S_IMODE(Path(command).stat().st_mode) == 0o700
    options = process_environment(prism.address, command)
    out = tmp_path / "where.jsonl"
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline | beam.Create([1, 2, 3]) | beam.Map(_where)
             | beam.io.WriteToText(str(out), shard_name_template=""))

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(record["element"] for record in records) == [1, 2, 3]
    assert {record["tmpdir"] for record in records} == {str(taskmanager / "tmp")}
    assert all(Path(record["semi"]).parent == taskmanager / "tmp" for record in records)
    assert {record["pid"] for record in records} != {os.getpid()}
    (log,) = (taskmanager / "workers").glob("worker-*.log")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert f"temp dir {taskmanager / 'tmp'}" in log.read_text()
