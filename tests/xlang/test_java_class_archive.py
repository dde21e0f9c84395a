"""The JVM class-data archive: one Java job on Prism records it, later Java commands map it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import csv
from examples import xlang_runtime

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java")]

MAIN = "dev.liveinference.examples.ClassifyRows"


def _loaded_from(command: list, classes: list) -> dict:
    """Runs `command` with the JVM's class-load log on; returns each class's source."""
    logged = [command[0], "-Xlog:class+load=info", *command[1:]]
    result = subprocess.run(logged, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    sources = {}
    for line in result.stdout.splitlines():
        for name in classes:
            if f"[class,load] {name} source: " in line:
                sources[name] = line.split(" source: ", 1)[1]
    return sources


def test_a_recorded_archive_is_mapped_by_later_java_commands(service, models, prism,
                                                             tmp_path: Path, monkeypatch):
    """A Java job records the archive for this build; the next JVM loads Beam's and our
    classes from it, not from the jars."""
    monkeypatch.setattr(xlang_runtime, "CACHE", tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    archive = xlang_runtime.class_archive()
    if archive is None:
        pytest.skip(reason=f"{xlang_runtime.JAVA_JAR} does not hold the compiled classes: "
                           "run `make java-build`")
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(csv(models["x"][:20])) + "\n")
    predictions = tmp_path / "predictions.tsv"
    status, tail = xlang_runtime.record_class_archive(
        MAIN, f"--input={rows}", f"--model={models['v1']}", f"--predictions={predictions}",
        f"--deadLetters={tmp_path / 'dead.tsv'}", f"--expansionService={service.address}",
        *xlang_runtime.runner_args("prism", prism.address),
        log=tmp_path / "record.log", timeout=600,
    )
    assert status == 0, tail
    assert len(predictions.read_text().splitlines()) == 20
    assert archive.exists() and not list(archive.parent.glob("*.partial"))

    command = xlang_runtime.java_command(MAIN, "--help")
    assert f"-XX:SharedArchiveFile={archive}" in command
    classes = [MAIN, "org.apache.beam.sdk.Pipeline"]
    assert _loaded_from(command, classes) == {name: "shared objects file (top)"
                                              for name in classes}
