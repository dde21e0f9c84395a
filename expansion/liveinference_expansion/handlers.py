"""Handler names a configured RunInference accepts, and the checking of their arguments.

This module holds the only list of handler names (`HANDLERS`): the service reports it in its
refusals, and the Java wrapper has no copy. A handler is named by a short plain string
(`sklearn_numpy`, `onnx_numpy`, ...) and configured from plain values: strings, numbers,
booleans, lists and dicts. Arguments that Python takes as callables (`create_model_fn`,
`inference_fn`, a PyTorch `model_class`) are given as qualified names from allowed modules;
an XGBoost or Hugging Face `model_class` may also name a class of that framework
(`xgboost.XGBClassifier`, `transformers.AutoModelForSequenceClassification`); enums
(`model_file_type`, `model_type`) are given by member name. The model server handlers
(`tfserving_json`, `vertex_ai_json`) also take RemoteModelHandler's retry and throttling
arguments (`num_retries`, `retry_filter` by name, ...), all but `rate_limiter`.
`build_keyed_handler` builds a per-key `KeyedModelHandler` from plain mappings
`{keys, handler, handler_args}`.
"""

from __future__ import annotations

import collections.abc
import enum
import importlib
import inspect
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from liveinference import KeyedModelHandler, KeyModelMapping
from liveinference.frameworks.model_server import REMOTE_ARGUMENTS, ModelServerHandler
from liveinference.remote import RemoteModelHandler
from liveinference_expansion.model_paths import check_model_path
from liveinference_expansion.policy import Policy

__all__ = ["HANDLERS", "as_plain", "build_handler", "build_keyed_handler", "describe_handlers"]

# name -> (module, class), under Beam's module paths; imported only when named, so that the
# service does not load PyTorch or TensorFlow unless a request asks for them.
HANDLERS: Dict[str, Tuple[str, str]] = {
    "sklearn_numpy": ("liveinference.sklearn_inference", "SklearnModelHandlerNumpy"),
    "sklearn_pandas": ("liveinference.sklearn_inference", "SklearnModelHandlerPandas"),
    "pytorch_tensor": ("liveinference.pytorch_inference", "PytorchModelHandlerTensor"),
    "pytorch_keyed_tensor": ("liveinference.pytorch_inference", "PytorchModelHandlerKeyedTensor"),
    "tf_numpy": ("liveinference.tensorflow_inference", "TFModelHandlerNumpy"),
    "tf_tensor": ("liveinference.tensorflow_inference", "TFModelHandlerTensor"),
    "onnx_numpy": ("liveinference.onnx_inference", "OnnxModelHandlerNumpy"),
    "xgboost_numpy": ("liveinference.xgboost_inference", "XGBoostModelHandlerNumpy"),
    "xgboost_pandas": ("liveinference.xgboost_inference", "XGBoostModelHandlerPandas"),
    "xgboost_scipy": ("liveinference.xgboost_inference", "XGBoostModelHandlerSciPy"),
    "xgboost_datatable": ("liveinference.xgboost_inference", "XGBoostModelHandlerDatatable"),
    "huggingface_tensor": ("liveinference.huggingface_inference", "HuggingFaceModelHandlerTensor"),
    "huggingface_keyed_tensor": (
        "liveinference.huggingface_inference", "HuggingFaceModelHandlerKeyedTensor"
    ),
    "huggingface_pipeline": (
        "liveinference.huggingface_inference", "HuggingFacePipelineModelHandler"
    ),
    "tfserving_json": ("liveinference.frameworks.model_server", "TFServingModelHandler"),
    "vertex_ai_json": ("liveinference.vertex_ai_inference", "VertexAIModelHandlerJSON"),
}

# RemoteModelHandler's arguments the model server handlers (the two above) take as **kwargs,
# but `rate_limiter`: an object, which no plain value names.
_REMOTE_ARGS = tuple(name for name in REMOTE_ARGUMENTS if name != "rate_limiter")

# Handlers (by name prefix) whose `model_class` may name a class of their framework without
# --allow-module: such a class is only built empty (XGBoost) or by from_pretrained.
_FRAMEWORK_CLASSES = {"xgboost_": "xgboost", "huggingface_": "transformers"}

# Arguments naming a local model file that must exist when the pipeline is built.
_MODEL_PATH_ARGS = ("model_uri", "state_dict_path", "torch_script_model_path", "model_state")
_SCALARS = (str, int, float, bool)
_MAPPING_FIELDS = ("keys", "handler", "handler_args")


