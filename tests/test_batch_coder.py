"""Batches of examples are coded as lists, and Beam sizes them without encoding them all."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy
import pytest
from apache_beam import typehints
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.typehints.typehints import is_consistent_with

from liveinference.batch_coder import ExampleBatchCoder, ExampleBatchHint
from liveinference.batching import HandlerBatching


class Pickled:
    """An example Beam has no coder for: it is pickled, and counts how often."""

    count = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self):
        Pickled.count += 1
        return Pickled, (self.value,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pickled) and other.value == self.value


def _coder(example_type=typehints.Any) -> beam.coders.Coder:
    return beam.coders.registry.get_coder(ExampleBatchHint(example_type))


def test_a_batch_round_trips_as_the_list_it_was():
    batch = [numpy.arange(3.0), "text", {"ids": [1, 2]}, Pickled(7)]
    decoded = _coder().decode(_coder().encode(batch))
    assert isinstance(decoded, list) and len(decoded) == 4
    numpy.testing.assert_array_equal(decoded[0], batch[0])
    assert decoded[1:] == batch[1:]
    assert pickle.loads(pickle.dumps(_coder())) == _coder()


def test_a_batch_is_sized_from_three_examples_not_all():
    batch = [Pickled(index) for index in range(1000)]
    listed = beam.coders.ListCoder(beam.coders.registry.get_coder(typehints.Any))
    Pickled.count = 0
    exact = listed.get_impl().estimate_size(batch)
    assert Pickled.count == 1000  # what Beam's ListCoder does for every sampled batch
    Pickled.count = 0
    estimate = _coder().get_impl().estimate_size(batch)
    assert Pickled.count == 3
    assert estimate == pytest.approx(exact, rel=0.01)
    assert _coder().get_impl().estimate_size([]) >= 1


def test_batches_of_typed_examples_keep_the_examples_coder():
    coder = _coder(int)
    assert isinstance(coder, ExampleBatchCoder)
    assert coder.value_coder() == beam.coders.VarIntCoder()
    assert coder.decode(coder.encode([1, 2, 300])) == [1, 2, 300]
    assert coder.to_type_hint() == ExampleBatchHint(int)
    assert is_consistent_with(ExampleBatchHint(int), typehints.List[int])


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"length_fn": len, "bucket_boundaries": [2]}, {"max_batch_weight": 3, "element_size_fn": len}],
    ids=["count", "length buckets", "weight"],
)
def test_every_batching_step_labels_its_batches(kwargs):
    pipeline = beam.Pipeline()
    examples = pipeline | beam.Create([[1], [1, 2]]).with_output_types(typehints.List[int])
    batches = examples | HandlerBatching(max_batch_size=2, **kwargs)
    coder = beam.coders.registry.get_coder(batches.element_type)
    assert isinstance(coder, ExampleBatchCoder)
    assert coder.value_coder() == beam.coders.ListCoder(beam.coders.VarIntCoder())


class _Generate(beam.DoFn):
    def process(self, count: int):
        for index in range(count):
            yield Pickled(index)


def test_a_pipeline_pickles_few_examples_to_size_its_batches():
    rows = 3000
    Pickled.count = 0
    with beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"])) as pipeline:
        _ = (
            pipeline
            | beam.Create([rows])
            | beam.ParDo(_Generate())
            | HandlerBatching(min_batch_size=100, max_batch_size=100)
            | beam.combiners.Count.Globally()
        )
    # Beam samples a few of the rows themselves; with ListCoder it also pickled every
    # example of most of the 30 batches.
    assert Pickled.count < rows // 10
