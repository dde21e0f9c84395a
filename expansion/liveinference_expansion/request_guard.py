"""Allow-list checks on a raw `ExpansionRequest`, before Beam decodes any of it.

Beam's `ExpansionServiceServicer` turns a request into Python objects before any transform
filter runs: a transform URN of its choosing (`beam:transform:pickled_python:v1`, a ParDo with a
pickled DoFn), pickled coders or window functions among the request's components, and schema
fields of the `python_callable` logical type all run code in the service while being decoded.
`check_expansion_request` reads the protobuf request as data and raises `RequestRefused` unless
everything in it is on an allow-list:

- the transform is Beam's fully-qualified-named transform whose constructor is exactly
  `TRANSFORM_NAME`, with a data-only kwargs schema;
- the components hold only standard coders, standard window functions and Impulse
  placeholders for the inputs (what Beam's Java and Python clients send);
- every schema (kwargs, Row coders, schema options) uses atomic, array, iterable, map and row
  types and only the data logical types in `ALLOWED_LOGICAL_TYPES`, at any depth.

Environments in the request are left alone: the service never starts them, it only returns
them to the client that sent them.

One more shape passes when the operator allows inline source (`--allow-inline-source`): Beam's
stock Java RunInference, whose constructor is Beam's `RunInference.from_callable`
(`stock_beam.BEAM_CONSTRUCTOR`) and whose `kwargs.model_handler_provider` field alone may be a
`python_callable`. It is read as a plain string (its representation) here, never compiled by
Beam's decoder, and handed on as a request for `stock_beam.BEAM_RUN_INFERENCE_URN`, which
expands it with liveinference.
"""

from __future__ import annotations

from typing import Iterable, Tuple

from apache_beam.coders import RowCoder
from apache_beam.portability import common_urns
from apache_beam.portability.api import (
    beam_expansion_api_pb2,
    beam_runner_api_pb2,
    external_transforms_pb2,
    schema_pb2,
)
from apache_beam.transforms.fully_qualified_named_transform import (
    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
)
from google.protobuf.message import DecodeError

from liveinference_expansion.stock_beam import (
    BEAM_CONSTRUCTOR,
    BEAM_RUN_INFERENCE_URN,
    PROVIDER_FIELD,
)
from liveinference_expansion.transform import TRANSFORM_NAME

__all__ = [
    "ALLOWED_CODERS",
    "ALLOWED_LOGICAL_TYPES",
    "ALLOWED_WINDOW_FNS",
    "RequestRefused",
    "check_expansion_request",
]

ALLOWED_CODERS = frozenset(
    getattr(common_urns.coders, name).urn
    for name in ("BOOL", "BYTES", "DOUBLE", "GLOBAL_WINDOW", "INTERVAL_WINDOW", "ITERABLE", "KV",
                 "LENGTH_PREFIX", "NULLABLE", "PARAM_WINDOWED_VALUE", "ROW", "SHARDED_KEY",
                 "STATE_BACKED_ITERABLE", "STRING_UTF8", "TIMER", "VARINT", "WINDOWED_VALUE")
)
"""Beam's standard (model) coders: data formats with no code in their payloads."""

ALLOWED_WINDOW_FNS = frozenset(
    getattr(common_urns, name).urn
    for name in ("global_windows", "fixed_windows", "sliding_windows", "session_windows")
)
"""Beam's standard window functions; pickled Python and serialized Java ones are refused."""

ALLOWED_LOGICAL_TYPES = frozenset(
    getattr(common_urns, name).urn
    for name in ("millis_instant", "micros_instant", "decimal", "fixed_bytes", "var_bytes",
                 "fixed_char", "var_char")
) | {"beam:logical_type:fixed_decimal:v1"}
"""Logical types whose values are data (instants, decimals, sized bytes and strings).

Everything else is refused, `beam:logical_type:python_callable:v1` (source code, compiled when
a value is decoded) first of all."""

_IMPULSE = common_urns.primitives.IMPULSE.urn


class RequestRefused(ValueError):
    """An expansion request that asks the service to decode something outside its allow-list."""


def _refuse(what: str, next_step: str = "") -> RequestRefused:
    return RequestRefused(
        f"refused before decoding: {what}; this service expands only "
        f"{TRANSFORM_NAME} through {PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN} with data-only "
        f"arguments{'; ' + next_step if next_step else ''}"
    )