def describe_handlers() -> List[str]:
    """Lists every handler name with the Python class it builds, one line each.

    Returns:
        Lines such as "onnx_numpy: liveinference.onnx_inference.OnnxModelHandlerNumpy".
    """
    return [f"{name}: {module}.{cls}" for name, (module, cls) in sorted(HANDLERS.items())]


def _handler_class(name: str) -> type:
    if not isinstance(name, str) or name not in HANDLERS:
        raise ValueError(
            f"unknown handler {name!r}; this service knows {sorted(HANDLERS)}"
        )
    module_name, class_name = HANDLERS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"handler {name!r} needs {module_name}, which cannot be imported here ({error}); "
            "install its framework where the service and the workers run"
        ) from error
    return getattr(module, class_name)


def _parameters(cls: type) -> Dict[str, inspect.Parameter]:
    found = {
        name: parameter
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    if issubclass(cls, ModelServerHandler):
        remote = inspect.signature(RemoteModelHandler.__init__).parameters
        found.update({name: remote[name] for name in _REMOTE_ARGS if name not in found})
    return found


def _hints(cls: type) -> Dict[str, Any]:
    try:
        hints = typing.get_type_hints(getattr(cls, "__init__"))
        if issubclass(cls, ModelServerHandler):
            hints = {**typing.get_type_hints(RemoteModelHandler.__init__), **hints}
        return hints
    except Exception:  # unresolvable annotations: check names only
        return {}


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Union:
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def as_plain(value: Any) -> Any:
    """Beam Rows (Java's nested rows) become dicts; everything else stays."""
    if hasattr(value, "_asdict") and not isinstance(value, (str, bytes)):
        return {key: as_plain(item) for key, item in value._asdict().items()}
    return value


def _type_error(handler: str, name: str, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"handler {handler!r} argument {name!r} must be {expected}, got "
        f"{type(value).__name__} {value!r}"
    )


def _framework_class(handler: str, name: str, value: Any) -> Optional[type]:
    """The framework class a `model_class` names (`xgboost.XGBClassifier`), or None when
    `value` names none of the handler's framework, so that the policy decides."""
    framework = next(
        (module for prefix, module in _FRAMEWORK_CLASSES.items() if handler.startswith(prefix)),
        None,
    )
    if name != "model_class" or framework is None or not isinstance(value, str):
        return None
    module_name, _, attribute = value.strip().rpartition(".")
    if module_name != framework:
        return None
    try:
        found = getattr(importlib.import_module(framework), attribute, None)
    except ImportError as error:
        raise ValueError(
            f"handler {handler!r} argument 'model_class' {value!r}: cannot import {framework} "
            f"({error}); install it where the service and the workers run"
        ) from error
    if not isinstance(found, type):
        raise ValueError(
            f"handler {handler!r} argument 'model_class' {value!r} is not a class of "
            f"{framework}; name one such as "
            + ("xgboost.XGBClassifier" if framework == "xgboost"
               else "transformers.AutoModelForSequenceClassification")
        )
    return found


def _convert(handler: str, name: str, value: Any, hint: Any, policy: Policy) -> Any:
    framework_class = _framework_class(handler, name, value)
    if framework_class is not None:
        return framework_class
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(handler, name, "a boolean", value)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(handler, name, "an integer", value)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(handler, name, "a number", value)
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise _type_error(handler, name, "a string", value)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        if not isinstance(value, str) or value.upper() not in hint.__members__:
            raise _type_error(handler, name, f"one of {list(hint.__members__)}", value)
        return hint[value.upper()]
    elif origin is collections.abc.Callable or hint is collections.abc.Callable or (
        isinstance(hint, type) and not issubclass(hint, _SCALARS) and hint not in (dict, list)
    ):
        if callable(value) and not isinstance(value, str):
            return value
        return policy.resolve(value, f"handler {handler!r} argument {name!r}")
    elif name == "model_class" and isinstance(value, str):
        return policy.resolve(value, f"handler {handler!r} argument {name!r}")
    elif hint is dict or origin in (dict, collections.abc.Mapping):
        value = as_plain(value)
        if not isinstance(value, dict):
            raise _type_error(handler, name, "a mapping (a Row from Java)", value)
    return as_plain(value)


def build_handler(name: str, args: Mapping[str, Any], policy: Policy) -> Any:
    """Builds the named handler from plain keyword arguments, checking each one.

    Args:
        name: A key of `HANDLERS`, such as "sklearn_numpy".
        args: The handler's keyword arguments as plain values.
        policy: Resolves arguments that are callables, given by qualified name.

    Returns:
        The liveinference ModelHandler.

    Raises:
        ValueError: for an unknown handler name or an unloadable framework.
        TypeError: for an unknown argument or a value of the wrong type.
        FileNotFoundError: for a missing model file inside a model root
            (`policy.model_roots`); other paths are left to the workers.
    """
    cls = _handler_class(name)
    parameters = _parameters(cls)
    hints = _hints(cls)
    args = dict(as_plain(args) or {})
    unknown = sorted(set(args) - set(parameters) - {"env_vars"})
    if unknown:
        raise TypeError(
            f"handler {name!r} has no argument(s) {unknown}; it takes {sorted(parameters)}"
        )
    missing = sorted(
        param for param, spec in parameters.items()
        if spec.default is inspect.Parameter.empty and param not in args
    )
    if missing:
        raise TypeError(f"handler {name!r} needs argument(s) {missing}; none was given")
    converted = {
        key: _convert(name, key, value, hints.get(key, Any), policy) for key, value in args.items()
    }
    for key in _MODEL_PATH_ARGS:
        if isinstance(converted.get(key), str):
            check_model_path(converted[key], f"handler {name!r} argument {key!r}",
                             policy.model_roots)
    return cls(**converted)


def _mapping_list(value: Any) -> List[Any]:
    """Per-key mappings as a list: Java sends a Row of Rows (one field per mapping, since a
    Java array holds Rows of one schema only), Python a list."""
    value = as_plain(value)
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return [as_plain(item) for item in value]
    raise TypeError(
        "key_models must be a list of mappings {keys, handler, handler_args} (a Row of such "
        f"Rows from Java), got {type(value).__name__} {value!r}"
    )


def _key_mapping(index: int, mapping: Any, policy: Policy) -> KeyModelMapping:
    what = f"key_models[{index}]"
    if not isinstance(mapping, dict):
        raise TypeError(
            f"{what} must be a mapping {{keys, handler, handler_args}}, got "
            f"{type(mapping).__name__} {mapping!r}"
        )
    unknown = sorted(set(mapping) - set(_MAPPING_FIELDS))
    if unknown or "keys" not in mapping or "handler" not in mapping:
        raise TypeError(
            f"{what} has fields {sorted(mapping)}; give 'keys' (a list of keys) and 'handler' "
            "(a handler name), and 'handler_args' if the handler takes any"
        )
    keys = mapping["keys"]
    if (not isinstance(keys, (list, tuple)) or not keys
            or not all(isinstance(key, (str, int)) and not isinstance(key, bool) for key in keys)):
        raise TypeError(f"{what}['keys'] must be a non-empty list of strings or integers, "
                        f"got {keys!r}")
    try:
        handler = build_handler(mapping["handler"], mapping.get("handler_args") or {}, policy)
    except (TypeError, ValueError, FileNotFoundError) as error:
        raise type(error)(f"{what}: {error}") from error
    return KeyModelMapping(list(keys), handler)


def build_keyed_handler(
    key_models: Sequence[Any], policy: Policy, max_models_per_worker_hint: Optional[int] = None
) -> KeyedModelHandler:
    """Builds a `KeyedModelHandler` that serves a model per key from plain mappings.

    Args:
        key_models: Mappings `{"keys": [...], "handler": name, "handler_args": {...}}`, in a
            list (or a Row of Rows from Java); each key appears in one mapping only.
        policy: Resolves arguments that are callables, given by qualified name.
        max_models_per_worker_hint: The most per-key models each worker keeps loaded.

    Returns:
        The keyed handler, taking `(key, example)` pairs.

    Raises:
        TypeError: for a mapping without keys or handler, keys that are not strings or
            integers, or a handler argument of the wrong type (the message names the mapping).
        ValueError: for no mapping, an unknown handler, a key in two mappings, or a hint
            below 1.
        FileNotFoundError: for a local model file that does not exist.
    """
    mappings = [_key_mapping(index, mapping, policy)
                for index, mapping in enumerate(_mapping_list(key_models))]
    if not mappings:
        raise ValueError("key_models is empty; give at least one {keys, handler} mapping")
    if max_models_per_worker_hint is not None and (
        isinstance(max_models_per_worker_hint, bool)
        or not isinstance(max_models_per_worker_hint, int)
    ):
        raise TypeError("max_models_per_worker_hint must be an integer, got "
                        f"{type(max_models_per_worker_hint).__name__} "
                        f"{max_models_per_worker_hint!r}")
    return KeyedModelHandler(mappings, max_models_per_worker_hint=max_models_per_worker_hint)
