"""The Java side, for real: JUnit (Maven Surefire), and the ClassifyRows example pipeline
end to end on Prism and on Flink (local mode), with Python preprocessing, dead letters, and a
second model dropped into the watched folder mid-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy
import pytest

from conftest import csv, load
from examples import xlang_runtime

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java")]

GOOD_PER_PART = 20
BAD_PART1 = ["1,two,3,4"]
BAD_PART2 = ["1,2,3", "nan,0,0,0"]


def test_junit_suite_passes(service, models, prism):
    """Runs the JUnit tests, the ones against this session's expansion service included, and
    the TLS ones and Beam's stock RunInference on Prism, which start their own `liveinference
    serve` with this Python."""
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(xlang_runtime.ROOT / "java" / "pom.xml"), "test",
         f"-Dliveinference.service={service.address}", f"-Dliveinference.model={models['v1']}",
         f"-Dliveinference.python={sys.executable}",
         f"-Dliveinference.jobEndpoint={prism.address}"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    reports = list((xlang_runtime.ROOT / "java" / "target" / "surefire-reports").glob("TEST-*.xml"))
    suites = [ElementTree.parse(report).getroot() for report in reports]
    tests = sum(int(suite.get("tests")) for suite in suites)
    failed = sum(int(suite.get("failures")) + int(suite.get("errors")) for suite in suites)
    skipped = sum(int(suite.get("skipped")) for suite in suites)
    assert tests >= 14 and failed == 0 and skipped == 0
    print(f"JUnit: {tests} passed, {failed} failed")


def _write_atomically(path: Path, lines: list) -> None:
    temporary = path.with_name("." + path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in lines))
    os.replace(temporary, path)


def _lines(path: Path) -> list:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(condition, process: subprocess.Popen, seconds: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the Java pipeline exited ({process.returncode}) before {what}:\n"
                        + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {seconds}s:\n"
                        + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        time.sleep(0.5)


def classify_with_a_model_swap(kind: str, endpoint: str, service, models, tmp_path: Path,
                               corrupt_first: bool = False, extra: tuple = ()) -> None:
    """Runs ClassifyRows on a watched input folder, swaps the model between two input files,
    and checks every row, every prediction and the swap. With `corrupt_first`, a corrupt
    model file lands before v2: it must reach the dead letters and never serve. `extra`:
    more ClassifyRows options."""
    watched = tmp_path / "models"
    watched.mkdir()
    v1, v2 = watched / "v1.pkl", watched / "v2.pkl"
    shutil.copy(models["v1"], v1)
    past = time.time() - 60
    os.utime(v1, (past, past))
    inputs = tmp_path / "in"
    inputs.mkdir()
    x = models["x"]
    part1 = csv(x[:GOOD_PER_PART]) + BAD_PART1
    part2 = csv(x[GOOD_PER_PART:2 * GOOD_PER_PART]) + BAD_PART2
    predictions, dead = tmp_path / "predictions.tsv", tmp_path / "dead.tsv"
    _write_atomically(inputs / "part1.csv", part1)
    log = tmp_path / "java.log"
    command = xlang_runtime.java_command(
        "dev.liveinference.examples.ClassifyRows",
        f"--input={inputs}/*.csv", "--expectFiles=2", "--watchInputSeconds=120",
        f"--model={v1}", f"--watchPattern={watched}/*.pkl", "--refreshSeconds=1",
        f"--predictions={predictions}", f"--deadLetters={dead}",
        f"--expansionService={service.address}",
        *xlang_runtime.runner_args(kind, endpoint), *extra,
    )
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: len(_lines(predictions)) >= GOOD_PER_PART, process, 240, log,
                  "predictions of the first file")
        if corrupt_first:
            (watched / ".broken.tmp").write_bytes(b"not a pickle")
            os.replace(watched / ".broken.tmp", watched / "v1_broken.pkl")
            time.sleep(3)
        shutil.copy(models["v2"], watched / ".v2.pkl.tmp")
        os.replace(watched / ".v2.pkl.tmp", v2)
        time.sleep(4)  # a few refresh intervals
        _write_atomically(inputs / "part2.csv", part2)
        assert process.wait(timeout=300) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        if process.poll() is None:
            process.kill()

    rows = [line.split("\t") for line in _lines(predictions)]
    dead_rows = [line.split("\t") for line in _lines(dead)]
    model_loads = [row for row in dead_rows if row[1] in ("load_model", "validate")]
    dead_rows = [row for row in dead_rows if row not in model_loads]
    if corrupt_first:
        assert model_loads and all("v1_broken.pkl" in " ".join(row) for row in model_loads), \
            model_loads
    else:
        assert model_loads == []
    # Every input row is either predicted or dead-lettered, once.
    assert len(rows) + len(dead_rows) == len(part1) + len(part2)
    examples = [tuple(float(v) for v in example.strip("[]").split(",")) for example, _, _ in rows]
    assert sorted(examples) == sorted(tuple(row) for row in x[:2 * GOOD_PER_PART])
    stages = {element: stage for element, stage, _ in dead_rows}
    assert stages == {"1,two,3,4": "preprocess[0]", "[1.0, 2.0, 3.0]": "inference",
                      "[nan, 0.0, 0.0, 0.0]": "inference"}
    assert "column 1 of '1,two,3,4' is 'two', not a number" in dead_rows[0][2] or any(
        "column 1 of '1,two,3,4' is 'two'" in error for _, _, error in dead_rows)
    # Each prediction is what the model it names predicts.
    fitted = {str(v1): load(models["v1"]), str(v2): load(models["v2"])}
    for example, (_, inference, model_id) in zip(examples, rows):
        assert model_id in fitted, model_id
        assert int(inference) == int(fitted[model_id].predict(numpy.array([example]))[0])
    # The model changed after the drop: the first file went to v1, the second mostly to v2.
    first = {tuple(row) for row in x[:GOOD_PER_PART]}
    by_model_first = {model for example, (_, _, model) in zip(examples, rows) if example in first}
    by_model_second = [model for example, (_, _, model) in zip(examples, rows)
                       if example not in first]
    assert by_model_first == {str(v1)}
    assert by_model_second.count(str(v2)) > len(by_model_second) / 2, by_model_second
    assert rows[-1][2] == str(v2)


def test_java_pipeline_on_prism_predicts_dead_letters_and_switches_model(
    prism, service, models, tmp_path
):
    classify_with_a_model_swap("prism", prism.address, service, models, tmp_path,
                               corrupt_first=True)


def test_java_rows_crossing_in_batches_on_prism_keep_dead_letters_and_model_ids(
    prism, service, models, tmp_path
):
    """The same run with rows crossing to Python 16 at a time (withCrossingBatch)."""
    classify_with_a_model_swap("prism", prism.address, service, models, tmp_path,
                               corrupt_first=True, extra=("--crossingBatch=16",))


def test_java_pipeline_on_flink_local_predicts_dead_letters_and_switches_model(
    flink, process_service, models, tmp_path
):
    classify_with_a_model_swap("flink", flink.address, process_service, models, tmp_path)
