"""Dead letters read as Beam's: Beam's own dead-letter snippets run unchanged on ours.

Beam's `with_exception_handling` emits `(input, (exception class, repr, traceback lines))`;
its `failed_inferences` input is a batch, its pre/postprocessing input an element. Each test
runs the same handler through Beam's RunInference and ours and reads both with Beam's code.
Every dead letter also names a model: a preprocessing one the model serving in its worker
process, without loading one.
"""

from __future__ import annotations

import pickle
import uuid

import apache_beam as beam
from apache_beam.ml.inference import base as beam_base

import liveinference
from liveinference import FailureRecord, RunInference
from liveinference.contract import ModelHandler
from liveinference.processing import _ApplyFnsDoFn
from liveinference.refresh.slot import ServingModel
from liveinference.sharing import SlotAccess
from liveinference.testing import ConstantModelHandler, write_constant_model


class FakeModel:
    """Beam's test model; Beam's shared model cache needs one it can weakly reference."""


def _fake_handler(library):
    """Beam's base_test FakeModelHandler (adds one; batches of one), on `library`'s base."""

    class FakeModelHandler(library.ModelHandler):
        def load_model(self):
            return FakeModel()

        def run_inference(self, batch, model, inference_args=None):
            for example in batch:
                yield example + 1

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": 1}

    return FakeModelHandler()


def mult_two_pre(example: str) -> int:
    if example == "5":
        raise Exception("TEST")
    return int(example) * 2


def mult_two_post(example: int) -> str:
    if example == 7:
        raise Exception("TEST")
    return str(example * 2)


def _with_beams_snippets(library, run_pipeline):
    """Beam's dead-letter tests' pipeline, on `library`: pre, inference and post failures."""
    inputs = ["1", "5", "3", "10", "TEST"]

    def to_int_unless_test(example):
        return example if example == "TEST" else mult_two_pre(example)

    def build(p):
        handler = (
            _fake_handler(library)
            .with_preprocess_fn(to_int_unless_test)
            .with_postprocess_fn(mult_two_post)
        )
        main, other = (
            p | beam.Create(inputs) | library.RunInference(handler).with_exception_handling()
        )
        return {
            "main": main,
            # Beam's own snippets: "bad will be in form [element, error]" and
            # "failed_inferences will be in form [batch[elements], error]".
            "pre": other.failed_preprocessing[0] | "Pre" >> beam.Map(lambda x: x[0]),
            "inference": other.failed_inferences | "Inf" >> beam.Map(lambda x: x[0][0]),
            "post": other.failed_postprocessing[0] | "Post" >> beam.Map(lambda x: x[0]),
            "errors": (
                (other.failed_preprocessing[0], other.failed_inferences, other.failed_postprocessing[0])
                | beam.Flatten()
                | "Errors" >> beam.Map(lambda x: (x[1][0], x[1][1], bool(x[1][2])))
            ),
            "records": (
                (other.failed_preprocessing[0], other.failed_inferences, other.failed_postprocessing[0])
                | "AllRecords" >> beam.Flatten()
            ),
        }

    # Each library's outputs go to their own folders of this test's run_pipeline.
    prefix = library.__name__.replace(".", "_")
    out = run_pipeline(lambda p: {f"{prefix}_{name}": pcoll for name, pcoll in build(p).items()})
    return len(inputs), {name[len(prefix) + 1:]: values for name, values in out.items()}


def test_beams_dead_letter_snippets_read_ours_unchanged(run_pipeline):
    _, beams = _with_beams_snippets(beam_base, run_pipeline)
    total, ours = _with_beams_snippets(liveinference, run_pipeline)
    for name in ("main", "pre", "inference", "post"):
        assert sorted(map(str, ours[name])) == sorted(map(str, beams[name])), name
    assert ours["pre"] == ["5"] and ours["inference"] == ["TEST"] and ours["post"] == [7]
    assert sorted(ours["errors"], key=str) == sorted(beams["errors"], key=str)
    assert {kind for kind, _, _ in ours["errors"]} == {Exception, TypeError}
    assert len(ours["main"]) + len(ours["records"]) == total


def test_ours_still_carry_their_per_row_attributes(run_pipeline):
    _, ours = _with_beams_snippets(liveinference, run_pipeline)
    by_stage = {record.stage: record for record in ours["records"]}
    assert sorted(by_stage) == ["inference", "postprocess[0]", "preprocess[0]"]
    assert by_stage["inference"].element == "TEST"
    assert by_stage["inference"].exception_type == "builtins.TypeError"
    assert by_stage["preprocess[0]"].message == "TEST"
    assert by_stage["postprocess[0]"].element == 7
    assert all(record.model_id == "FakeModelHandler" for record in ours["records"])


def test_a_record_unpacks_as_beams_pair_and_survives_pickling_with_a_local_class():
    class LocalError(ValueError):
        pass

    try:
        raise LocalError("bad row")
    except LocalError as error:
        record = FailureRecord.of({"x": 1}, "inference", error, "m1", batched=True)
    batch, (kind, text, lines) = record
    assert (batch, kind, text) == ([{"x": 1}], LocalError, "LocalError('bad row')")
    assert lines[-1].endswith("LocalError: bad row\n")
    # Beam itself cannot pickle a class defined in a function; ours travels as its base.
    copied = pickle.loads(pickle.dumps(record))
    assert copied == record and copied[0] == [{"x": 1}] and copied[1][0] is ValueError
    assert FailureRecord.of("e", "preprocess[0]", ValueError("x"))[0] == "e"


def test_preprocessing_dead_letters_name_the_model_serving_in_the_process(tmp_path):
    first = write_constant_model(str(tmp_path / "v1.txt"), 1)
    handler = ConstantModelHandler(first)
    slots = SlotAccess(handler, uuid.uuid4().hex)
    slot = slots.acquire()
    dofn = _ApplyFnsDoFn([mult_two_pre], "preprocess", Exception, slots)
    dofn.setup()
    try:
        [before] = [output.value for output in dofn.process("5")]
        assert before.model_id == first and slot.current() is None, "must not load a model"
        slot.swap(ServingModel("v2", object(), ModelHandler()))
        [after] = [output.value for output in dofn.process("5")]
        assert after.model_id == "v2"
    finally:
        dofn.teardown()
