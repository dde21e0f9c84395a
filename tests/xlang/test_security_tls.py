"""Beyond loopback only with TLS: the service on every interface answers a real expansion
request over TLS (and, with a client CA, only from clients with a certificate), never plaintext."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Dict, Tuple

import apache_beam as beam
import grpc
import pytest
from apache_beam.portability.api import (
    beam_artifact_api_pb2_grpc,
    beam_expansion_api_pb2_grpc,
)
from apache_beam.transforms.fully_qualified_named_transform import (
    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
    FullyQualifiedNamedTransform,
)

from examples import xlang_runtime
from liveinference_expansion import TRANSFORM_NAME

x509 = pytest.importorskip("cryptography.x509", reason="TLS tests need the cryptography package")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

PARSE = "liveinference_expansion.functions.parse_csv_floats"


def _certificate(name: str, issuer: Tuple[object, object] = None, ca: bool = False,
                 ) -> Tuple[object, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(folder: Path, name: str, cert, key) -> Dict[str, Path]:
    paths = {"cert": folder / f"{name}.pem", "key": folder / f"{name}.key"}
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, Path]]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca = _certificate("liveinference test CA", ca=True)
    return {"ca": _write(folder, "ca", *ca),
            "server": _write(folder, "server", *_certificate("localhost", issuer=ca)),
            "client": _write(folder, "client", *_certificate("pipeline", issuer=ca))}


class _Service:
    """What Beam's ExternalTransform calls on a service: Expand, then the artifact service
    (the client fetches the files the service staged for its environment)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Expand = beam_expansion_api_pb2_grpc.ExpansionServiceStub(channel).Expand
        self._artifacts = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(channel)

    def artifact_service(self) -> beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub:
        return self._artifacts


def _expand(channel: grpc.Channel, model: Path) -> dict:
    payload = FullyQualifiedNamedTransform(
        TRANSFORM_NAME, (), dict(handler="sklearn_numpy",
                                 handler_args=beam.Row(model_uri=str(model)),
                                 preprocess=[PARSE])).to_runner_api_parameter(None)[1]
    pipeline = beam.Pipeline()
    return (pipeline | beam.Create(["1,2,3,4"]) | beam.ExternalTransform(
        PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN, payload.SerializeToString(),
        _Service(channel)))


def _port(running: xlang_runtime.Running) -> int:
    return int(running.address.rsplit(":", 1)[1])


def test_every_interface_with_tls_serves_tls_clients_only(pki, models, tmp_path):
    server = pki["server"]
    with xlang_runtime.start_service(tmp_path, "--host", "0.0.0.0", "--tls-cert",
                                     str(server["cert"]), "--tls-key", str(server["key"])) as running:
        assert running.address.startswith("0.0.0.0:")
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"]["cert"].read_bytes())
        with grpc.secure_channel(f"localhost:{_port(running)}", credentials) as channel:
            assert _expand(channel, models["v1"]) is not None
        with grpc.insecure_channel(f"127.0.0.1:{_port(running)}") as channel:
            with pytest.raises(grpc.RpcError):
                _expand(channel, models["v1"])
    assert "listening at 0.0.0.0" in running.log.read_text() and "(TLS)" in running.log.read_text()


def test_mutual_tls_refuses_a_client_without_a_certificate(pki, models, tmp_path):
    server, client, ca = pki["server"], pki["client"], pki["ca"]["cert"].read_bytes()
    with xlang_runtime.start_service(tmp_path, "--host", "0.0.0.0", "--tls-cert",
                                     str(server["cert"]), "--tls-key", str(server["key"]),
                                     "--tls-client-ca", str(pki["ca"]["cert"])) as running:
        target = f"localhost:{_port(running)}"
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
            with pytest.raises(grpc.RpcError):
                _expand(channel, models["v1"])
        with_certificate = grpc.ssl_channel_credentials(
            ca, client["key"].read_bytes(), client["cert"].read_bytes())
        with grpc.secure_channel(target, with_certificate) as channel:
            assert _expand(channel, models["v1"]) is not None
