"""What a configured RunInference may call: functions from allowed modules, inline source
only when the service was started to run arbitrary code; and which model paths the service
itself looks at (`model_roots`, see `model_paths`).

The expansion service sets the policy once at start (`set_policy`); Python users get the
default, which allows `liveinference_expansion.functions` and refuses inline source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
from typing import Any, Callable, Iterator, Tuple

from apache_beam.utils.python_callable import PythonCallableWithSource

__all__ = [
    "DEFAULT_ALLOWED_MODULES",
    "Policy",
    "current_policy",
    "is_qualified_name",
    "serving_policy",
    "set_policy",
]

DEFAULT_ALLOWED_MODULES: Tuple[str, ...] = ("liveinference_expansion.functions",)

_QUALIFIED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def is_qualified_name(text: str) -> bool:
    """Returns True if `text` looks like `module.function` rather than Python source."""
    return bool(_QUALIFIED_NAME.fullmatch(text.strip()))


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which callables a configured RunInference may resolve.

    Attributes:
        allowed_modules: Modules (and their submodules) whose functions may be named.
        allow_inline_source: Whether Python source (`lambda x: ...`, `def f(x): ...`) may be
            given instead of a name; it runs arbitrary code on the workers.
        model_roots: Real paths of the folders whose model files the service checks when a
            pipeline is built (`model_paths.model_roots`); paths elsewhere are left to the
            workers, so that clients learn nothing about other files.
    """

    allowed_modules: Tuple[str, ...] = DEFAULT_ALLOWED_MODULES
    allow_inline_source: bool = False
    model_roots: Tuple[str, ...] = ()

    def allows_module(self, module: str) -> bool:
        """Returns True if `module` is an allowed module or inside one."""
        return any(module == allowed or module.startswith(allowed + ".")
                   for allowed in self.allowed_modules)

    def resolve(self, spec: str, what: str) -> Callable[..., Any]:
        """Turns a qualified name (or, if allowed, Python source) into a callable.

        Args:
            spec: `package.module.function`, or Python source of a lambda or a def.
            what: What the callable is for, named in errors ("preprocess[0]").

        Returns:
            The callable.

        Raises:
            TypeError: if `spec` is not a string.
            PermissionError: if the module is not allowed, or source is given while inline
                source is refused.
            ValueError: if the name cannot be imported or is not callable.
        """
        if not isinstance(spec, str):
            raise TypeError(
                f"{what} must be a qualified function name (a string), got "
                f"{type(spec).__name__} {spec!r}"
            )
        if not is_qualified_name(spec):
            return self._from_source(spec, what)
        module_name, _, attribute = spec.strip().rpartition(".")
        if not self.allows_module(module_name):
            raise PermissionError(
                f"{what} {spec!r} is not in an allowed module; allowed modules are "
                f"{list(self.allowed_modules)}; start the service with "
                f"--allow-module {module_name} to allow it"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(
                f"{what} {spec!r}: cannot import module {module_name!r} ({error}); install it "
                "where the expansion service and the Python workers run"
            ) from error
        function = getattr(module, attribute, None)
        if not callable(function):
            raise ValueError(
                f"{what} {spec!r}: module {module_name!r} has no callable {attribute!r}"
            )
        return function

    def _from_source(self, source: str, what: str) -> Callable[..., Any]:
        if not self.allow_inline_source:
            raise PermissionError(
                f"{what} is inline Python source ({source[:60]!r}), which this service refuses; "
                "name a function from an allowed module instead, or start the service with "
                "--allow-inline-source if it may run arbitrary code"
            )
        try:
            return PythonCallableWithSource(source)
        except Exception as error:
            raise ValueError(f"{what}: cannot compile inline source {source[:60]!r}: {error}") \
                from error


_POLICY = Policy()


def current_policy() -> Policy:
    """Returns the policy in force in this process."""
    return _POLICY


def set_policy(policy: Policy) -> None:
    """Sets the policy for this process (the service does this once, at start)."""
    global _POLICY
    _POLICY = policy


@contextlib.contextmanager
def serving_policy(policy: Policy) -> Iterator[Policy]:
    """Uses `policy` inside a `with` block, then restores the previous one."""
    previous = current_policy()
    set_policy(policy)
    try:
        yield policy
    finally:
        set_policy(previous)
