"""The multi-model examples run end to end and print summaries that add up."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    done = subprocess.run(
        [sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return float(found.group(1))


def test_ab_split_sends_a_fixed_share_to_the_challenger_and_compares_the_models():
    out = _run("examples/ab_split.py")
    assert "rows: 2000" in out
    challenger = _number(r"traffic to challenger: (\d+) of 2000", out)
    assert 0.15 < challenger / 2000 < 0.25
    champion_rows = _number(r"champion +champion-logistic\.pkl: (\d+) rows", out)
    challenger_rows = _number(r"challenger +challenger-xgboost\.json: (\d+) rows", out)
    assert champion_rows + challenger_rows == 2000 and challenger_rows == challenger
    champion_accuracy = _number(r"champion-logistic\.pkl: \d+ rows, accuracy ([\d.]+)", out)
    challenger_accuracy = _number(r"challenger-xgboost\.json: \d+ rows, accuracy ([\d.]+)", out)
    assert challenger_accuracy > champion_accuracy
    assert "challenger beats champion by +" in out


def test_cascade_sends_only_unsure_rows_to_the_expensive_model():
    out = _run("examples/cascade.py")
    cheap = _number(r"decided by the cheap model: (\d+) rows", out)
    expensive = _number(r"decided by the expensive model: (\d+) rows", out)
    assert cheap + expensive == 2000 and 0 < expensive < 2000
    assert "decided 2000 of 2000 rows" in out
    cascade = _number(r"cascade accuracy ([\d.]+)", out)
    alone = _number(r"cheap model alone ([\d.]+)", out)
    assert cascade > alone


def test_ensemble_averages_two_models_on_every_row():
    out = _run("examples/ensemble.py")
    assert "rows: 2000, scored by both models: 2000" in out
    accuracy = {
        name: _number(rf"{name} +accuracy ([\d.]+)", out) for name in ("logistic", "xgboost", "ensemble")
    }
    assert accuracy["ensemble"] >= min(accuracy["logistic"], accuracy["xgboost"])
