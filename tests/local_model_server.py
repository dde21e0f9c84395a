"""A real HTTP model server for tests: TF Serving's and Vertex AI's REST predict APIs,
answering with a model the test trained, or failing as the test scripts it."""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy

from examples.xlang_runtime import free_port

_LOG = logging.getLogger(__name__)

_ROUTES = (
    re.compile(r"^/v1/models/(?P<model>[^/:]+)(/versions/\d+|/labels/[^/:]+)?:predict$"),
    re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/endpoints/(?P<endpoint>[^/:]+):predict$"),
    re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/endpoints/(?P<invoke>[^/:]+)/invoke/.+$"),
)
DEPLOYED_MODEL_ID = "4242"


def down_server_url() -> str:
    """Returns a loopback URL where no server listens (its port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


class ModelServer:
    """A threaded HTTP server answering TF Serving's and Vertex AI's predict APIs.

    `script` holds what the next requests get instead of predictions: "fail" (HTTP 503),
    "stall" (no answer until the server closes) or "short" (one prediction too few);
    `fail_all` answers 503 to everything.
    `requests` records (path, body) of every request.
    """

    def __init__(self, model: Any, model_name: str = "clf", token: Optional[str] = None) -> None:
        self.model, self.model_name, self.token = model, model_name, token
        self.script: Deque[str] = collections.deque()
        self.fail_all = False
        self.requests: List[Tuple[str, Dict[str, Any]]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str, headers: Any, body: Dict[str, Any]) -> Tuple[int, Any]:
        with self._lock:
            self.requests.append((path, body))
            action = self.script.popleft() if self.script else ("fail" if self.fail_all else "")
        if action == "stall":
            self.closing.wait()
            return 503, {"error": "closing"}
        if action == "fail":
            return 503, {"error": "overloaded"}
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "missing or wrong bearer token"}
        match = next((m for m in (r.match(path) for r in _ROUTES) if m), None)
        if match is None or match.groupdict().get("model", self.model_name) != self.model_name:
            return 404, {"error": f"Servable not found for request: {path}"}
        try:
            predictions = self.model.predict(numpy.asarray(body["instances"], dtype=float))
        except (KeyError, ValueError) as error:
            return 400, {"error": str(error)}
        if action == "short":
            predictions = predictions[:-1]
        if "invoke" in match.groupdict():
            return 200, predictions.tolist()
        answer: Dict[str, Any] = {"predictions": predictions.tolist()}
        if "endpoint" in match.groupdict():
            answer["deployedModelId"] = DEPLOYED_MODEL_ID
        return 200, answer

    def _request_handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                status, answer = server.answer(
                    self.path, self.headers, json.loads(self.rfile.read(length))
                )
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    _LOG.info("client left before the answer to %s", self.path)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                _LOG.debug(format, *args)

        return Handler
