"""Sources: a watched pattern offers only complete files; a channel relays events."""

from __future__ import annotations

import os

import pytest

from liveinference import KeyModelPathMapping, ModelMetadata
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.sources import ChannelSource, FilePatternSource

from refresh_models import write_model


def test_a_file_is_offered_once_its_size_held_across_two_polls(tmp_path):
    source = FilePatternSource(str(tmp_path / "*.pkl"))
    assert source.poll() is None
    write_model(str(tmp_path / "v2.pkl"), 2)
    assert source.poll() is None and source.settling
    version = source.poll()
    assert version.offer == ModelMetadata(str(tmp_path / "v2.pkl"), "v2")
    assert not source.settling


def test_a_half_written_file_is_not_offered_until_it_stops_growing(tmp_path):
    source = FilePatternSource(str(tmp_path / "*.pkl"))
    path = tmp_path / "v2.pkl"
    with open(path, "wb") as file:
        file.write(b"x" * 100)
        file.flush()
        assert source.poll() is None
        file.write(b"x" * 100)
        file.flush()
        assert source.poll() is None and source.settling
    assert source.poll().offer.model_id == str(path)


def test_the_newest_complete_file_is_offered(tmp_path):
    write_model(str(tmp_path / "a.pkl"), 1)
    os.utime(tmp_path / "a.pkl", (1000, 1000))
    write_model(str(tmp_path / "b.pkl"), 2)
    source = FilePatternSource(str(tmp_path / "*.pkl"))
    source.poll()
    assert source.poll().offer.model_name == "b"


def test_rewriting_a_file_with_the_same_name_is_a_new_version(tmp_path):
    path = str(tmp_path / "model.pkl")
    write_model(path, 1)
    os.utime(path, (1000, 1000))
    source = FilePatternSource(str(tmp_path / "*.pkl"))
    source.poll()
    first = source.poll()
    write_model(path, 2)
    source.poll()
    second = source.poll()
    assert first.offer == second.offer
    assert first.fingerprint != second.fingerprint


def test_a_channel_relays_the_latest_event(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    source = ChannelSource(channel)
    assert source.poll() is None
    channel.publish(ModelMetadata("/m/v2.pkl", "v2"))
    first = source.poll()
    assert first.offer == ModelMetadata("/m/v2.pkl", "v2")
    assert source.poll().fingerprint == first.fingerprint
    channel.publish(ModelMetadata("/m/v2.pkl", "v2"))
    assert source.poll().fingerprint != first.fingerprint


def test_a_channel_relays_per_key_paths(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    channel.publish([KeyModelPathMapping(["a", "b"], "/m/ab.pkl", "ab")])
    assert ChannelSource(channel).poll().offer == [KeyModelPathMapping(["a", "b"], "/m/ab.pkl", "ab")]


def test_publishing_something_that_is_not_a_model_event_says_what_is_expected(tmp_path):
    with pytest.raises(ValueError, match="must be ModelMetadata"):
        EventChannel.for_run(str(tmp_path), "run1", "model").publish("/m/v2.pkl")


def test_a_model_directory_is_one_version_offered_once_complete(tmp_path):
    source = FilePatternSource(str(tmp_path / "*"))
    staging = tmp_path.parent / f"{tmp_path.name}-staging"
    (staging / "variables").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"graph")
    (staging / "variables" / "data").write_bytes(b"weights")
    os.replace(staging, tmp_path / "v2")
    assert source.poll() is None and source.settling
    version = source.poll()
    assert version.offer == ModelMetadata(str(tmp_path / "v2"), "v2")
    (tmp_path / "v2" / "variables" / "data").write_bytes(b"new weights")
    assert source.poll() is None and source.settling
    assert source.poll().fingerprint != version.fingerprint
