"""Manual rollout control by event (`with_rollout(control=...)`) on the local runner.

Commands arrive on a PCollection while the pipeline runs: promote a canary now, roll the
promoted model back to the one before it, pin the stable model (a new version waits), unpin
(the waiting version is rolled out). Each command is given when the pipeline reaches the
state it acts on: the decision it waits for is logged and the outputs show the model_id and
role it expects; never after a fixed time.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pytest
from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.rollout.control import RolloutControl, control_message
from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.roles import CANARY, STABLE, role_of
from liveinference.testing import query_metrics, read_collected, when

from refresh_models import write_model
from streams import by_time, stream


def _commands(_, folder):
    """Emits the command written to `folder`/command.json, once: the reader that renames
    it takes it."""
    path = os.path.join(folder, "command.json")
    taken = f"{path}.{os.getpid()}-{id(_)}"
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return
    with open(taken) as file:
        yield RolloutControl(*json.load(file))


def _served(results_dir, role, model_id, after=None):
    """A condition: a result of `model_id` in `role` reached the output, later in the stream
    than every result of `after` (a (role, model_id)), if given."""

    def check():
        results = read_collected(results_dir)
        since = max(
            (r.example[0] for r in results if (role_of(r), r.model_id) == after), default=-1.0
        )
        return any(
            (role_of(r), r.model_id) == (role, model_id) and r.example[0] > since
            for r in results
        )

    return check


def _command(folder, action, model_id=""):
    def write():
        temporary = os.path.join(folder, "command.tmp")
        with open(temporary, "w") as file:
            json.dump([action, model_id], file)
        os.replace(temporary, os.path.join(folder, "command.json"))
        return action

    return write


def test_promote_now_roll_back_to_the_previous_model_pin_and_unpin(
    run_pipeline, model_dir, refresh_log
):
    watched, folder = model_dir / "watched", str(model_dir)
    v1, v2, v3 = str(model_dir / "v1.pkl"), str(watched / "v2.pkl"), str(watched / "v3.pkl")
    handler = SklearnModelHandlerNumpy(v1, max_batch_size=4)
    results_dir = str(model_dir / "out" / "results")
    steps = when([
        (lambda: refresh_log.logged("loaded the first model"), lambda: write_model(v2, 2)),
        (_served(results_dir, CANARY, v2), _command(folder, "promote", v2)),
        (_served(results_dir, STABLE, v2), _command(folder, "rollback", v2)),
        (_served(results_dir, STABLE, v1, after=(STABLE, v2)), _command(folder, "pin", v1)),
        (lambda: refresh_log.logged("pin model", v1, "serves already"), lambda: write_model(v3, 3)),
        (lambda: refresh_log.logged(v3, "waits: the rollout is pinned"), _command(folder, "unpin")),
        (_served(results_dir, CANARY, v3), lambda: "done"),
    ], timeout=60)
    rows = 900

    def build(p):
        stream_rows, _ = stream(p, rows=rows)
        ticks, _ = stream(p, rows=rows, rate=0.05, label="Ticks")
        control = ticks | "Commands" >> beam.FlatMap(_commands, folder)
        results, dlq = stream_rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.1
        ).with_rollout(
            0.5, gates=RolloutGates(min_predictions=10**9), control=control
        ).with_exception_handling()
        dead, loads = dlq.failed_inferences, dlq.failed_model_loads
        return {"results": results, "inferences": dead, "loads": loads}

    out = run_pipeline(build, streaming=True)
    steps.join(timeout=5)
    results = out["results"]
    assert abs(len(results) - rows) <= 1 and not out["inferences"] and not out["loads"]
    served = {(role_of(r), r.model_id) for r in results}
    assert {(STABLE, v1), (CANARY, v2), (STABLE, v2), (CANARY, v3)} <= served
    assert (STABLE, v3) not in served, "a canary is promoted by the gates or by hand only"
    stable = [r.model_id for r in by_time(results) if role_of(r) == STABLE]
    assert stable[-1] == v1, "the rollback by hand made v1 the stable model again"
    counters, _ = query_metrics(run_pipeline.result, "BeamML_Sklearn")
    canaries = [r for r in results if role_of(r) == CANARY]
    assert counters["canary_num_inferences"] == len(canaries)
    v2_canaries = sum(r.model_id == v2 for r in canaries)
    per_version = [n for name, n in counters.items() if name.endswith("v2_canary_num_inferences")]
    assert per_version == [v2_canaries], "a counter per version and role"



@pytest.mark.parametrize(
    "control, error",
    [(RolloutControl("promote"), "needs the model_id"), (RolloutControl("go", "m"), "unknown"),
     ("promote m", "must be a RolloutControl")],
)
def test_a_bad_command_is_refused_naming_the_problem(control, error):
    with pytest.raises(ValueError, match=error):
        control_message(control)
