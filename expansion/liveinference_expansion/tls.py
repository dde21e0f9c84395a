"""Who may listen where: loopback without TLS, any other interface only with TLS.

`listen_credentials` is the one rule: a host that is not loopback needs a certificate and key
(and, for mutual TLS, the CA that signs the clients' certificates); without them the service
refuses to start, loudly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Optional

import grpc

__all__ = ["InsecureListenRefused", "TlsFiles", "is_loopback", "listen_credentials"]


class InsecureListenRefused(ValueError):
    """Listening beyond loopback was asked for without TLS server credentials."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM files for the gRPC server.

    Attributes:
        cert: The server's certificate chain.
        key: Its private key.
        client_ca: CA certificates that sign client certificates; given, clients must present
            one (mutual TLS).
    """

    cert: str
    key: str
    client_ca: Optional[str] = None


def is_loopback(host: str) -> bool:
    """Returns True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InsecureListenRefused(f"cannot read the TLS {what} {path!r}: {error}") from error


def listen_credentials(host: str, tls: Optional[TlsFiles]) -> Optional[grpc.ServerCredentials]:
    """The server credentials for `host`, or None for plaintext on loopback.

    Args:
        host: The interface to listen on.
        tls: The TLS files, if any were given.

    Returns:
        TLS credentials when `tls` is given (on any host); None on loopback without TLS.

    Raises:
        InsecureListenRefused: if `host` is not loopback and `tls` is None, or a file cannot
            be read.
    """
    if tls is None:
        if is_loopback(host):
            return None
        raise InsecureListenRefused(
            f"REFUSING to listen on {host!r} without TLS: anyone who can reach that interface "
            "could ask this service to expand transforms and fetch its artifacts. Give "
            "--tls-cert and --tls-key (and --tls-client-ca to require client certificates), "
            "or listen on 127.0.0.1"
        )
    root = _read(tls.client_ca, "client CA") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(tls.key, "key"), _read(tls.cert, "certificate"))],
        root_certificates=root,
        require_client_auth=root is not None,
    )
