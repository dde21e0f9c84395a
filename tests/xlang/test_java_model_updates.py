"""Event-mode refresh from Java, end to end on Prism: a streaming Java pipeline
(ClassifyWithUpdates) classifies row files as they appear, while model update messages sent
from the Java side (JSON lines in files a Java source watches) swap the model. A malformed
message, a corrupt model file and a model that fails the canary rows reach Java's dead letters
and never serve; a good update takes over; every row is predicted or dead-lettered once."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import time
from pathlib import Path
from typing import Callable, List

import numpy
import pytest

from conftest import FEATURES, csv, load
from examples import xlang_runtime

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java")]

ROWS_PER_FILE = 6
MAX_FILES = 200 // ROWS_PER_FILE
IDLE_SECONDS = 20
HEARTBEAT_SECONDS = 5


class Run:
    """The Java program, its folders and outputs, and the files the test wrote."""

    def __init__(self, root: Path) -> None:
        self.inputs, self.updates = root / "in", root / "updates"
        self.inputs.mkdir()
        self.updates.mkdir()
        self.predictions, self.dead = root / "predictions.tsv", root / "dead.tsv"
        self.log = root / "java.log"
        self.process = None
        self.files: List[List[str]] = []
        self._written = 0
        self._heartbeat = time.monotonic()

    def write(self, folder: Path, name: str, lines: List[str]) -> None:
        temporary = folder / f".{name}.tmp"
        temporary.write_text("".join(line + "\n" for line in lines))
        os.replace(temporary, folder / name)
        self._written += 1
        self._heartbeat = time.monotonic()

    def rows(self, x: numpy.ndarray) -> None:
        index = len(self.files)
        good = csv(x[index * ROWS_PER_FILE:(index + 1) * ROWS_PER_FILE])
        lines = good + [f"{index},two,3,4"]
        self.files.append(lines)
        self.write(self.inputs, f"part{index:02d}.csv", lines)

    def update(self, name: str, *messages: str) -> None:
        self.write(self.updates, name, list(messages))

    def wanted(self, x: numpy.ndarray, index: int) -> set:
        """The good rows of file `index`."""
        return {tuple(row) for row in x[index * ROWS_PER_FILE:(index + 1) * ROWS_PER_FILE]}

    def file_done(self, x: numpy.ndarray) -> bool:
        """Whether every row of the last file is predicted or dead-lettered."""
        index = len(self.files) - 1
        predicted = {_example(row[0]) for row in self.predicted()}
        dead = {row[0] for row in self.dead_letters()}
        return self.wanted(x, index) <= predicted and f"{index},two,3,4" in dead

    def rows_until(self, x: numpy.ndarray, condition: Callable[[], bool], what: str) -> None:
        """Writes row files, each once the previous one is accounted for, until
        `condition` holds after one (model rejections are reported with a batch)."""
        while True:
            self.rows(x)
            self.wait(lambda: self.file_done(x), f"predictions of file {len(self.files) - 1}")
            if condition():
                return
            if len(self.files) >= MAX_FILES:
                pytest.fail(f"no {what} after {MAX_FILES} files:\n{self.log_tail()}")

    def predicted(self) -> List[List[str]]:
        text = self.predictions.read_text() if self.predictions.exists() else ""
        return [line.split("\t") for line in text.splitlines()]

    def dead_letters(self) -> List[List[str]]:
        text = self.dead.read_text() if self.dead.exists() else ""
        return [line.split("\t") for line in text.splitlines()]

    def wait(self, condition: Callable[[], bool], what: str, seconds: float = 240) -> None:
        """Waits for `condition`; meanwhile an empty file now and then keeps both watched
        folders from going idle (the pipeline ends after IDLE_SECONDS without a new file)."""
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the Java pipeline exited ({self.process.returncode}) before "
                            f"{what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {seconds}s:\n{self.log_tail()}")
            if time.monotonic() - self._heartbeat > HEARTBEAT_SECONDS:
                self.write(self.inputs, f"heartbeat{self._written:03d}.csv", [])
                self.write(self.updates, f"heartbeat{self._written:03d}.json", [])
            time.sleep(0.5)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _example(text: str) -> tuple:
    return tuple(float(value) for value in text.strip("[]").split(","))


def test_on_prism_updates_sent_from_java_swap_the_model_and_bad_ones_are_dead_letters(
    prism, service, models, tmp_path
):
    updates_from_java("prism", prism.address, service, models, tmp_path)


@pytest.mark.skipif(
    os.environ.get("LIVEINFERENCE_UNSTABLE_TESTS") != "1",
    reason="Beam 2.62's portable Flink runner re-runs the Java file watches (Watch, a "
    "splittable DoFn) without their 500 ms resume delay (its streaming SDF support is "
    "incomplete: apache/beam#19637, fixed after 2.62): the harness polled about 530 times a "
    "second, each row file took about 25 s to come out on 2 cores, and in the last run every "
    "check passed but the job did not end within 80 s of its watches' idle stop; the same "
    "pipeline runs on Prism above in make test; run it with LIVEINFERENCE_UNSTABLE_TESTS=1",
)
def test_on_flink_updates_sent_from_java_swap_the_model_and_bad_ones_are_dead_letters(
    flink, process_service, models, tmp_path
):
    updates_from_java("flink", flink.address, process_service, models, tmp_path)


def updates_from_java(kind: str, endpoint: str, service, models, tmp_path: Path) -> None:
    """Runs ClassifyWithUpdates on `kind`; sends bad updates, then a good one, from the Java
    side while row files stream in; checks every row, prediction and dead letter."""
    run = Run(tmp_path)
    x = models["x"]
    v1, v2 = str(models["v1"]), str(models["v2"])
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"not a pickle")
    three = tmp_path / "three_features.pkl"
    train_three(three)
    malformed = '{"model_name": "no path"}'
    run.rows(x)
    command = xlang_runtime.java_command(
        "dev.liveinference.examples.ClassifyWithUpdates",
        f"--input={run.inputs}/*.csv", f"--updates={run.updates}/*.json",
        f"--model={v1}", "--canaries=0.5,0.5,0.5,0.5;-1,0,2,0",
        f"--predictions={run.predictions}", f"--deadLetters={run.dead}",
        f"--expansionService={service.address}", f"--idleSeconds={IDLE_SECONDS}",
        *xlang_runtime.runner_args(kind, endpoint),
    )
    with open(run.log, "wb") as out:
        run.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def seen(stage: str, text: str) -> Callable[[], bool]:
        return lambda: any(row[1] == stage and text in " ".join(row)
                           for row in run.dead_letters())

    try:
        run.wait(lambda: run.file_done(x), "predictions of the first file")
        run.update("1-bad.json", malformed, json.dumps({"model_path": str(corrupt)}))
        run.rows_until(x, lambda: seen("model_update", "no path")()
                       and seen("load_model", str(corrupt))(),
                       "dead letters of the malformed message and the corrupt model")
        run.update("2-canaries.json", json.dumps({"model_path": str(three)}))
        run.rows_until(x, seen("validate", str(three)), "dead letter of the canary failure")
        before_v2 = len(run.files)
        run.update("3-good.json", json.dumps({"model_path": v2, "model_name": "v2"}))
        run.rows_until(
            x,
            lambda: run.wanted(x, len(run.files) - 1) <= {
                _example(row[0]) for row in run.predicted() if row[2] == v2},
            "file predicted by v2 alone",
        )
        assert run.process.wait(timeout=IDLE_SECONDS * 4) == 0, run.log_tail()
    finally:
        if run.process.poll() is None:
            run.process.kill()

    fitted = {v1: load(models["v1"]), v2: load(models["v2"])}
    file_of = {row: index for index in range(len(run.files)) for row in run.wanted(x, index)}
    predicted = run.predicted()
    # Every good row predicted once, by v1 or v2 only (never a rejected model), as that model
    # predicts it; v1 alone until the good update was sent.
    assert sorted(_example(row[0]) for row in predicted) == sorted(file_of)
    for example, inference, model_id in predicted:
        assert model_id in fitted, model_id
        features = _example(example)
        assert int(inference) == int(fitted[model_id].predict(numpy.array([features]))[0])
        if file_of[features] < before_v2:
            assert model_id == v1, (example, model_id)
    # Every bad row dead-lettered once at preprocessing: inputs = outputs + dead letters.
    dead = run.dead_letters()
    rows_dead = [row for row in dead if row[1] == "preprocess[0]"]
    assert sorted(row[0] for row in rows_dead) == sorted(
        f"{index},two,3,4" for index in range(len(run.files)))
    assert len(predicted) + len(rows_dead) == sum(len(lines) for lines in run.files)
    # The bad updates' dead letters, as sent from Java, and nothing else.
    updates_dead = [row for row in dead if row[1] != "preprocess[0]"]
    assert {row[1] for row in updates_dead} == {"model_update", "load_model", "validate"}
    assert [row[0] for row in updates_dead if row[1] == "model_update"] == [malformed]
    assert all(str(corrupt) in " ".join(row) for row in updates_dead if row[1] == "load_model")
    assert all(str(three) in row[0] and "canary" in row[2]
               for row in updates_dead if row[1] == "validate")


def train_three(path: Path) -> None:
    """A classifier of three features: it loads, but the four-feature canaries fail."""
    from sklearn.linear_model import LogisticRegression

    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(50, FEATURES - 1))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path.write_bytes(pickle.dumps(model))
