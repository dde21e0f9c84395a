"""Handlers for a model server's REST predict API, in TF Serving's and Vertex AI's JSON shape.

Both servers take `POST ...:predict` with `{"instances": [one JSON value per example]}`
and answer `{"predictions": [one per example]}`. `ModelServerHandler` sends each batch so,
over Python's standard HTTP client, and pairs the predictions with the examples;
`TFServingModelHandler` points it at TF Serving's `/v1/models/NAME[/versions/N]:predict`
(Vertex AI's handler is in `vertex_ai`). Retries, backoff and throttling come from
`RemoteModelHandler`: by default a call is retried when the server cannot be reached, does
not answer in time, or answers 429 or 5xx; a 4xx answer is not retried.
"""

from __future__ import annotations

import inspect
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from liveinference.batching import HANDLER_BATCHING_ARGUMENTS, handler_batching_kwargs
from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError
from liveinference.frameworks.batches import to_prediction_results
from liveinference.remote import RateLimitExceeded, RemoteModelHandler

__all__ = [
    "REMOTE_ARGUMENTS",
    "ModelServerError",
    "ModelServerHandler",
    "PredictClient",
    "TFServingModelHandler",
    "forwarded_arguments",
    "retry_on_server_errors",
]

_LOG = logging.getLogger(__name__)

Headers = Union[Mapping[str, str], Callable[[], Mapping[str, str]], None]

# RemoteModelHandler's arguments, which the model server handlers take as keyword
# arguments: all but `namespace`, which each handler sets to its class name.
REMOTE_ARGUMENTS = tuple(
    name
    for name in inspect.signature(RemoteModelHandler.__init__).parameters
    if name not in ("self", "namespace")
)


