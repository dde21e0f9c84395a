"""What every framework handler gets from the framework base and the batches helper.

scikit-learn stands in for the frameworks: it is the lightest, and the behaviour under
test lives in `frameworks/base.py`, `frameworks/batches.py` and `frameworks/loading.py`.
"""

from __future__ import annotations

import numpy
import pandas
import pytest
import scipy.sparse

from liveinference import InvalidExampleError, ModelLoadError
from liveinference.frameworks.batches import example_bytes, stack, stack_by_key
from liveinference.frameworks.loading import load_step
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy, SklearnModelHandlerPandas


def test_handlers_leave_model_id_to_runinference_and_report_their_path(sklearn_model_path, tmp_path, dataset):
    x, _ = dataset
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    results = list(handler.run_inference(list(x[:3]), handler.load_model()))
    assert [result.model_id for result in results] == [None, None, None]
    assert handler.get_model_id() == sklearn_model_path
    handler.update_model_path(str(tmp_path / "next.pkl"))
    assert handler.get_model_id() == str(tmp_path / "next.pkl")
    handler.update_model_path(None)
    assert handler.get_model_id() == str(tmp_path / "next.pkl")


def test_invalid_examples_from_a_custom_inference_fn_name_the_model(sklearn_model_path):
    def refuse(model, batch, inference_args):
        raise InvalidExampleError("no column 'age'")

    handler = SklearnModelHandlerPandas(sklearn_model_path, inference_fn=refuse)
    frames = [pandas.DataFrame([[1.0, 2.0, 3.0, 4.0]])]
    with pytest.raises(InvalidExampleError, match=rf"^model '{sklearn_model_path}': no column 'age'$"):
        handler.run_inference(frames, handler.load_model())


def test_examples_and_predictions_pair_as_far_as_both_go_as_in_beam(sklearn_model_path, dataset):
    x, _ = dataset
    fewer = SklearnModelHandlerNumpy(sklearn_model_path, inference_fn=lambda model, batch, args: [7])
    assert [r.inference for r in fewer.run_inference(list(x[:2]), fewer.load_model())] == [7]
    more = SklearnModelHandlerNumpy(sklearn_model_path, inference_fn=lambda model, batch, args: [7, 8, 9])
    assert [r.inference for r in more.run_inference(list(x[:2]), more.load_model())] == [7, 8]


def test_a_failed_load_step_says_what_failed_why_and_what_to_do():
    with pytest.raises(ModelLoadError, match=r"^cannot read 'm\.pt' \(EOFError: cut short\); save it again$") as info:
        with load_step("cannot read 'm.pt'", "save it again"):
            raise EOFError("cut short")
    assert isinstance(info.value.__cause__, EOFError)
    original = ModelLoadError("already explained")
    with pytest.raises(ModelLoadError) as passed:
        with load_step("cannot read 'm.pt'", lambda: "never asked"):
            raise original
    assert passed.value is original


def test_stack_says_which_shapes_and_which_types_arrived():
    assert stack([numpy.zeros(2), numpy.ones(2)]).shape == (2, 2)
    with pytest.raises(InvalidExampleError, match=r"shapes \[\(2,\), \(3,\)\]; pad or resize them"):
        stack([numpy.zeros(2), numpy.zeros(3)])
    with pytest.raises(InvalidExampleError, match=r"must be torch\.Tensor, got \['ndarray'\]"):
        stack([numpy.zeros(2)], "torch")
    with pytest.raises(InvalidExampleError, match=r"of the 2 examples in this batch, 'b' is in 1"):
        stack_by_key([{"a": numpy.zeros(1), "b": numpy.zeros(1)}, {"a": numpy.zeros(1)}], "numpy")


def test_example_bytes_count_the_data_of_each_kind_of_example(sklearn_model_path):
    array = numpy.zeros((5, 4))
    frame = pandas.DataFrame({"a": [1.0, 2.0]})
    sparse = scipy.sparse.csr_matrix(numpy.eye(3))
    assert example_bytes(array) == 160
    assert example_bytes({"a": array, "b": numpy.zeros(2, dtype=numpy.int8)}) == 162
    assert example_bytes(frame) == int(frame.memory_usage(deep=True).sum())
    assert example_bytes(sparse) == 24
    assert SklearnModelHandlerNumpy(sklearn_model_path).get_num_bytes([array, array[0]]) == 192
