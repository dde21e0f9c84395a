"""liveinference's expansion service: liveinference's RunInference for Java and other SDKs.

The service adapts and nothing more: `ConfiguredRunInference` builds liveinference's
RunInference from plain values (a handler name and its arguments, function names, a watch
pattern), so a Java pipeline gets exactly the Python behaviour. Python users can call the
same builder directly.
"""

from liveinference_expansion.policy import Policy, current_policy, serving_policy, set_policy
from liveinference_expansion.transform import TRANSFORM_NAME, ConfiguredRunInference

__all__ = [
    "TRANSFORM_NAME",
    "ConfiguredRunInference",
    "Policy",
    "current_policy",
    "serving_policy",
    "set_policy",
]