class ModelServerError(RuntimeError):
    """A predict call failed: no answer, an HTTP error, or an answer that is not predictions.

    Attributes:
        url: The URL called.
        status: The HTTP status of the answer; None when there was no answer (connection
            refused, timed out).
    """

    def __init__(self, message: str, url: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


def retry_on_server_errors(error: Exception) -> bool:
    """The default `retry_filter` of the model server handlers.

    Args:
        error: What a predict call raised.

    Returns:
        True when the server gave no answer, or answered 429 or 5xx (as Beam's Vertex AI
        handler retries TooManyRequests and ServerError), or the `rate_limiter` refused
        the call (the client-side 429); False otherwise.
    """
    if isinstance(error, RateLimitExceeded):
        return True
    if not isinstance(error, ModelServerError):
        return False
    return error.status is None or error.status == 429 or error.status >= 500


def _hint(status: int) -> str:
    if status in (401, 403):
        return "check the credentials passed as headers"
    if status == 404:
        return "check the model or endpoint name and the server URL"
    if status == 429 or status >= 500:
        return "the server is overloaded or failing; the call is retried per retry_filter"
    return "the server refused these examples: check them against the model's input signature"


def _to_json(value: Any) -> Any:
    """Makes numpy arrays and scalars JSON values; refuses anything else json cannot write."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(
        f"cannot send a {type(value).__name__} to a model server as JSON; turn the examples "
        "into lists, numbers, strings or dicts of them before RunInference"
    )


class PredictClient:
    """Posts JSON to one predict URL and returns the decoded JSON answer; thread-safe.

    Args:
        url: The predict URL.
        timeout_secs: How long one call may wait for the answer.
        headers: Extra HTTP headers, or a function returning them per call (for tokens
            that expire).
    """

    def __init__(self, url: str, timeout_secs: float, headers: Headers = None) -> None:
        self.url = url
        self._timeout_secs = timeout_secs
        self._headers = headers

    def _all_headers(self) -> Dict[str, str]:
        extra = self._headers() if callable(self._headers) else self._headers
        return {"Content-Type": "application/json", **(extra or {})}

    def post(self, body: Mapping[str, Any]) -> Any:
        """Posts `body` as JSON and returns the answer decoded.

        Raises:
            InvalidExampleError: if `body` holds a value JSON cannot write.
            ModelServerError: if there is no answer in time, the answer is an HTTP error,
                or it is not JSON.
        """
        try:
            data = json.dumps(body, default=_to_json).encode("utf-8")
        except TypeError as error:
            raise InvalidExampleError(str(error)) from error
        request = urllib.request.Request(self.url, data, self._all_headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_secs) as answer:
                payload = answer.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode("utf-8", "replace").strip()
            raise ModelServerError(
                f"model server {self.url} answered HTTP {error.code} ({error.reason}): "
                f"{detail}; {_hint(error.code)}",
                self.url,
                error.code,
            ) from None
        except OSError as error:
            reason = getattr(error, "reason", error)
            raise ModelServerError(
                f"no answer from model server {self.url} ({reason}); check that it is "
                "running and reachable from the workers, or, if it is slow, raise "
                f"timeout_secs ({self._timeout_secs:g}s)",
                self.url,
            ) from error
        try:
            return json.loads(payload)
        except ValueError:
            raise ModelServerError(
                f"model server {self.url} answered with something other than JSON: "
                f"{payload[:100]!r}; check that the URL is its predict API",
                self.url,
                200,
            ) from None


def forwarded_arguments(arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """Picks what a model server handler's public constructor hands to `ModelServerHandler`.

    A public constructor keeps its own (Beam's) parameters and ends with
    `super().__init__(url, model_id=..., **forwarded_arguments(locals()))`.

    Args:
        arguments: The constructor's `locals()`: `timeout_secs`, `headers`, those of the
            batching arguments it takes (`HANDLER_BATCHING_ARGUMENTS`) and its `**kwargs`
            as `kwargs`; anything else is left out.

    Returns:
        Keyword arguments for `ModelServerHandler.__init__`: `timeout_secs`, `headers`,
        `batching` (the batching arguments by their handler names) and the `**kwargs`.

    Raises:
        TypeError: for a name in `**kwargs` that is neither `env_vars` nor one of
            RemoteModelHandler's arguments.
    """
    _refuse_unknown(arguments.get("kwargs", {}))
    return {
        "timeout_secs": arguments["timeout_secs"],
        "headers": arguments["headers"],
        "batching": {
            name: arguments[name] for name in HANDLER_BATCHING_ARGUMENTS if name in arguments
        },
        **arguments.get("kwargs", {}),
    }


def _refuse_unknown(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - set(REMOTE_ARGUMENTS) - {"env_vars"})
    if unknown:
        raise TypeError(
            f"unknown keyword arguments {unknown}; model server handlers take "
            f"{sorted([*REMOTE_ARGUMENTS, 'env_vars'])} besides their named parameters"
        )


def _split_kwargs(kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    _refuse_unknown(kwargs)
    remote = {name: value for name, value in kwargs.items() if name in REMOTE_ARGUMENTS}
    return remote, dict(kwargs.get("env_vars") or {})


class ModelServerHandler(RemoteModelHandler[Any, PredictionResult, PredictClient]):
    """Sends each batch as `{"instances": [...]}` to a predict URL; pairs the predictions.

    Args:
        url: The predict URL.
        model_id: The id predictions carry (RunInference stamps it).
        timeout_secs: How long one call may wait for an answer.
        headers: Extra HTTP headers, or a function returning them per call.
        batching: Beam's handler batching arguments by name (`min_batch_size`, ...,
            `batch_bucket_boundaries`; None for unset), as
            `liveinference.batching.handler_batching_kwargs` takes them.
        namespace: The metrics and log namespace; the class name by default.
        **kwargs: `env_vars` (environment variables set before the client is made) and
            RemoteModelHandler's arguments; `retry_filter` defaults to
            `retry_on_server_errors`.

    Raises:
        ValueError: for a `timeout_secs` that is not positive, or batching arguments
            `handler_batching_kwargs` refuses.
        TypeError: for `headers` that are neither a mapping nor a function, or an unknown
            keyword argument.
    """

    def __init__(
        self,
        url: str,
        *,
        model_id: str,
        timeout_secs: float = 60.0,
        headers: Headers = None,
        batching: Optional[Mapping[str, Any]] = None,
        namespace: str = "",
        **kwargs: Any,
    ) -> None:
        remote, env_vars = _split_kwargs(kwargs)
        remote.setdefault("retry_filter", retry_on_server_errors)
        super().__init__(namespace, **remote)
        if not timeout_secs > 0:
            raise ValueError(
                f"timeout_secs must be a positive number of seconds, got {timeout_secs}"
            )
        if headers is not None and not isinstance(headers, Mapping) and not callable(headers):
            raise TypeError(
                "headers must be a mapping of header names to values, or a function "
                f"returning one per call, got {type(headers).__name__} {headers!r}"
            )
        self._url = url
        self._model_id = model_id
        self._timeout_secs = timeout_secs
        self._headers = headers
        self._batching = handler_batching_kwargs(**(batching or {}))
        self._env_vars = env_vars

    def create_client(self) -> PredictClient:
        """Returns a client for the predict URL; nothing is sent yet."""
        return PredictClient(self._url, self._timeout_secs, self._headers)

    def _body(self, batch: Sequence[Any], inference_args: Dict[str, Any]) -> Dict[str, Any]:
        """The request body; subclasses add their server's extra fields."""
        return {"instances": list(batch), **inference_args}

    def _predictions(self, batch: Sequence[Any], answer: Any) -> List[Any]:
        """The per-example predictions in an answer."""
        if not isinstance(answer, dict) or "predictions" not in answer:
            keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise ModelServerError(
                f"model server {self._url} answered without 'predictions' (got {keys}); "
                "check that it speaks the row format of the predict API",
                self._url,
                200,
            )
        return answer["predictions"]

    def request(
        self,
        batch: Sequence[Any],
        model: PredictClient,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> List[PredictionResult]:
        """Posts the batch and returns a PredictionResult per example and prediction.

        Examples and predictions are paired as far as both go, as Beam's Vertex AI
        handler pairs them; a count that differs is logged as a warning.

        Raises:
            ModelServerError: if the call fails or the answer holds no list of predictions.
            InvalidExampleError: if an example is not a JSON value.
        """
        answer = model.post(self._body(batch, dict(inference_args or {})))
        predictions = self._predictions(batch, answer)
        if not isinstance(predictions, list):
            raise ModelServerError(
                f"model server {self._url} answered 'predictions' as a "
                f"{type(predictions).__name__}, not a list of one prediction per example",
                self._url,
                200,
            )
        if len(predictions) != len(batch):
            _LOG.warning(
                "model server %s answered %d predictions for %d examples; pairing them as "
                "far as both go, as Beam does",
                self._url, len(predictions), len(batch),
            )
        return to_prediction_results(batch, predictions)

    def get_model_id(self) -> str:
        """Returns the id of the served model: its endpoint or model URL, or resource name."""
        return self._model_id

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the batching arguments given to the constructor."""
        return dict(self._batching)


class TFServingModelHandler(ModelServerHandler):
    """Calls TF Serving's REST predict API (row format) for a model it serves.

    Beam has no TF Serving handler; this one is tested here against a local HTTP server
    that answers as TF Serving's REST API documents.

    Args:
        model_name: The model's name on the server.
        server_url: The server's REST address, e.g. "http://localhost:8501".
        model_version: Ask for this version (`/versions/N`); the newest by default.
        version_label: Ask for the version with this label (`/labels/L`) instead.
        signature_name: The SignatureDef to call; the server's default if None.
        timeout_secs: How long one call may wait for an answer.
        headers: Extra HTTP headers, or a function returning them per call.
        min_batch_size, max_batch_size, max_batch_duration_secs: Batching, as every
            handler takes them.
        **kwargs: `env_vars` and RemoteModelHandler's arguments (`num_retries`,
            `throttle_delay_secs`, `retry_filter`, `window_ms`, `bucket_ms`,
            `overload_ratio`, `rate_limiter`, `initial_backoff_secs`, `max_backoff_secs`).
            `inference_args` are added to the request body.

    Raises:
        ValueError: if both `model_version` and `version_label` are given.
        TypeError: for an unknown keyword argument.
    """

    def __init__(
        self,
        model_name: str,
        server_url: str = "http://localhost:8501",
        *,
        model_version: Optional[int] = None,
        version_label: Optional[str] = None,
        signature_name: Optional[str] = None,
        timeout_secs: float = 60.0,
        headers: Headers = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        if model_version is not None and version_label is not None:
            raise ValueError(
                f"give model_version ({model_version}) or version_label ({version_label!r}), "
                "not both: TF Serving selects a version by one of them"
            )
        model_url = f"{server_url.rstrip('/')}/v1/models/{model_name}"
        if model_version is not None:
            model_url += f"/versions/{model_version}"
        elif version_label is not None:
            model_url += f"/labels/{version_label}"
        self._signature_name = signature_name
        super().__init__(
            f"{model_url}:predict",
            model_id=model_url,
            namespace="TFServingModelHandler",
            **forwarded_arguments(locals()),
        )

    def _body(self, batch: Sequence[Any], inference_args: Dict[str, Any]) -> Dict[str, Any]:
        body = super()._body(batch, inference_args)
        if self._signature_name is not None:
            body.setdefault("signature_name", self._signature_name)
        return body
