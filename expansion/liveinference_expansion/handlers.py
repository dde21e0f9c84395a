"""Handler names a configured RunInference accepts, and the checking of their arguments.

A handler is named by a short plain string (`sklearn_numpy`, `pytorch_tensor`, ...) and
configured from plain values: strings, numbers, booleans, lists and dicts. Arguments that
Python takes as callables (`model_class`, `create_model_fn`, `inference_fn`) are given as
qualified names from allowed modules; enums (`model_file_type`, `model_type`) by member name.
"""

from __future__ import annotations

import collections.abc
import enum
import importlib
import inspect
import os
import typing
from typing import Any, Dict, Mapping, Tuple

from liveinference_expansion.policy import Policy

__all__ = ["HANDLERS", "as_plain", "build_handler"]

# name -> (module, class); imported only when named, so that the service does not load
# PyTorch or TensorFlow unless a request asks for them.
HANDLERS: Dict[str, Tuple[str, str]] = {
    "sklearn_numpy": ("liveinference.frameworks.sklearn", "SklearnModelHandlerNumpy"),
    "sklearn_pandas": ("liveinference.frameworks.sklearn", "SklearnModelHandlerPandas"),
    "pytorch_tensor": ("liveinference.frameworks.pytorch", "PytorchModelHandlerTensor"),
    "pytorch_keyed_tensor": ("liveinference.frameworks.pytorch", "PytorchModelHandlerKeyedTensor"),
    "tf_numpy": ("liveinference.frameworks.tensorflow", "TFModelHandlerNumpy"),
    "tf_tensor": ("liveinference.frameworks.tensorflow", "TFModelHandlerTensor"),
}

# Arguments naming a local model file that must exist when the pipeline is built.
_MODEL_PATH_ARGS = ("model_uri", "state_dict_path", "torch_script_model_path")
_SCALARS = (str, int, float, bool)


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
    return {
        name: parameter
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def _hints(cls: type) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(getattr(cls, "__init__"))
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


def _convert(handler: str, name: str, value: Any, hint: Any, policy: Policy) -> Any:
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
    elif hint is dict or origin in (dict, collections.abc.Mapping):
        value = as_plain(value)
        if not isinstance(value, dict):
            raise _type_error(handler, name, "a mapping (a Row from Java)", value)
    return as_plain(value)


def _check_model_path(handler: str, name: str, path: str) -> None:
    if "://" in path:
        return  # a remote filesystem: checked by the workers when they load it
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"handler {handler!r} argument {name!r}: no model file at {path!r} (as seen by the "
            "expansion service); give a path that the service and the Python workers can read"
        )


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
        FileNotFoundError: for a local model file that does not exist.
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
            _check_model_path(name, key, converted[key])
    return cls(**converted)
