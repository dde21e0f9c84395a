"""The expansion service: starts, prints its address, binds loopback, refuses bad requests
with messages naming the problem while staying up, and shuts down cleanly on signals."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import psutil
import pytest
from apache_beam.transforms.fully_qualified_named_transform import (
    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
    FullyQualifiedNamedTransform,
)

from examples import xlang_runtime
from liveinference_expansion import TRANSFORM_NAME

PARSE = "liveinference_expansion.functions.parse_csv_floats"


def expand(address: str, constructor: str = TRANSFORM_NAME, **kwargs) -> beam.PCollection:
    """Sends one expansion request, as a Java PythonExternalTransform would; returns the output.

    Raises:
        RuntimeError: with the service's error when it refuses the request.
    """
    payload = FullyQualifiedNamedTransform(constructor, (), kwargs).to_runner_api_parameter(None)[1]
    pipeline = beam.Pipeline()
    return (
        pipeline
        | beam.Create(["1,2,3,4"]).with_output_types(str)
        | beam.ExternalTransform(
            PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN, payload.SerializeToString(), address
        )
    )


def refused(address: str, **kwargs) -> str:
    with pytest.raises(RuntimeError) as error:
        expand(address, **kwargs)
    return str(error.value)


def test_service_listens_on_loopback_and_its_worker_pool_on_a_private_unix_socket(service):
    assert service.address.startswith("127.0.0.1:")
    socket_path = Path(service.extra["workers"].removeprefix("unix://"))
    assert service.extra["workers"] == f"unix://{socket_path}"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    assert socket_path.parent.stat().st_uid == os.geteuid()
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(service.process.pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN
    }
    # The expansion port is the only TCP port, on loopback; the worker pool has none.
    # gRPC may report the IPv4-mapped form of the same loopback address.
    assert {(ip.removeprefix("::ffff:"), port) for ip, port in listening} == {
        ("127.0.0.1", int(service.address.rsplit(":", 1)[1]))}


def test_a_valid_request_expands_into_typed_rows(service, models):
    outputs = expand(
        service.address,
        handler="sklearn_numpy",
        handler_args=beam.Row(model_uri=str(models["v1"]), max_batch_size=8),
        preprocess=[PARSE],
        exception_handling=True,
    )
    assert set(outputs) == {"predictions", "dead_letters"}
    # The service's output coders are Beam schemas (RowCoder), so Java can decode them.
    assert outputs["predictions"].element_type._fields == ("example", "inference", "model_id")
    assert outputs["dead_letters"].element_type._fields == ("element", "stage", "error")


def test_bad_requests_are_refused_naming_the_problem_and_the_service_stays_up(service, models):
    model = beam.Row(model_uri=str(models["v1"]))
    assert "unknown handler 'sklearn_numpyy'" in refused(service.address, handler="sklearn_numpyy")
    assert "not allowed by filter" in refused(service.address, constructor="os.system", command="id")
    message = refused(service.address, handler="sklearn_numpy", handler_args=model,
                      preprocess=["os.system"])
    assert "preprocess[0] 'os.system' is not in an allowed module" in message
    assert "--allow-module os" in message
    message = refused(service.address, handler="sklearn_numpy", handler_args=model,
                      preprocess=["lambda line: line.split(',')"])
    assert "inline Python source" in message and "--allow-inline-source" in message
    message = refused(service.address, handler="sklearn_numpy",
                      handler_args=beam.Row(model_uri=str(models["v1"]), max_batch_size="ten"))
    assert "argument 'max_batch_size' must be an integer, got str 'ten'" in message
    message = refused(service.address, handler="sklearn_numpy", handler_args=model,
                      exception_handling="yes")
    assert "exception_handling must be a boolean, got str 'yes'" in message
    missing = str(models["v1"].parent / "missing.pkl")
    message = refused(service.address, handler="sklearn_numpy",
                      handler_args=beam.Row(model_uri=missing))
    assert f"no model file at {missing!r} (in model root" in message
    message = refused(service.address, handler="sklearn_numpy", handler_args=model,
                      inference_type="decimal")
    assert "inference_type 'decimal' is not a type this service knows" in message
    # Still up: a good request after all the bad ones.
    assert expand(service.address, handler="sklearn_numpy", handler_args=model,
                  preprocess=[PARSE]) is not None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_service_shuts_down_cleanly_on_signal(tmp_path, models, signum):
    with xlang_runtime.start_service(tmp_path, "--allow-inline-source") as running:
        # This one runs arbitrary code, so inline source is accepted.
        assert expand(running.address, handler="sklearn_numpy",
                      handler_args=beam.Row(model_uri=str(models["v1"])),
                      preprocess=["lambda line: __import__('numpy').array("
                                  "[float(v) for v in line.split(',')])"]) is not None
        running.process.send_signal(signum)
        assert running.process.wait(timeout=20) == 0
        assert "stopped" in running.process.stdout.read()
    log = running.log.read_text()
    assert f"received {signal.Signals(signum).name}, shutting down" in log
    assert "Traceback" not in log


def test_serve_without_environment_refuses_no_worker_pool():
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--no-worker-pool"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--no-worker-pool needs --environment-type" in result.stderr


def test_unknown_command_line_flag_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--prot", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "unrecognized arguments: --prot" in result.stderr


def test_a_model_root_that_is_not_a_folder_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--port", "0",
         "--model-root", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"model root {str(tmp_path / 'none')!r} is not a directory" in result.stderr


def test_list_handlers_prints_every_handler_name_with_its_class_and_exits():
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--list-handlers"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "sklearn_numpy: liveinference.sklearn_inference.SklearnModelHandlerNumpy" in lines
    assert "onnx_numpy: liveinference.onnx_inference.OnnxModelHandlerNumpy" in lines
    assert "listening" not in result.stdout


def test_service_stops_when_its_standard_input_closes(tmp_path):
    with xlang_runtime.start_service(tmp_path, "--stop-on-stdin-eof",
                                     stdin=subprocess.PIPE) as running:
        running.process.stdin.close()
        assert running.process.wait(timeout=30) == 0
        assert "stopped" in running.process.stdout.read()
    log = running.log.read_text()
    assert "standard input closed (--stop-on-stdin-eof), shutting down" in log
    assert "Traceback" not in log
