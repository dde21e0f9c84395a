"""Vertex AI online prediction over its REST API: Beam's `VertexAIModelHandlerJSON`.

A drop-in for Beam's `ml.inference.vertex_ai_inference` handler, with its name and
constructor, written on `ModelServerHandler` instead of the `google-cloud-aiplatform`
SDK: each batch is posted to `.../projects/P/locations/L/endpoints/E:predict` as
`{"instances": [...], "parameters": inference_args}` and the answer's `predictions` are
paired with the examples.

What is verified here, and what is not: the tests run this handler against a local HTTP
server answering in Vertex AI's documented JSON shape at Vertex AI's paths (given with
`api_endpoint`), slow, down or failing. Vertex AI itself cannot be reached from where this
was built, so calls to Google's servers, their authentication (pass a bearer token as
`headers`, e.g. a function returning {"Authorization": "Bearer ..."} from google-auth) and
private endpoints are untested.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence

from liveinference.frameworks.model_server import (
    Headers,
    ModelServerHandler,
    forwarded_arguments,
)

__all__ = ["VertexAIModelHandlerJSON"]

_LOG = logging.getLogger(__name__)


class VertexAIModelHandlerJSON(ModelServerHandler):
    """Sends batches of JSON values to a Vertex AI endpoint's predict (or invoke) API.

    Predictions carry the endpoint's resource name, "projects/P/locations/L/endpoints/E",
    as their model_id (RunInference stamps it; Beam puts the answer's `deployedModelId`
    there, which is logged here when it changes). Unlike Beam, the endpoint is not
    contacted when the handler is built, only by the first batch.

    Args:
        endpoint_id: The endpoint's numeric id.
        project: The Google Cloud project of the endpoint.
        location: Its region, e.g. "us-central1".
        experiment: Accepted as in Beam; unused (no experiment tracking here).
        network: Accepted as in Beam; a private endpoint is reached through `api_endpoint`.
        private: True for a private endpoint; then `api_endpoint` must be given.
        invoke_route: A custom route ("/predict/v1"): calls `.../endpoints/E/invoke/...`
            and reads `predictions`, a list of one answer per example, or (for one
            example) the whole answer, as Beam does; the answer must be JSON.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries: Beam 2.77's
            batching arguments, handed to `BatchElements` (the last four need a Beam
            whose `BatchElements` takes them).
        api_endpoint: Where the REST API is, e.g. "http://localhost:8080"; by default
            "https://{location}-aiplatform.googleapis.com".
        headers: Extra HTTP headers (e.g. Authorization), or a function returning them.
        timeout_secs: How long one call may wait for an answer.
        **kwargs: `env_vars` and RemoteModelHandler's arguments (`num_retries`,
            `throttle_delay_secs`, `retry_filter`, `window_ms`, `bucket_ms`,
            `overload_ratio`, `rate_limiter`, `initial_backoff_secs`, `max_backoff_secs`).

    Raises:
        ValueError: if `private` is set without `api_endpoint`.
        TypeError: for an unknown keyword argument.
    """

    def __init__(
        self,
        endpoint_id: str,
        project: str,
        location: str,
        experiment: Optional[str] = None,
        network: Optional[str] = None,
        private: bool = False,
        invoke_route: Optional[str] = None,
        *,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        api_endpoint: Optional[str] = None,
        headers: Headers = None,
        timeout_secs: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if private and api_endpoint is None:
            raise ValueError(
                f"endpoint {endpoint_id} is private: pass api_endpoint='http://ADDRESS' "
                "of the private endpoint, reachable from the workers"
            )
        resource = f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"
        root = (api_endpoint or f"https://{location}-aiplatform.googleapis.com").rstrip("/")
        suffix = f"/invoke{invoke_route}" if invoke_route else ":predict"
        self._invoke_route = invoke_route
        self._deployed_model_id: Optional[str] = None
        super().__init__(
            f"{root}/v1/{resource}{suffix}",
            model_id=resource,
            namespace="VertexAIModelHandlerJSON",
            **forwarded_arguments(locals()),
        )

    def _body(self, batch: Sequence[Any], inference_args: Dict[str, Any]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"instances": list(batch)}
        if inference_args:
            body["parameters"] = inference_args
        return body

    def _predictions(self, batch: Sequence[Any], answer: Any) -> List[Any]:
        if isinstance(answer, dict) and "predictions" in answer:
            self._note_deployed_model(answer.get("deployedModelId"))
        elif self._invoke_route:
            if isinstance(answer, list) and len(answer) == len(batch):
                return answer
            return [answer] * len(batch)
        return super()._predictions(batch, answer)

    def _note_deployed_model(self, deployed_model_id: Optional[str]) -> None:
        if deployed_model_id and deployed_model_id != self._deployed_model_id:
            _LOG.info(
                "endpoint %s answered from deployed model %s", self._model_id, deployed_model_id
            )
            self._deployed_model_id = deployed_model_id
