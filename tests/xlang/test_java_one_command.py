"""One command for a Java user (issue 14 items 1 and 5), end to end on Prism: the Java
programs get no expansion service address, so the transform starts `liveinference serve`
from the configured Python on a free port and stops it when the program ends; and a model per
key, scikit-learn for some keys and ONNX for others, from Java's `ofKVs`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from conftest import csv, load
from examples import xlang_runtime
from xlang_framework_models import write_onnx_classifier

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java")]

BAD_ROWS = ["1,two,3,4", "1,2,3"]


def _started_service_pid(log: Path) -> int:
    text = log.read_text(errors="replace")
    match = re.search(r"started liveinference serve \(pid (\d+)\) at (\S+)", text)
    assert match, "the Java program did not start a service:\n" + text[-3000:]
    return int(match.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_java(main_class: str, args: list, log: Path, env_python: bool = False) -> None:
    saved = os.environ.get("LIVEINFERENCE_PYTHON")
    if env_python:
        os.environ["LIVEINFERENCE_PYTHON"] = sys.executable
    try:
        status, tail = xlang_runtime.run_logged(
            xlang_runtime.java_command(main_class, *args), log, timeout=600)
    finally:
        if saved is None:
            os.environ.pop("LIVEINFERENCE_PYTHON", None)
        else:
            os.environ["LIVEINFERENCE_PYTHON"] = saved
    assert status == 0, f"{main_class} failed ({status}):\n{tail}"


def test_java_program_starts_and_stops_its_own_service(prism, models, tmp_path):
    x = models["x"][:30]
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(csv(x) + BAD_ROWS) + "\n")
    predictions, dead = tmp_path / "predictions.tsv", tmp_path / "dead.tsv"
    log = tmp_path / "java.log"
    _run_java("dev.liveinference.examples.ClassifyRows", [
        f"--input={rows}", f"--model={models['v1']}", f"--predictions={predictions}",
        f"--deadLetters={dead}", f"--python={sys.executable}",
        *xlang_runtime.runner_args("prism", prism.address),
    ], log)
    pid = _started_service_pid(log)
    assert not _alive(pid), f"the service the Java program started (pid {pid}) still runs"
    assert f"stopped liveinference serve (pid {pid})" in log.read_text(errors="replace")
    expected = dict(zip((tuple(row) for row in x), load(models["v1"]).predict(x)))
    got = {}
    for line in predictions.read_text().splitlines():
        example, label, model_id = line.split("\t")
        got[tuple(float(v) for v in example.strip("[]").split(","))] = int(label)
        assert model_id == str(models["v1"])
    assert got == {features: int(label) for features, label in expected.items()}
    dead_letters = {tuple(line.split("\t")[:2]) for line in dead.read_text().splitlines()}
    assert dead_letters == {("1,two,3,4", "preprocess[0]"), ("[1.0, 2.0, 3.0]", "inference")}


def test_java_model_per_key_with_onnx_and_sklearn(prism, models, tmp_path):
    """Keys a and b use the scikit-learn model v1, key c an ONNX model with flipped labels;
    the service is started from LIVEINFERENCE_PYTHON."""
    pytest.importorskip("skl2onnx")
    flipped = tmp_path / "flipped.onnx"
    onnx_model = write_onnx_classifier(flipped, models["x"], flip=True)
    x = models["x"][:30]
    keys = ["a", "b", "c"] * 10
    rows = tmp_path / "rows.txt"
    rows.write_text("\n".join(f"{key};{line}" for key, line in zip(keys, csv(x)))
                    + "\nzz;1,2,3,4\n")
    predictions, dead = tmp_path / "predictions.tsv", tmp_path / "dead.tsv"
    log = tmp_path / "java.log"
    _run_java("dev.liveinference.examples.ClassifyByKey", [
        f"--input={rows}", f"--predictions={predictions}", f"--deadLetters={dead}",
        f"--keyModels=a,b=sklearn_numpy={models['v1']};c=onnx_numpy={flipped}",
        *xlang_runtime.runner_args("prism", prism.address),
    ], log, env_python=True)
    assert not _alive(_started_service_pid(log))
    sklearn_model = load(models["v1"])
    expected = {
        (key, tuple(row)): (
            int((onnx_model if key == "c" else sklearn_model).predict(row[None])[0]),
            str(flipped if key == "c" else models["v1"]),
        )
        for key, row in zip(keys, x)
    }
    got = {}
    for line in predictions.read_text().splitlines():
        key, example, label, model_id = line.split("\t")
        got[(key, tuple(float(v) for v in example.strip("[]").split(",")))] = (int(label), model_id)
    assert got == expected
    dead_letters = [line.split("\t") for line in dead.read_text().splitlines()]
    assert len(dead_letters) == 1 and "zz" in dead_letters[0][0], dead_letters