def _check_field_type(field_type: schema_pb2.FieldType, path: str, owner: str) -> None:
    kind = field_type.WhichOneof("type_info")
    if kind == "atomic_type":
        return
    if kind in ("array_type", "iterable_type"):
        _check_field_type(getattr(field_type, kind).element_type, f"{path}[]", owner)
    elif kind == "map_type":
        _check_field_type(field_type.map_type.key_type, f"{path}{{key}}", owner)
        _check_field_type(field_type.map_type.value_type, f"{path}{{value}}", owner)
    elif kind == "row_type":
        _check_schema(field_type.row_type.schema, f"{path}.", owner)
    elif kind == "logical_type":
        logical = field_type.logical_type
        if logical.urn not in ALLOWED_LOGICAL_TYPES:
            raise _refuse(
                f"field {path!r} of {owner} has logical type {logical.urn!r}, which is not a "
                f"data type this service decodes (allowed: {sorted(ALLOWED_LOGICAL_TYPES)})",
                "send plain values (strings, numbers, rows, arrays) instead",
            )
        if logical.HasField("representation"):
            _check_field_type(logical.representation, f"{path}<representation>", owner)
        if logical.HasField("argument_type"):
            _check_field_type(logical.argument_type, f"{path}<argument>", owner)
    else:
        raise _refuse(f"field {path!r} of {owner} has no type")


def _check_options(options: Iterable[schema_pb2.Option], path: str, owner: str) -> None:
    for option in options:
        if option.HasField("type"):
            _check_field_type(option.type, f"{path}(option {option.name})", owner)


def _check_schema(schema: schema_pb2.Schema, prefix: str, owner: str) -> None:
    _check_options(schema.options, prefix, owner)
    for field in schema.fields:
        _check_field_type(field.type, prefix + field.name, owner)
        _check_options(field.options, prefix + field.name, owner)


def _provider_source_as_string(
    config: external_transforms_pb2.ExternalConfigurationPayload,
) -> Tuple[external_transforms_pb2.ExternalConfigurationPayload, bool]:
    """A copy in which `kwargs.model_handler_provider`, if a python_callable carried as a
    string, is declared a string: the same bytes, decoded as data. Also says if it was one."""
    config = external_transforms_pb2.ExternalConfigurationPayload.FromString(
        config.SerializeToString())
    for field in config.schema.fields:
        if field.name != "kwargs" or field.type.WhichOneof("type_info") != "row_type":
            continue
        for kwarg in field.type.row_type.schema.fields:
            logical = kwarg.type.logical_type
            if (kwarg.name == PROVIDER_FIELD and kwarg.type.HasField("logical_type")
                    and logical.urn == common_urns.python_callable.urn
                    and logical.representation.atomic_type == schema_pb2.STRING):
                kwarg.type.CopyFrom(logical.representation)
                return config, True
    return config, False


def _check_transform_payload(payload: bytes, allow_inline_source: bool) -> bytes:
    """Checks the arguments; returns the payload to expand, or b"" to expand as sent."""
    try:
        config = external_transforms_pb2.ExternalConfigurationPayload.FromString(payload)
    except DecodeError as error:
        raise _refuse(f"the transform payload is not an ExternalConfigurationPayload ({error})")
    config, had_source = _provider_source_as_string(config)
    field = f"field 'kwargs.{PROVIDER_FIELD}' of the transform's arguments"
    _check_schema(config.schema, "", "the transform's arguments")
    try:
        row = RowCoder(config.schema).decode(config.payload)
    except Exception as error:  # a malformed row: Beam raises many types here
        raise _refuse(f"the transform's arguments do not decode with their schema ({error})")
    constructor = getattr(row, "constructor", None)
    if constructor == BEAM_CONSTRUCTOR:
        if not allow_inline_source:
            raise _refuse(
                f"constructor {constructor!r} (Beam's stock Java RunInference) sends its model "
                "handler as Python source, which runs arbitrary code",
                "start the service with --allow-inline-source to accept it",
            )
        if not isinstance(getattr(getattr(row, "kwargs", None), PROVIDER_FIELD, None), str):
            raise _refuse(f"{constructor!r} needs {field} as Python source")
        if getattr(row, "args", None):
            raise _refuse(f"{constructor!r} takes keyword arguments only")
        return config.SerializeToString()
    if constructor != TRANSFORM_NAME:
        raise _refuse(f"constructor {constructor!r} is not allowed by filter",
                      f"name {TRANSFORM_NAME!r}")
    if had_source:
        raise _refuse(f"{field} has logical type {common_urns.python_callable.urn!r}, which "
                      f"only {BEAM_CONSTRUCTOR!r} may carry")
    return b""


def _check_components(components: beam_runner_api_pb2.Components) -> None:
    for coder_id, coder in components.coders.items():
        urn = coder.spec.urn
        if urn not in ALLOWED_CODERS:
            raise _refuse(
                f"coder {coder_id!r} has URN {urn!r}, not a standard Beam coder (a pickled or "
                "SDK-specific coder would be deserialized here)",
                "give the input a schema (Row) or a standard coder",
            )
        if urn == common_urns.coders.ROW.urn:
            try:
                schema = schema_pb2.Schema.FromString(coder.spec.payload)
            except DecodeError as error:
                raise _refuse(f"Row coder {coder_id!r} has no readable schema ({error})")
            _check_schema(schema, "", f"Row coder {coder_id!r}")
    for strategy_id, strategy in components.windowing_strategies.items():
        if strategy.window_fn.urn not in ALLOWED_WINDOW_FNS:
            raise _refuse(
                f"windowing strategy {strategy_id!r} has window function "
                f"{strategy.window_fn.urn!r}, not a standard Beam one",
                "window the input with global, fixed, sliding or session windows",
            )
    for transform_id, transform in components.transforms.items():
        if transform.spec.urn != _IMPULSE or transform.subtransforms or transform.inputs:
            raise _refuse(
                f"component transform {transform_id!r} ({transform.spec.urn!r}) is not an "
                "Impulse placeholder for an input"
            )


