"""Every prediction and every dead letter names the model that served its batch.

RunInference stamps model_id (issue 10): the first model's id comes from its handler's
`get_model_id()`, a refreshed model's from its version, a per-key model's from its key's
mapping. Handlers never stamp.
"""

from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.ml.inference.base import PredictionResult as BeamPredictionResult
from apache_beam.pvalue import TaggedOutput

from liveinference import (
    KeyedModelHandler,
    KeyModelMapping,
    KeyModelPathMapping,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from liveinference.dofn import FAILED, InferenceDoFn
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.slot import ServingModel
from liveinference.testing import (
    ConstantModelHandler,
    FaultOnMark,
    wait_until,
    write_constant_model,
)

BAD = -1.0


def _rows(count):
    """`count` rows, every seventh one marked bad."""
    return [BAD if index % 7 == 0 else float(index) for index in range(count)]


def test_predictions_and_dead_letters_of_the_first_model_carry_its_id(run_pipeline, tmp_path):
    path = write_constant_model(str(tmp_path / "v1.txt"), 1)
    handler = FaultOnMark(ConstantModelHandler(path, batch_size=16), BAD)
    rows = _rows(1000)

    def build(p):
        results, dlq = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {"results": results, "dead": dlq.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) == len(rows) - rows.count(BAD)
    assert len(out["dead"]) == rows.count(BAD) > 0
    assert {result.model_id for result in out["results"]} == {path}
    assert {(record.stage, record.model_id) for record in out["dead"]} == {("inference", path)}


def _refuse_five(result):
    if result.example == 5.0:
        raise ValueError("five is refused after inference")
    return result


def test_postprocessing_dead_letters_carry_the_id_of_the_model_that_predicted(run_pipeline, tmp_path):
    path = write_constant_model(str(tmp_path / "v1.txt"), 1)
    handler = ConstantModelHandler(path).with_postprocess_fn(_refuse_five)

    def build(p):
        results, dlq = p | beam.Create([4.0, 5.0, 6.0]) | RunInference(handler).with_exception_handling()
        return {"results": results, "dead": dlq.failed_postprocessing[0]}

    out = run_pipeline(build)
    assert sorted(result.example for result in out["results"]) == [4.0, 6.0]
    assert [(record.stage, record.model_id) for record in out["dead"]] == [("postprocess[0]", path)]


def test_dead_letters_of_a_first_model_that_cannot_load_carry_its_id(run_pipeline, tmp_path):
    missing = str(tmp_path / "missing.txt")

    def build(p):
        results, dlq = (
            p | beam.Create([1.0, 2.0, 3.0])
            | RunInference(ConstantModelHandler(missing)).with_exception_handling()
        )
        return {"results": results, "dead": dlq.failed_inferences}

    out = run_pipeline(build)
    assert out["results"] == []
    assert {(record.stage, record.model_id) for record in out["dead"]} == {("load_model", missing)}


def _outputs(dofn, batch):
    """(predictions, dead letters) that the DoFn emits for one batch."""
    emitted = list(dofn.process(batch))
    dead = [o.value for o in emitted if isinstance(o, TaggedOutput) and o.tag == FAILED]
    return [o for o in emitted if not isinstance(o, TaggedOutput)], dead


def test_after_a_swap_predictions_and_dead_letters_carry_the_new_models_id(tmp_path):
    first = write_constant_model(str(tmp_path / "v1.txt"), 1)
    (tmp_path / "watched").mkdir()
    handler = FaultOnMark(ConstantModelHandler(first), BAD)
    refresh = RefreshConfig(watch_pattern=str(tmp_path / "watched" / "*.txt"), interval=0.05)
    dofn = InferenceDoFn(handler, "test", uuid.uuid4().hex, Exception, None, refresh)
    dofn.setup()
    try:
        predictions, dead = _outputs(dofn, [1.0, BAD, 2.0])
        assert [(r.inference, r.model_id) for r in predictions] == [(1, first), (1, first)]
        assert [(d.element, d.model_id) for d in dead] == [(BAD, first)]

        second = write_constant_model(str(tmp_path / "watched" / "v2.txt"), 2)
        wait_until(lambda: _outputs(dofn, [0.0])[0][0].model_id == second, what="v2 to serve")
        predictions, dead = _outputs(dofn, [3.0, BAD, 4.0])
        assert [(r.inference, r.model_id) for r in predictions] == [(2, second), (2, second)]
        assert [(d.element, d.model_id) for d in dead] == [(BAD, second)]
    finally:
        dofn.teardown()


def test_per_key_predictions_and_dead_letters_carry_their_keys_model_id(tmp_path):
    paths = {key: write_constant_model(str(tmp_path / f"{key}.txt"), label) for key, label in (("a", 1), ("b", 2))}
    keyed = KeyedModelHandler([
        KeyModelMapping(["a"], FaultOnMark(ConstantModelHandler(paths["a"]), BAD)),
        KeyModelMapping(["b"], FaultOnMark(ConstantModelHandler(paths["b"]), BAD)),
    ])
    dofn = InferenceDoFn(keyed, "test", uuid.uuid4().hex, Exception, None, RefreshConfig())
    dofn.setup()
    try:
        predictions, dead = _outputs(dofn, [("a", 1.0), ("b", 2.0), ("b", BAD), ("a", 3.0)])
        assert [(key, r.inference, r.model_id) for key, r in predictions] == [
            ("a", 1, paths["a"]), ("b", 2, paths["b"]), ("a", 1, paths["a"]),
        ]
        assert [(d.element, d.model_id) for d in dead] == [(("b", BAD), paths["b"])]
    finally:
        dofn.teardown()


def test_refreshed_per_key_models_name_the_new_model_of_each_moved_key(tmp_path):
    paths = {key: write_constant_model(str(tmp_path / f"{key}.txt"), 1) for key in "abc"}
    keyed = KeyedModelHandler([KeyModelMapping([key], ConstantModelHandler(paths[key])) for key in "ab"])
    models = keyed.load_model()
    refreshed = models.refreshed([KeyModelPathMapping(["b"], paths["c"], "b-v2")])
    assert [refreshed.model_id_for(key) for key in "ab"] == [paths["a"], paths["c"]]
    assert [models.model_id_for(key) for key in "ab"] == [paths["a"], paths["b"]]


def test_stamping_replaces_any_handler_id_keeps_keys_and_passes_other_results():
    serving = ServingModel("m2", object(), ModelHandler())
    ours, beams = PredictionResult(1, 10, "stale"), BeamPredictionResult(2, 20)
    assert serving.stamp([ours, beams]) == [PredictionResult(1, 10, "m2"), BeamPredictionResult(2, 20, "m2")]
    assert type(serving.stamp([beams])[0]) is BeamPredictionResult
    assert serving.stamp([("k", ours), ("j", beams)]) == [("k", (1, 10, "m2")), ("j", (2, 20, "m2"))]
    assert serving.stamp([{"label": 1}, ("k", 3)]) == [{"label": 1}, ("k", 3)]
    assert serving.stamp([]) == []
