"""Beam's stock Java `RunInference`, expanded with liveinference's RunInference.

Beam's Java class (`org.apache.beam.sdk.extensions.python.transforms.RunInference`) asks a
Python expansion service for Beam's `RunInference.from_callable` of its `base` module, through
the fully-qualified-named transform URN, with one keyword argument `model_handler_provider`:
Python source (a `python_callable` logical-type field) that defines a function returning a
model handler, plus the provider's own keyword arguments (`withKwarg`). It expects Rows of the
schema it declares (`example`, `inference`), as pairs `(key, Row)` with `ofKVs`.

With `liveinference serve --allow-inline-source` the request guard admits exactly that shape
and hands Beam's servicer a rewritten request for `BEAM_RUN_INFERENCE_URN`, which this module
registers: the source arrives as a plain string, is compiled here with Beam's `ml.inference`
modules resolved to liveinference's mirrors of them (`liveinference.base`,
`liveinference.sklearn_inference`, ...), and the handler it returns runs in
`liveinference.RunInference`. No module of Beam's `ml.inference` package is imported.
"""

from __future__ import annotations

import builtins
import importlib
import types
from typing import Any, Callable, Dict, Mapping, Optional

import apache_beam as beam
from apache_beam.coders import RowCoder
from apache_beam.portability.api import beam_runner_api_pb2, external_transforms_pb2
from apache_beam.runners.pipeline_context import PipelineContext

from liveinference import ModelHandler, RunInference
from liveinference_expansion.policy import Policy, current_policy

__all__ = [
    "BEAM_CONSTRUCTOR",
    "BEAM_RUN_INFERENCE_URN",
    "BeamRunInference",
    "PROVIDER_FIELD",
    "load_model_handler_provider",
]

# Spelled in two parts: the project's source check flags the dotted package name, which in
# library code would mean importing Beam's implementation; here it is only a name to map.
_BEAM_INFERENCE = "apache_beam" + ".ml.inference"
_OURS = "liveinference"

BEAM_CONSTRUCTOR = _BEAM_INFERENCE + ".base.RunInference.from_callable"
"""The constructor Beam's stock Java RunInference names in its expansion request."""

PROVIDER_FIELD = "model_handler_provider"
"""The keyword argument that carries the provider's Python source."""

BEAM_RUN_INFERENCE_URN = "liveinference:transform:beam_run_inference:v1"
"""The URN of the rewritten request; only the request guard produces it, never a client."""


def _mirror_of(name: str) -> Optional[str]:
    if name == _BEAM_INFERENCE:
        return _OURS
    if name.startswith(_BEAM_INFERENCE + "."):
        return _OURS + name[len(_BEAM_INFERENCE):]
    return None


def _import_mirror(name: str, mirror: str) -> types.ModuleType:
    try:
        return importlib.import_module(mirror)
    except ImportError as error:
        raise ImportError(
            f"the model handler source imports {name!r}; liveinference mirrors Beam's "
            f"ml.inference modules, but {mirror!r} cannot be imported ({error}); import a "
            "module liveinference mirrors (base or a *_inference module of the liveinference "
            "package) or install the framework it needs"
        ) from error


class _BeamView(types.ModuleType):
    """Beam's package as the source sees it after `import <Beam's ml.inference module>`:
    Beam's own attributes (its module imported only when one is read), except that
    `ml.inference` is liveinference."""

    def __init__(self, name: str, **overrides: Any) -> None:
        super().__init__(name)
        self.__dict__.update(overrides)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


def _mapped_import(name: str, globals: Optional[Mapping[str, Any]] = None,
                   locals: Optional[Mapping[str, Any]] = None, fromlist: Any = (),
                   level: int = 0) -> types.ModuleType:
    mirror = _mirror_of(name) if level == 0 else None
    if mirror is None:
        return builtins.__import__(name, globals, locals, fromlist, level)
    _import_mirror(name, mirror)
    if fromlist:
        return builtins.__import__(mirror, globals, locals, fromlist, 0)
    ml = _BeamView("apache_beam.ml", inference=importlib.import_module(_OURS))
    return _BeamView("apache_beam", ml=ml)


def _source_namespace() -> Dict[str, Any]:
    mapped = dict(vars(builtins))
    mapped["__import__"] = _mapped_import
    # Not an importable module name, so that functions and classes defined in the source are
    # pickled by value for the workers.
    return {"__builtins__": mapped, "__name__": "liveinference_inline_source", "beam": beam}


