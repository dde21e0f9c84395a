"""An S3-compatible object store on this machine for the cluster: moto's standalone server.

Models, model announcements and the event channel live in its bucket; every worker reaches it
through Beam's own S3 filesystem, given `--s3_endpoint_url` and keys as pipeline options (the
SDK worker sets Beam's filesystems up from them), as a cluster reaches S3, MinIO or SeaweedFS.
Nothing of it is on a path the TaskManagers share.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from cluster.config import free_port

__all__ = ["ObjectStore"]

_KEYS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing",
         "s3_region_name": "us-east-1"}


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class ObjectStore:
    """moto's S3 server in a process of its own, with one bucket; use as a context manager.

    Args:
        bucket: the bucket to create.
        timeout: seconds to wait for the server to listen.
    """

    def __init__(self, bucket: str = "liveinference", timeout: float = 60) -> None:
        self.bucket = bucket
        self._timeout = timeout
        self._port = free_port()
        self._server: Optional[subprocess.Popen] = None
        self._client: Any = None

    @property
    def options(self) -> Dict[str, str]:
        """Beam's S3 options that reach this store (endpoint, keys, region)."""
        return {"s3_endpoint_url": f"http://127.0.0.1:{self._port}", **_KEYS}

    def flags(self) -> List[str]:
        """`options` as pipeline flags."""
        return [f"--{name}={value}" for name, value in self.options.items()]

    def uri(self, key: str) -> str:
        """The s3:// URI of `key` in the bucket."""
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, payload: bytes) -> str:
        """Uploads `payload` as `key` (visible only once complete); returns its URI."""
        self._client.put_object(Bucket=self.bucket, Key=key, Body=payload)
        return self.uri(key)

    def keys(self, prefix: str) -> List[str]:
        """The keys under `prefix`."""
        listed = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]

    def __enter__(self) -> "ObjectStore":
        """Starts the server and creates the bucket.

        Raises:
            ModuleNotFoundError: moto[server] or boto3 is not installed (`make venv`).
            TimeoutError: the server did not listen within the timeout.
        """
        import boto3
        import moto.server  # noqa: F401 - fails early, naming the missing package

        self._server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self._port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._timeout
        while not _listening(self._port):
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"moto's S3 server did not listen on port {self._port} "
                                   f"within {self._timeout:.0f}s; run `python -m moto.server` "
                                   "by hand to see why")
            time.sleep(0.2)
        self._client = boto3.client(
            "s3", endpoint_url=self.options["s3_endpoint_url"],
            aws_access_key_id=_KEYS["s3_access_key_id"],
            aws_secret_access_key=_KEYS["s3_secret_access_key"],
            region_name=_KEYS["s3_region_name"],
        )
        self._client.create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stops the server; its data is gone."""
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(timeout=30)
        self._server = None
