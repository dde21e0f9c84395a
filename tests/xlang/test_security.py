"""Issue 9's attacks on the expansion service and its worker pool, sent as a real client.

Each payload would run code in the service (touch a marker file) or read a root-only file on
the code before the fix. The requests are built here with Beam's protos and sent by a tiny gRPC
client run as the unprivileged user `nobody` (`runuser`, Debian's python3 and a copy of the
venv's grpcio), with raw bytes, as an attacker on the same machine would. Each test asserts that
the marker never appears and that the answer names what was refused.
"""

from __future__ import annotations

import json
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import apache_beam as beam
import grpc
import pytest
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import (
    beam_artifact_api_pb2,
    beam_expansion_api_pb2,
    beam_fn_api_pb2,
    beam_runner_api_pb2,
    endpoints_pb2,
    external_transforms_pb2,
    schema_pb2,
)
from apache_beam.runners import pipeline_context
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.fully_qualified_named_transform import (
    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
    FullyQualifiedNamedTransform,
)
from apache_beam.transforms.window import GlobalWindows
from google.protobuf import wrappers_pb2

from examples import xlang_runtime
from liveinference_expansion import TRANSFORM_NAME
from liveinference_expansion.stock_beam import BEAM_CONSTRUCTOR

EXPAND = "/org.apache.beam.model.expansion.v1.ExpansionService/Expand"
GET_ARTIFACT = "/org.apache.beam.model.job_management.v1.ArtifactRetrievalService/GetArtifact"
START_WORKER = "/org.apache.beam.model.fn_execution.v1.BeamFnExternalWorkerPool/StartWorker"
SYSTEM_PYTHON = Path("/usr/bin/python3")

_CLIENT = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
target, method, kind, request_path, result_path = sys.argv[2:7]
with open(request_path, "rb") as file:
    request = file.read()
with grpc.insecure_channel(target) as channel:
    call = getattr(channel, "unary_stream" if kind == "stream" else "unary_unary")(method)
    try:
        answer = call(request, timeout=60)
        answers = list(answer) if kind == "stream" else [answer]
        result = {"ok": True, "responses": [a.hex() for a in answers]}
    except grpc.RpcError as error:
        result = {"ok": False, "code": error.code().name, "details": error.details()}
with open(result_path, "w") as file:
    json.dump(result, file)