def _is_standard_coder(components: beam_runner_api_pb2.Components, coder_id: str) -> bool:
    """True if `coder_id` and every coder inside it are Beam's standard coders."""
    coder = components.coders.get(coder_id)
    return coder is not None and coder.spec.urn in ALLOWED_CODERS and all(
        _is_standard_coder(components, inner) for inner in coder.component_coder_ids
    )


def _needed_components(
    request: beam_expansion_api_pb2.ExpansionRequest,
) -> beam_runner_api_pb2.Components:
    """Returns the part of the request's components that the expansion reads: the input
    PCollections, the Impulse placeholders that make them, their windowing strategies, and the
    coders these and the requested output coders name, with their component coders.

    A client's SDK sends every coder its pipeline made so far; those are dropped unread
    instead of refused. A requested output coder that is not a standard one (Beam 2.77's Python
    asks for its pickled FastPrimitivesCoder when the output type is unknown) is dropped too: the
    transform's own output types hold, as when no coder is requested.
    """
    given = request.components
    needed = beam_runner_api_pb2.Components()
    coder_ids = [coder_id for coder_id in request.output_coder_requests.values()
                 if _is_standard_coder(given, coder_id)]
    for pcollection_id in request.transform.inputs.values():
        pcollection = given.pcollections.get(pcollection_id)
        if pcollection is None:
            continue
        needed.pcollections[pcollection_id].CopyFrom(pcollection)
        coder_ids.append(pcollection.coder_id)
        strategy = given.windowing_strategies.get(pcollection.windowing_strategy_id)
        if strategy is not None:
            needed.windowing_strategies[pcollection.windowing_strategy_id].CopyFrom(strategy)
            coder_ids.append(strategy.window_coder_id)
        for transform_id, transform in given.transforms.items():
            if pcollection_id in transform.outputs.values():
                needed.transforms[transform_id].CopyFrom(transform)
    while coder_ids:
        coder_id = coder_ids.pop()
        if coder_id in needed.coders or coder_id not in given.coders:
            continue
        needed.coders[coder_id].CopyFrom(given.coders[coder_id])
        coder_ids.extend(given.coders[coder_id].component_coder_ids)
    for environment_id, environment in given.environments.items():
        needed.environments[environment_id].CopyFrom(environment)
    return needed


def check_expansion_request(
    request: beam_expansion_api_pb2.ExpansionRequest, allow_inline_source: bool = False,
) -> beam_expansion_api_pb2.ExpansionRequest:
    """Raises unless every part of `request` that Beam would decode is on the allow-lists.

    Args:
        request: The request as it arrived; nothing in it has been decoded yet.
        allow_inline_source: Admit Beam's stock Java RunInference, whose model handler is
            Python source (the operator passed `--allow-inline-source`).

    Returns:
        The request for Beam's servicer to expand: a copy of `request` holding only the
        components the expansion reads (see `_needed_components`), and for Beam's stock
        RunInference naming `BEAM_RUN_INFERENCE_URN`, its source declared a string.

    Raises:
        RequestRefused: naming the first thing that is not allowed (a transform URN, a
            constructor, a coder, a window function, a logical type and where it sits).
    """
    spec = request.transform.spec
    if spec.urn != PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN:
        raise _refuse(f"transform URN {spec.urn!r} is not allowed")
    if request.transform.subtransforms:
        raise _refuse("the transform to expand has subtransforms")
    needed = _needed_components(request)
    _check_components(needed)
    for tag, pcollection_id in request.transform.inputs.items():
        if pcollection_id not in request.components.pcollections:
            raise _refuse(f"input {tag!r} names PCollection {pcollection_id!r}, which the "
                          "request's components do not hold")
    for tag, coder_id in request.output_coder_requests.items():
        if coder_id not in request.components.coders:
            raise _refuse(f"output {tag!r} asks for coder {coder_id!r}, which the request's "
                          "components do not hold")
    standard_outputs = {tag: coder_id for tag, coder_id in request.output_coder_requests.items()
                        if coder_id in needed.coders}
    rewritten = _check_transform_payload(spec.payload, allow_inline_source)
    checked = beam_expansion_api_pb2.ExpansionRequest()
    checked.CopyFrom(request)
    checked.components.CopyFrom(needed)
    checked.output_coder_requests.clear()
    checked.output_coder_requests.update(standard_outputs)
    if rewritten:
        checked.transform.spec.urn = BEAM_RUN_INFERENCE_URN
        checked.transform.spec.payload = rewritten
    return checked
