"""The Java quick start: a Java pipeline classifies rows with a scikit-learn model in Python.

It trains a small model, writes 1,000 CSV rows (three of them malformed), starts a Prism job
server, and runs the Java example `dev.liveinference.examples.ClassifyRows` (built by Maven) on
Prism with no expansion service address: the Java transform starts `liveinference serve` itself
from this Python (`--python`), on a free port, and stops it when the Java program ends. It
prints a summary that accounts for every row, and stops Prism.

    make java-demo

With `--record-class-archive` the Java program also writes the JVM's class-data archive for
the current Java build at its exit (`xlang_runtime.record_class_archive`), which later Java
jobs map to start faster (`make java-cds`).
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import tempfile
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import xlang_runtime  # noqa: E402


def main() -> int:
    """Runs the demo; returns 0 when every row was predicted or dead-lettered."""
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-class-archive", action="store_true",
                        help="also write the JVM class-data archive for this Java build")
    record = parser.parse_args().record_class_archive

    missing = xlang_runtime.missing_pieces("java", "prism")
    if missing:
        print("missing " + "; ".join(missing))
        return 1
    work = Path(tempfile.mkdtemp(prefix="liveinference-java-demo-"))
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(1000, 4))
    model = LogisticRegression().fit(x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int))
    with open(work / "classifier-v1.pkl", "wb") as file:
        pickle.dump(model, file)
    rows = [",".join(repr(float(v)) for v in row) for row in x[:997]]
    rows += ["1.0,two,3.0,4.0", "1.0,2.0,3.0", "nan,0.1,0.2,0.3"]
    (work / "rows.csv").write_text("\n".join(rows) + "\n")
    predictions, dead = work / "predictions.tsv", work / "dead_letters.tsv"
    with xlang_runtime.start_prism(work) as prism:
        print(f"Prism at {prism.address}; the Java program starts its own expansion service "
              f"with {sys.executable}")
        main_class, args = "dev.liveinference.examples.ClassifyRows", [
            f"--input={work / 'rows.csv'}", f"--model={work / 'classifier-v1.pkl'}",
            f"--predictions={predictions}", f"--deadLetters={dead}",
            f"--python={sys.executable}",
            *xlang_runtime.runner_args("prism", prism.address),
        ]
        if record:
            status, tail = xlang_runtime.record_class_archive(
                main_class, *args, log=work / "java.log", timeout=600)
            print(f"class-data archive: {xlang_runtime.class_archive()}")
        else:
            status, tail = xlang_runtime.run_logged(
                xlang_runtime.java_command(main_class, *args), work / "java.log", timeout=600)
    if status != 0:
        print(f"the Java pipeline failed ({status}); see {work / 'java.log'}:\n{tail}")
        return 1
    started = [line for line in (work / "java.log").read_text().splitlines()
               if "liveinference serve (pid" in line]
    for line in started:
        print(line.split(" - ", 1)[-1])
    predicted = [line.split("\t") for line in predictions.read_text().splitlines()]
    dead_letters = [line.split("\t") for line in dead.read_text().splitlines()]
    counts = collections.Counter((label, Path(model_id).name) for _, label, model_id in predicted)
    print(f"rows in: {len(rows)}")
    for (label, model_id), count in sorted(counts.items()):
        print(f"  predicted {'positive' if label == '1' else 'negative'} ({model_id}): {count}")
    for element, stage, error in dead_letters:
        print(f"  dead letter at {stage}: {element}: {error[:120]}")
    print(f"predicted {len(predicted)} + dead-lettered {len(dead_letters)} = "
          f"{len(predicted) + len(dead_letters)}")
    print(f"outputs in {work}")
    return 0 if len(predicted) + len(dead_letters) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