'''


class Client:
    """Sends raw request bytes to a gRPC method as `user` (None: this process's user)."""

    def __init__(self, folder: Path, user: Optional[str]) -> None:
        self.folder = folder
        self.user = user

    def send(self, target: str, method: str, request: bytes, stream: bool = False) -> dict:
        """Returns {"ok": True, "responses": [bytes...]} or {"ok": False, "code", "details"}."""
        request_path = self.folder / "request.bin"
        result_path = self.folder / "result.json"
        request_path.write_bytes(request)
        request_path.chmod(0o644)
        result_path.write_text("")
        result_path.chmod(0o666)
        python = str(SYSTEM_PYTHON) if self.user else sys.executable
        command = [python, str(self.folder / "client.py"), str(self.folder / "lib"), target,
                   method, "stream" if stream else "unary", str(request_path), str(result_path)]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, timeout=120, cwd=self.folder)
        result = json.loads(result_path.read_text())
        result["responses"] = [bytes.fromhex(r) for r in result.get("responses", [])]
        return result


def _why_not_nobody() -> Optional[str]:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        return "switching users needs root and runuser"
    if not SYSTEM_PYTHON.exists():
        return f"no {SYSTEM_PYTHON} for the unprivileged client"
    version = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        return f"{SYSTEM_PYTHON} is Python {version}, the venv's grpcio needs {sys.version_info[:2]}"
    return None


@pytest.fixture(scope="module")
def client_folder() -> Iterator[Path]:
    """A folder `nobody` can read: the client script and a copy of grpcio (the venv is under
    /root, which `nobody` cannot enter)."""
    folder = Path(tempfile.mkdtemp(prefix="liveinference-attacker-"))
    folder.chmod(0o755)
    (folder / "client.py").write_text(_CLIENT)
    shutil.copytree(Path(grpc.__file__).parent, folder / "lib" / "grpc")
    # Newer grpcio releases (the Beam-latest leg's) import typing_extensions.
    extensions = importlib.util.find_spec("typing_extensions")
    if extensions is not None and extensions.origin:
        shutil.copy(extensions.origin, folder / "lib" / "typing_extensions.py")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def attacker(client_folder: Path) -> Client:
    """`nobody` where the machine allows it, else this process's user (the same requests)."""
    return Client(client_folder, None if _why_not_nobody() else "nobody")


@pytest.fixture(scope="module")
def nobody(client_folder: Path) -> Client:
    """Strictly another user: skips where users cannot be switched."""
    reason = _why_not_nobody()
    if reason:
        pytest.skip(reason=f"cannot act as another local user: {reason}")
    return Client(client_folder, "nobody")


class _TouchOnUnpickle:
    """Unpickling this runs `touch MARKER`: what a pickled payload can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _request(transform: beam_runner_api_pb2.PTransform,
             components: Optional[beam_runner_api_pb2.Components] = None,
             ) -> bytes:
    return beam_expansion_api_pb2.ExpansionRequest(
        transform=transform, components=components, namespace="attack").SerializeToString()


def _named_transform(**kwargs) -> beam_runner_api_pb2.PTransform:
    payload = FullyQualifiedNamedTransform(TRANSFORM_NAME, (), kwargs).to_runner_api_parameter(
        None)[1]
    return beam_runner_api_pb2.PTransform(
        unique_name="attack",
        spec=beam_runner_api_pb2.FunctionSpec(urn=PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
                                              payload=payload.SerializeToString()))


def _refusal(result: dict) -> str:
    assert result["ok"], result
    return beam_expansion_api_pb2.ExpansionResponse.FromString(result["responses"][0]).error


def test_pickled_python_transform_urn_is_refused_unread(service, attacker, tmp_path):
    marker = tmp_path / "pickled_transform_ran"
    transform = beam_runner_api_pb2.PTransform(
        unique_name="attack",
        spec=beam_runner_api_pb2.FunctionSpec(urn=python_urns.PICKLED_TRANSFORM,
                                              payload=pickler.dumps(_TouchOnUnpickle(marker))))
    error = _refusal(attacker.send(service.address, EXPAND, _request(transform)))
    assert "refused before decoding: transform URN 'beam:transform:pickled_python:v1'" in error
    assert not marker.exists()


def test_pardo_with_a_pickled_dofn_is_refused_unread(service, attacker, tmp_path):
    marker = tmp_path / "pickled_dofn_ran"
    pardo = beam_runner_api_pb2.ParDoPayload(do_fn=beam_runner_api_pb2.FunctionSpec(
        urn=python_urns.PICKLED_DOFN_INFO, payload=pickler.dumps(_TouchOnUnpickle(marker))))
    transform = beam_runner_api_pb2.PTransform(
        unique_name="attack",
        spec=beam_runner_api_pb2.FunctionSpec(urn=common_urns.primitives.PAR_DO.urn,
                                              payload=pardo.SerializeToString()))
    error = _refusal(attacker.send(service.address, EXPAND, _request(transform)))
    assert "refused before decoding: transform URN 'beam:transform:pardo:v1'" in error
    assert not marker.exists()


def test_kwargs_row_with_a_python_callable_field_is_refused_unread(service, attacker, tmp_path):
    marker = tmp_path / "python_callable_ran"
    source = f"__import__('os').system('touch {marker}')"
    # Encode the source as a string, then declare the field python_callable in the schema:
    # the service would compile and run it while decoding the row. Nested in a Row, as Java
    # would send handler_args.
    transform = _named_transform(handler="sklearn_numpy",
                                 handler_args=beam.Row(model_uri=source))
    config = external_transforms_pb2.ExternalConfigurationPayload.FromString(
        transform.spec.payload)
    (kwargs,) = [f for f in config.schema.fields if f.name == "kwargs"]
    (handler_args,) = [f for f in kwargs.type.row_type.schema.fields if f.name == "handler_args"]
    (model_uri,) = handler_args.type.row_type.schema.fields
    model_uri.type.CopyFrom(schema_pb2.FieldType(logical_type=schema_pb2.LogicalType(
        urn=common_urns.python_callable.urn,
        representation=schema_pb2.FieldType(atomic_type=schema_pb2.STRING))))
    transform.spec.payload = config.SerializeToString()
    error = _refusal(attacker.send(service.address, EXPAND, _request(transform)))
    assert ("refused before decoding: field 'kwargs.handler_args.model_uri' of the transform's "
            "arguments has logical type 'beam:logical_type:python_callable:v1'") in error
    assert not marker.exists()


def test_pickled_coder_in_the_components_is_refused_unread(service, attacker, tmp_path):
    marker = tmp_path / "pickled_coder_ran"
    coder = beam_runner_api_pb2.Coder(spec=beam_runner_api_pb2.FunctionSpec(
        urn=python_urns.PICKLED_CODER,
        payload=wrappers_pb2.BytesValue(
            value=b"Evil$" + pickler.dumps(_TouchOnUnpickle(marker), use_zlib=True)
        ).SerializeToString()))
    components = beam_runner_api_pb2.Components(
        coders={"evil": coder},
        windowing_strategies={"global": beam_runner_api_pb2.WindowingStrategy(
            window_fn=beam_runner_api_pb2.FunctionSpec(urn=common_urns.global_windows.urn),
            window_coder_id="evil")},
        pcollections={"input": beam_runner_api_pb2.PCollection(
            unique_name="input", coder_id="evil", windowing_strategy_id="global")},
        transforms={"impulse": beam_runner_api_pb2.PTransform(
            unique_name="impulse", outputs={"out": "input"},
            spec=beam_runner_api_pb2.FunctionSpec(urn=common_urns.primitives.IMPULSE.urn))},
    )
    transform = _named_transform(handler="sklearn_numpy")
    transform.inputs["input"] = "input"
    error = _refusal(attacker.send(service.address, EXPAND, _request(transform, components)))
    assert ("refused before decoding: coder 'evil' has URN 'beam:coder:pickled_python:v1', "
            "not a standard Beam coder") in error
    assert not marker.exists()


def test_pickled_output_coder_requests_and_unused_pickled_coders_are_never_decoded(
        service, attacker, models, tmp_path):
    """Beam 2.77's Python asks for a pickled output coder when the output type is unknown, and
    any SDK may send coders of earlier steps: both are dropped unread, and the request expands."""
    marker = tmp_path / "output_coder_ran"
    evil = beam_runner_api_pb2.Coder(spec=beam_runner_api_pb2.FunctionSpec(
        urn=python_urns.PICKLED_CODER,
        payload=wrappers_pb2.BytesValue(
            value=b"Evil$" + pickler.dumps(_TouchOnUnpickle(marker), use_zlib=True)
        ).SerializeToString()))
    transform = _named_transform(handler="sklearn_numpy",
                                 handler_args=beam.Row(model_uri=str(models["v1"])))
    request = beam_expansion_api_pb2.ExpansionRequest.FromString(_with_an_input(transform))
    request.components.coders["evil_output"].CopyFrom(evil)
    request.components.coders["evil_unused"].CopyFrom(evil)
    request.output_coder_requests["0"] = "evil_output"
    result = attacker.send(service.address, EXPAND, request.SerializeToString())
    assert result["ok"], result
    response = beam_expansion_api_pb2.ExpansionResponse.FromString(result["responses"][0])
    assert not response.error, response.error
    assert response.transform.outputs
    assert not marker.exists()


def _with_an_input(transform: beam_runner_api_pb2.PTransform) -> bytes:
    """The request as Java sends it: the transform applied to an Impulse's bytes."""
    context = pipeline_context.PipelineContext()
    components = beam_runner_api_pb2.Components(
        pcollections={"input": beam_runner_api_pb2.PCollection(
            unique_name="input", coder_id=context.coders.get_id(beam.coders.BytesCoder()),
            windowing_strategy_id=context.windowing_strategies.get_id(
                Windowing(GlobalWindows())))},
        transforms={"impulse": beam_runner_api_pb2.PTransform(
            unique_name="impulse", outputs={"out": "input"},
            spec=beam_runner_api_pb2.FunctionSpec(urn=common_urns.primitives.IMPULSE.urn))},
    )
    components.MergeFrom(context.to_runner_api())
    transform.inputs["input"] = "input"
    return _request(transform, components)


def test_expansion_does_not_tell_which_files_exist(service, attacker, models, tmp_path):
    """Existing, root-only and missing files outside the model root get the same answer (the
    workers report a bad path when they load it); inside the root a missing file is named."""
    secret = tmp_path / "root-only.pkl"
    secret.write_bytes(b"not for nobody")
    secret.chmod(0o600)
    root = models["v1"].parent
    probes = ["/etc/shadow", str(secret), "/no/such/model.pkl", str(tmp_path / "absent.pkl"),
              f"{root}/../../no/such/model.pkl", f"{root}/../{root.name}-other/model.pkl"]
    answers = {
        path: _refusal(attacker.send(service.address, EXPAND, _with_an_input(_named_transform(
            handler="sklearn_numpy", handler_args=beam.Row(model_uri=path)))))
        for path in probes
    }
    assert answers == {path: "" for path in probes}
    missing = str(root / "missing.pkl")
    error = _refusal(attacker.send(service.address, EXPAND, _with_an_input(_named_transform(
        handler="sklearn_numpy", handler_args=beam.Row(model_uri=missing)))))
    assert f"no model file at {missing!r} (in model root {str(root)!r})" in error


def _declare_python_callable(transform: beam_runner_api_pb2.PTransform, *path: str) -> None:
    """Declares the string field at `path` (under kwargs) a python_callable, as Java does for
    a `PythonCallableSource`: Beam's decoder would compile it."""
    config = external_transforms_pb2.ExternalConfigurationPayload.FromString(
        transform.spec.payload)
    fields = config.schema.fields
    (field,) = [f for f in fields if f.name == "kwargs"]
    for name in path:
        (field,) = [f for f in field.type.row_type.schema.fields if f.name == name]
    field.type.CopyFrom(schema_pb2.FieldType(logical_type=schema_pb2.LogicalType(
        urn=common_urns.python_callable.urn,
        representation=schema_pb2.FieldType(atomic_type=schema_pb2.STRING))))
    transform.spec.payload = config.SerializeToString()


def _beam_stock_run_inference(source: str, **kwargs) -> beam_runner_api_pb2.PTransform:
    """The request of Beam's stock Java RunInference: its constructor, the model loader as
    python_callable source, the loader's keyword arguments."""
    payload = FullyQualifiedNamedTransform(
        BEAM_CONSTRUCTOR, (), {"model_handler_provider": source, **kwargs}
    ).to_runner_api_parameter(None)[1]
    transform = beam_runner_api_pb2.PTransform(
        unique_name="stock",
        spec=beam_runner_api_pb2.FunctionSpec(urn=PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
                                              payload=payload.SerializeToString()))
    _declare_python_callable(transform, "model_handler_provider")
    return transform


def _touching_loader(marker: Path) -> str:
    return (f"__import__('os').system('touch {marker}')\n"
            "def get_model_handler(model_uri):\n"
            "  from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy\n"
            "  return SklearnModelHandlerNumpy(model_uri)\n")


@pytest.fixture(scope="module")
def inline_service(tmp_path_factory) -> Iterator[xlang_runtime.Running]:
    """A service whose operator allows inline source (Beam's stock Java RunInference)."""
    with xlang_runtime.start_service(tmp_path_factory.mktemp("inline-service"),
                                     "--allow-inline-source") as running:
        yield running


def test_beam_stock_run_inference_is_refused_unread_without_the_flag(service, attacker, models,
                                                                     tmp_path):
    marker = tmp_path / "loader_ran"
    request = _with_an_input(_beam_stock_run_inference(_touching_loader(marker),
                                                       model_uri=str(models["v1"])))
    error = _refusal(attacker.send(service.address, EXPAND, request))
    assert (f"refused before decoding: constructor {BEAM_CONSTRUCTOR!r} (Beam's stock Java "
            "RunInference) sends its model handler as Python source") in error
    assert "start the service with --allow-inline-source to accept it" in error
    assert not marker.exists()


def test_with_the_flag_python_callable_fields_stay_refused_elsewhere(inline_service, attacker,
                                                                     models, tmp_path):
    """Only Beam's stock transform, and only its model_handler_provider, may carry source."""
    marker = tmp_path / "callable_ran"
    ours = _named_transform(handler="sklearn_numpy", handler_args=beam.Row(
        model_uri=str(models["v1"])), model_handler_provider=_touching_loader(marker))
    _declare_python_callable(ours, "model_handler_provider")
    error = _refusal(attacker.send(inline_service.address, EXPAND, _with_an_input(ours)))
    assert ("refused before decoding: field 'kwargs.model_handler_provider' of the transform's "
            "arguments has logical type 'beam:logical_type:python_callable:v1', which only "
            f"{BEAM_CONSTRUCTOR!r} may carry") in error
    stock = _beam_stock_run_inference("def get_model_handler(model_uri):\n  return None\n",
                                      model_uri=f"__import__('os').system('touch {marker}')")
    _declare_python_callable(stock, "model_uri")
    error = _refusal(attacker.send(inline_service.address, EXPAND, _with_an_input(stock)))
    assert ("refused before decoding: field 'kwargs.model_uri' of the transform's arguments has "
            "logical type 'beam:logical_type:python_callable:v1'") in error
    assert not marker.exists()


def test_with_the_flag_beam_stock_run_inference_expands_into_the_rows_it_asks_for(
        inline_service, attacker, models):
    request = beam_expansion_api_pb2.ExpansionRequest.FromString(_with_an_input(
        _beam_stock_run_inference(
            "from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy\n"
            "def get_model_handler(model_uri):\n"
            "  return SklearnModelHandlerNumpy(model_uri)\n",
            model_uri=str(models["v1"]))))
    schema = schema_pb2.Schema(fields=[
        schema_pb2.Field(name="example", type=schema_pb2.FieldType(array_type=schema_pb2.ArrayType(
            element_type=schema_pb2.FieldType(atomic_type=schema_pb2.DOUBLE)))),
        schema_pb2.Field(name="inference", type=schema_pb2.FieldType(atomic_type=schema_pb2.INT64)),
    ])
    request.components.coders["rows"].CopyFrom(beam_runner_api_pb2.Coder(
        spec=beam_runner_api_pb2.FunctionSpec(urn=common_urns.coders.ROW.urn,
                                              payload=schema.SerializeToString())))
    request.output_coder_requests["random_output_key"] = "rows"
    result = attacker.send(inline_service.address, EXPAND, request.SerializeToString())
    response = beam_expansion_api_pb2.ExpansionResponse.FromString(result["responses"][0])
    assert response.error == ""
    (output,) = response.transform.outputs.values()
    coder = response.components.coders[response.components.pcollections[output].coder_id]
    assert coder.spec.urn == common_urns.coders.ROW.urn
    assert [f.name for f in schema_pb2.Schema.FromString(coder.spec.payload).fields] == [
        "example", "inference"]


def _artifact_request(path: str) -> bytes:
    return beam_artifact_api_pb2.GetArtifactRequest(artifact=beam_runner_api_pb2.ArtifactInformation(
        type_urn=common_urns.artifact_types.FILE.urn,
        type_payload=beam_runner_api_pb2.ArtifactFilePayload(path=path).SerializeToString(),
    )).SerializeToString()


def test_get_artifact_of_a_root_only_file_is_refused(service, attacker, tmp_path):
    secret = tmp_path / "root-only.txt"
    secret.write_text("the service's secret")
    secret.chmod(0o600)
    for path in (str(secret), "/etc/shadow"):
        result = attacker.send(service.address, GET_ARTIFACT, _artifact_request(path), stream=True)
        assert not result["ok"], result
        assert result["code"] == "PERMISSION_DENIED"
        assert (f"refused: file {path!r} is not an artifact this expansion service staged"
                in result["details"])
    # A URL artifact would make the service fetch it (server-side request forgery).
    url = beam_artifact_api_pb2.GetArtifactRequest(artifact=beam_runner_api_pb2.ArtifactInformation(
        type_urn=common_urns.artifact_types.URL.urn,
        type_payload=beam_runner_api_pb2.ArtifactUrlPayload(
            url="http://169.254.169.254/latest/meta-data/").SerializeToString()))
    result = attacker.send(service.address, GET_ARTIFACT, url.SerializeToString(), stream=True)
    assert result["code"] == "PERMISSION_DENIED", result
    assert "an artifact of type 'beam:artifact:type:url:v1' is not an artifact" in result["details"]


def test_another_user_cannot_start_a_worker(service, nobody):
    request = beam_fn_api_pb2.StartWorkerRequest(
        worker_id="intruder",
        control_endpoint=endpoints_pb2.ApiServiceDescriptor(url="localhost:1"))
    result = nobody.send(service.extra["workers"], START_WORKER, request.SerializeToString())
    # The pool's socket lives in a 0700 folder of the service's user: no connection at all.
    assert not result["ok"], result
    assert result["code"] == "UNAVAILABLE" and "Permission denied" in result["details"]


def _start_worker_error(pool: str, worker_id: str, control_url: str) -> str:
    """Asks the worker pool at `pool` to start a worker; returns the error it answers."""
    request = beam_fn_api_pb2.StartWorkerRequest(
        worker_id=worker_id,
        control_endpoint=endpoints_pb2.ApiServiceDescriptor(url=control_url))
    with grpc.insecure_channel(pool) as channel:
        response = channel.unary_unary(START_WORKER)(request.SerializeToString(), timeout=60)
    return beam_fn_api_pb2.StartWorkerResponse.FromString(response).error


def test_a_quote_in_the_control_endpoint_is_refused_and_never_run(service, tmp_path):
    """Sent by the service's own user: the only one who can reach the pool now."""
    marker = tmp_path / "injected_code_ran"
    url = f'" + str(__import__("os").system("touch {marker}")) + "'
    error = _start_worker_error(service.extra["workers"], "injection", url)
    assert error.startswith(f"refused: control_endpoint {url!r} is not a loopback host:port")
    assert not marker.exists()


def test_listening_beyond_loopback_without_tls_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--host", "0.0.0.0",
         "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=xlang_runtime.ROOT,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REFUSING to listen on '0.0.0.0' without TLS" in result.stderr
    assert "--tls-cert and --tls-key" in result.stderr
    assert "listening" not in result.stdout


@pytest.mark.parametrize("url", ["attacker.example:50000", "10.0.0.1:50000", "localhost:0",
                                 "localhost:50000/../x"])
def test_a_control_endpoint_off_this_machine_or_malformed_is_refused(service, url):
    error = _start_worker_error(service.extra["workers"], "remote", url)
    assert error.startswith(f"refused: control_endpoint {url!r} is not a loopback host:port")


def test_the_pool_refuses_a_folder_another_user_made(tmp_path):
    """Another user who made the socket folder first could replace the socket: refuse it."""
    if os.geteuid() != 0:
        pytest.skip(reason="making a folder owned by another user needs root")
    folder = tmp_path / "pool"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--port", "0",
         "--worker-pool-dir", str(folder)],
        capture_output=True, text=True, timeout=60, cwd=xlang_runtime.ROOT,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"worker pool directory {str(folder)!r} must be a real directory owned by uid 0" \
        in result.stderr


def test_the_process_boot_command_refuses_a_remote_provision_endpoint():
    result = subprocess.run(
        [sys.executable, "-m", "liveinference_expansion.boot", "--id=w1",
         "--provision_endpoint=attacker.example:50000"],
        capture_output=True, text=True, timeout=60, cwd=xlang_runtime.ROOT,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("worker w1 not started: --provision_endpoint 'attacker.example:50000' is not a "
            "loopback host:port") in result.stderr