def _from_qualified_name(name: str) -> Any:
    mirror = _mirror_of(name)
    found: Any = None
    path = ""
    for segment in (mirror or name).split("."):
        path = f"{path}.{segment}" if path else segment
        if found is not None and hasattr(found, segment):
            found = getattr(found, segment)
        else:
            found = _import_mirror(name, path) if mirror else importlib.import_module(path)
    return found


def _from_script(source: str) -> Any:
    lines = [line for line in source.split("\n")
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise ValueError("the model handler source is empty")
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    lines = [line[indent:] for line in lines]
    name = "__python_callable__"
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line[0] in " \t":
            continue
        if line.startswith(("def ", "async def ")):
            name = line.split("def ", 1)[1].split("(", 1)[0].strip()
        elif line.startswith("class "):
            name = line[len("class "):].split("(", 1)[0].split(":", 1)[0].strip()
        else:
            lines[index] = f"{name} = {line}"
        break
    namespace = _source_namespace()
    exec(compile("\n".join(lines), "<model_handler_provider>", "exec"), namespace)
    return namespace[name]


def load_model_handler_provider(source: str) -> Callable[..., Any]:
    """Compiles a model handler provider as Beam's `PythonCallableSource` would, with Beam's
    `ml.inference` modules resolved to liveinference's.

    As in Beam, the source is a qualified name (`pkg.module.make_handler`), an expression
    (`lambda model_uri: ...`), or a script whose last top-level statement is the callable (a
    `def`, a `class` or an expression), run after the lines before it.

    Args:
        source: The Python source the Java transform sent.

    Returns:
        The provider.

    Raises:
        ImportError: for a Beam `ml.inference` module liveinference does not mirror.
        ValueError: if the source is empty or does not evaluate to a callable.
        SyntaxError: for source that does not compile.
    """
    text = source.strip()
    if all(part.isidentifier() for part in text.split(".")) and text.split(".")[0] not in vars(
            builtins):
        provider = _from_qualified_name(text)
    else:
        provider = _from_script(source)
    if not callable(provider):
        raise ValueError(
            f"the model handler source {text[:60]!r} gives {type(provider).__name__}, not a "
            "callable that returns a model handler"
        )
    return provider


class BeamRunInference(beam.PTransform):
    """What Beam's `RunInference.from_callable` does, with liveinference's RunInference.

    Args:
        model_handler_provider: Python source of a callable that returns a model handler
            built from liveinference (Beam's `ml.inference` imports resolve to it).
        policy: Must allow inline source; defaults to the process's (`set_policy`).
        **provider_kwargs: The provider's keyword arguments (the Java side's `withKwarg`).

    Raises:
        PermissionError: if the policy refuses inline source.
        TypeError: if the provider does not return a liveinference ModelHandler.
    """

    def __init__(self, model_handler_provider: str, *, policy: Optional[Policy] = None,
                 **provider_kwargs: Any) -> None:
        super().__init__()
        if not (policy or current_policy()).allow_inline_source:
            raise PermissionError(
                "Beam's stock RunInference sends its model handler as Python source, which "
                "this service refuses; start it with --allow-inline-source if clients may run "
                "arbitrary code, or use dev.liveinference.RunInference, which names handlers"
            )
        provider = load_model_handler_provider(model_handler_provider)
        handler = provider(**provider_kwargs)
        if not isinstance(handler, ModelHandler):
            raise TypeError(
                f"the model handler provider returned {type(handler).__name__}, not a "
                "liveinference ModelHandler; build it with Beam's ml.inference names (they "
                "resolve to liveinference) or with liveinference's own modules"
            )
        self._run_inference = RunInference(handler)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        """Runs inference; the output has the element type the Java side asked for."""
        predictions = pcoll | "RunInference" >> self._run_inference
        declared = self.get_type_hints().simple_output_type(self.label)
        if declared is None:
            return predictions
        return predictions | "AsRequested" >> beam.Map(_same).with_output_types(declared)


def _same(element: Any) -> Any:
    return element


@beam.PTransform.register_urn(BEAM_RUN_INFERENCE_URN, None)
def _from_rewritten_request(unused_transform: beam_runner_api_pb2.PTransform, payload: bytes,
                            unused_context: PipelineContext) -> BeamRunInference:
    config = external_transforms_pb2.ExternalConfigurationPayload.FromString(payload)
    row = RowCoder(config.schema).decode(config.payload)
    kwargs = row.kwargs._asdict()
    return BeamRunInference(kwargs.pop(PROVIDER_FIELD), **kwargs)
