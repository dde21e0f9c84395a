"""The event channel: private to its user, one per run, atomic messages, removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from liveinference import ModelMetadata, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.channel import EventChannel, private_root
from liveinference.refresh.pipeline_run import channel_for_run, run_id_of
from liveinference.refresh.sources import ChannelSource

from streams import live

EVENT = ModelMetadata("/m/v2.pkl", "v2")


@pytest.fixture
def shared_tmp(monkeypatch):
    """A system temp dir like /tmp (mode 1777, reachable by every user), used as tempfile's."""
    directory = tempfile.mkdtemp(prefix="liveinference-shared-tmp-")
    os.chmod(directory, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", directory)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _as_nobody(*command):
    """Runs `command` as the unprivileged user `nobody`; skips when users cannot be switched."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip(reason="needs root and runuser to act as a second OS user (nobody)")
    subprocess.run(["runuser", "-u", "nobody", "--", *command], check=True)


def test_a_local_channel_is_private_to_its_user(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    message = channel.publish(EVENT)
    assert stat.S_IMODE(os.stat(channel.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(message).st_mode) == 0o600, "messages are not world-readable"
    assert [n for n in os.listdir(channel.path) if not n.startswith("event-")] == [], (
        "no temporary file is left behind"
    )


def test_the_default_channel_lives_in_a_private_directory_of_the_user(shared_tmp):
    channel = EventChannel.for_run(None, "run1", "model")
    channel.publish(EVENT)
    assert channel.path.startswith(private_root() + os.sep)
    assert private_root().startswith(shared_tmp)
    assert stat.S_IMODE(os.stat(private_root()).st_mode) == 0o700


def test_a_channel_directory_made_by_another_user_is_refused(shared_tmp):
    _as_nobody("mkdir", "-m", "700", private_root())
    channel = EventChannel.for_run(None, "run1", "model")
    with pytest.raises(PermissionError, match="belongs to uid .* not to this user"):
        channel.publish(EVENT)
    with pytest.raises(PermissionError, match="pass refresh_channel="):
        ChannelSource(channel).poll()


def test_a_channel_that_lets_others_in_is_refused_on_read_and_write(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    channel.publish(EVENT)
    os.chmod(channel.path, 0o755)
    with pytest.raises(PermissionError, match="chmod 700"):
        ChannelSource(channel).poll()
    with pytest.raises(PermissionError, match="lets other users in"):
        channel.publish(EVENT)


def test_a_linked_channel_directory_is_refused(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, channel.path)
    with pytest.raises(PermissionError, match="is not a directory"):
        channel.publish(EVENT)


def test_the_newest_message_wins_and_other_runs_messages_are_ignored(tmp_path):
    channel = EventChannel.for_run(str(tmp_path), "run1", "model")
    source = ChannelSource(channel)
    channel.publish(ModelMetadata("/m/v1.pkl", "v1"))
    channel.publish(EVENT)
    assert source.poll().offer == EVENT
    stranger = EventChannel(channel.path, "run0")
    stranger.publish(ModelMetadata("/m/evil.pkl", "evil"))
    assert source.poll().offer == EVENT, "a message of another run never serves"


def test_each_pipeline_gets_its_own_run_and_channel(tmp_path):
    first, second = beam.Pipeline(), beam.Pipeline()
    assert run_id_of(first) == run_id_of(first) != run_id_of(second)
    one = channel_for_run(first, str(tmp_path), "model")
    two = channel_for_run(second, str(tmp_path), "model")
    assert one.path != two.path and one.run_id != two.run_id


def test_the_channel_defaults_to_the_pipelines_temp_location(tmp_path):
    pipeline = beam.Pipeline(options=PipelineOptions(temp_location=str(tmp_path / "temp")))
    channel = channel_for_run(pipeline, None, "model")
    assert channel.path.startswith(str(tmp_path / "temp" / "liveinference-channels") + "/")


def _expand_with_events(pipeline, channel, name):
    events = live(pipeline | f"Events{name}" >> beam.Create([EVENT]), f"Live{name}")
    rows = pipeline | f"Rows{name}" >> beam.Create([[0.0]])
    return rows | f"Run{name}" >> RunInference(
        SklearnModelHandlerNumpy("/m/v1.pkl"), model_metadata_pcoll=events, refresh_channel=channel
    )


def test_a_local_channel_is_refused_when_workers_run_on_other_machines(tmp_path):
    remote = beam.Pipeline(options=PipelineOptions(
        runner="PortableRunner", job_endpoint="flink-jobs.example.com:8099"
    ))
    for name, channel in (("Default", None), ("Local", str(tmp_path))):
        with pytest.raises(ValueError, match="cannot see; pass refresh_channel='gs://"):
            _expand_with_events(remote, channel, name)
    _expand_with_events(remote, "s3://bucket/channels", "Shared")


def test_dataflow_relays_events_under_its_temp_location_and_refuses_a_local_channel(tmp_path):
    dataflow = beam.Pipeline(options=PipelineOptions(
        runner="DataflowRunner", project="my-project", region="us-central1",
        temp_location="gs://bucket/temp",
    ))
    with pytest.raises(ValueError, match="workers of DataflowRunner cannot see"):
        _expand_with_events(dataflow, str(tmp_path), "Local")
    channel = channel_for_run(dataflow, None, "model")
    assert channel.path.startswith("gs://bucket/temp/liveinference-channels/run-")


_RUN_AND_REPORT = textwrap.dedent("""
    import json, os, sys, time
    import apache_beam as beam
    from apache_beam.transforms.periodicsequence import PeriodicImpulse
    import numpy
    from liveinference import ModelMetadata, RunInference
    from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

    model, root, report = sys.argv[1:]
    with beam.Pipeline() as p:
        # Unbounded, as live events are (a bounded PCollection is read by event time).
        now = time.time()
        events = ((p | "Events" >> beam.Create([ModelMetadata(model, "again")]),
                   p | PeriodicImpulse(now, now + 1, 1) | beam.FlatMap(lambda _: []))
                  | beam.Flatten())
        _ = (p | beam.Create([numpy.zeros(4)])
             | RunInference(SklearnModelHandlerNumpy(model), model_metadata_pcoll=events,
                            refresh_channel=root))
    with open(report, "w") as file:
        json.dump(os.listdir(root), file)
""")


def test_the_channel_is_removed_when_the_pipeline_ends(tmp_path, model_dir):
    root, report = tmp_path / "channels", tmp_path / "report.json"
    root.mkdir()
    subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, str(model_dir / "v1.pkl"), str(root), str(report)],
        check=True, timeout=300,
    )
    during = json.loads(report.read_text())
    assert len(during) == 1 and during[0].startswith("run-"), "the run had its channel"
    assert os.listdir(root) == [], "the launcher removed it when it ended"
