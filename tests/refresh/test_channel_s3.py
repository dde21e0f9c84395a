"""Event mode with the channel and the model files on an S3-compatible store (moto's server).

The store is a real HTTP server (moto's standalone server, in its own process),
reached through Beam's own S3 filesystem with `--s3_endpoint_url`, as a cluster would reach
S3, MinIO or SeaweedFS.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from liveinference import ModelMetadata, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.sources import ChannelSource
from liveinference.testing import wait_until

from refresh_models import constant_model
from streams import paced_stream, run_models

pytest.importorskip("moto.server", reason="moto[server] is not installed; `make venv` installs it")
boto3 = pytest.importorskip("boto3", reason="boto3 is not installed; `make venv` installs it")

BUCKET = "models"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_options():
    """A moto S3 server process on a free loopback port, and the Beam options that reach it."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 60, f"moto's S3 server to listen on port {port}")
        options = {
            "s3_endpoint_url": f"http://127.0.0.1:{port}",
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
            "s3_region_name": "us-east-1",
        }
        client = boto3.client(
            "s3",
            endpoint_url=options["s3_endpoint_url"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        FileSystems.set_options(PipelineOptions(flags=[], **options))
        yield options, client
    finally:
        server.terminate()
        server.wait(timeout=30)


def _put(client, key: str, payload: bytes) -> str:
    client.put_object(Bucket=BUCKET, Key=key, Body=payload)
    return f"s3://{BUCKET}/{key}"


def test_a_channel_on_s3_relays_the_newest_event_of_its_run(s3_options):
    channel = EventChannel.for_run(f"s3://{BUCKET}/channels", "run1", "model")
    source = ChannelSource(channel)
    assert source.poll() is None
    channel.publish(ModelMetadata("s3://models/v1.pkl", "v1"))
    channel.publish(ModelMetadata("s3://models/v2.pkl", "v2"))
    assert source.poll().offer == ModelMetadata("s3://models/v2.pkl", "v2")
    EventChannel(channel.path, "old-run").publish(ModelMetadata("s3://models/old.pkl", "old"))
    assert source.poll().offer == ModelMetadata("s3://models/v2.pkl", "v2")


def test_event_mode_on_s3_swaps_to_a_new_model_and_rejects_a_corrupt_one(s3_options, run_pipeline):
    options, client = s3_options
    first = _put(client, "v1/model.pkl", pickle.dumps(constant_model(1)))
    bad = _put(client, "dropped/bad.pkl", b"corrupt model bytes")
    good = _put(client, "dropped/v2.pkl", pickle.dumps(constant_model(2)))
    announced = {20: ModelMetadata(bad, "bad"), 70: ModelMetadata(good, "v2")}

    def build(p):
        rows = paced_stream(p, rows=120, rate=0.1)
        events = (
            rows
            | "Announced" >> beam.Filter(lambda row: int(row[1]) in announced)
            | "AsEvent" >> beam.Map(lambda row: announced[int(row[1])])
        )
        results, dlq = rows | RunInference(
            SklearnModelHandlerNumpy(first, max_batch_size=8),
            model_metadata_pcoll=events,
            interval=0.3,
            refresh_channel=f"s3://{BUCKET}/pipeline-channels",
        ).with_exception_handling()
        return {"results": results, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True, **options)
    assert len(out["results"]) == 120
    assert run_models(out["results"]) == [1, 2]
    assert {r.model_id for r in out["results"] if int(r.inference) == 2} == {good}
    [rejected] = out["loads"]
    assert (rejected.model_id, rejected.stage) == (bad, "load_model")
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="pipeline-channels/")["Contents"]
    assert len([o for o in listed if o["Key"].endswith(".json")]) == 2, "one object per event"
