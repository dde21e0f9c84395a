"""A new version under rollout, through the inference DoFn and the refresher's thread.

A version that loads fine but fails on its canary share is rolled back (it stops serving,
failed_model_loads gets a "rollout" record naming the gate and numbers, its file is not
loaded again), then a good one is promoted; every input is answered or dead-lettered.
"""

from __future__ import annotations

import uuid

from apache_beam.pvalue import TaggedOutput

from liveinference import PredictionResult
from liveinference.dofn import FAILED, FAILED_MODEL_LOADS, SHADOW, InferenceDoFn
from liveinference.refresh.config import RefreshConfig
from liveinference.rollout.config import RolloutConfig
from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.roles import CANARY, SHADOW as SHADOW_ROLE, STABLE, role_of
from liveinference.testing import ConstantModelHandler, wait_until, write_constant_model


class BreaksOnNegative(ConstantModelHandler):
    """A constant model whose negative labels load fine and fail on every example."""

    def run_inference(self, batch, model, inference_args=None):
        if model.label < 0:
            raise ValueError(f"model {model.path} is broken")
        return super().run_inference(batch, model, inference_args)


def _outputs(dofn, batch):
    emitted = list(dofn.process(batch))
    by_tag = {FAILED: [], FAILED_MODEL_LOADS: [], SHADOW: []}
    for output in emitted:
        if isinstance(output, TaggedOutput):
            by_tag[output.tag].append(output.value)
    return [o for o in emitted if not isinstance(o, TaggedOutput)], by_tag


def _dofn(tmp_path, rollout):
    first = write_constant_model(str(tmp_path / "v1.txt"), 1)
    (tmp_path / "watched").mkdir()
    refresh = RefreshConfig(
        watch_pattern=str(tmp_path / "watched" / "*.txt"), interval=0.05, rollout=rollout
    )
    dofn = InferenceDoFn(BreaksOnNegative(first), "test", uuid.uuid4().hex, Exception, None, refresh)
    dofn.setup()
    _outputs(dofn, [0.0])  # v1 serves: a version found before would serve as the first
    return dofn, first


def _until_decided(dofn, step, batches=200):
    """Runs `step()` per batch until the rollout decides; fails after `batches` batches."""
    for _ in range(batches):
        if dofn._slot.rollout.candidate() is None:
            return
        step()
    raise AssertionError(f"no rollout decision after {batches} batches")


def _staged(dofn, path):
    return lambda: (dofn._slot.rollout.candidate() or PredictionResult(0, 0, "")).model_id == path


def test_a_failing_canary_is_rolled_back_and_a_good_one_promoted(tmp_path):
    gates = RolloutGates(min_predictions=20, max_error_rate=0.1)
    dofn, first = _dofn(tmp_path, RolloutConfig(canary_share=0.5, seed=3, gates=gates))
    watched = tmp_path / "watched"
    counted = {"in": 0, "out": 0, "dead": 0}

    def run(batch):
        results, tagged = _outputs(dofn, batch)
        counted["in"] += len(batch)
        counted["out"] += len(results)
        counted["dead"] += len(tagged[FAILED])
        return results, tagged

    try:
        bad = write_constant_model(str(watched / "v2.txt"), -2)
        wait_until(_staged(dofn, bad), what="v2 to start as canary")
        roles = set()

        def step():
            results, tagged = run([float(i) for i in range(counted["in"], counted["in"] + 8)])
            roles.update((role_of(r), r.model_id) for r in results)
            assert {d.model_id for d in tagged[FAILED]} <= {bad}

        _until_decided(dofn, step)
        results, tagged = run([100.0])
        rollbacks = tagged[FAILED_MODEL_LOADS]
        assert roles == {(STABLE, first)}, "the failing canary answered nothing"
        [record] = rollbacks
        assert (record.stage, record.model_id) == ("rollout", bad)
        assert "error rate" in record.message or "errors already exceed" in record.message
        assert [(r.inference, r.model_id) for r in results] == [(1, first)]
        dofn._slot._refresher.poll_once()  # v2 is still the newest file offered
        assert dofn._slot.rollout.candidate() is None, "a rolled-back file is not loaded again"

        good = write_constant_model(str(watched / "v3.txt"), 3)
        wait_until(_staged(dofn, good), what="v3 to start as canary")
        assert dofn._slot.rollout.candidate().model_id == good, "v2 was not loaded again"
        seen = set()

        def good_step():
            results, _ = run([float(i) for i in range(counted["in"], counted["in"] + 8)])
            seen.update((role_of(r), r.model_id, r.inference) for r in results)

        _until_decided(dofn, good_step)
        assert seen == {(STABLE, first, 1), (CANARY, good, 3)}
        results, _ = run([1.0, 2.0])
        assert {(role_of(r), r.model_id) for r in results} == {(STABLE, good)}
        assert counted["in"] == counted["out"] + counted["dead"]
    finally:
        dofn.teardown()


def test_a_shadow_predicts_copies_paired_with_the_stable_predictions(tmp_path):
    gates = RolloutGates(min_predictions=10, min_agreement=0.9)
    dofn, first = _dofn(tmp_path, RolloutConfig(canary_share=1.0, shadow=True, gates=gates))
    try:
        other = write_constant_model(str(tmp_path / "watched" / "v2.txt"), 2)
        wait_until(_staged(dofn, other), what="v2 to start in shadow")
        results, tagged = _outputs(dofn, [1.0, 2.0, 3.0])
        assert [(role_of(r), r.model_id, r.inference) for r in results] == [(STABLE, first, 1)] * 3
        pairs = tagged[SHADOW]
        assert [(p.shadow.example, p.stable.example) for p in pairs] == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
        assert {(role_of(p.shadow), p.shadow.model_id, p.shadow.inference) for p in pairs} == {
            (SHADOW_ROLE, other, 2)
        }
        _until_decided(dofn, lambda: _outputs(dofn, [float(i) for i in range(5)]))
        _, tagged = _outputs(dofn, [1.0])
        [record] = tagged[FAILED_MODEL_LOADS]
        assert record.stage == "rollout" and "agreement 0.0000 < min_agreement 0.9" in record.message
    finally:
        dofn.teardown()
