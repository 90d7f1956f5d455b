"""Safe (de)serialisation of fitted models with skops and an explicit type allowlist."""

from __future__ import annotations

import importlib
from typing import Any

import skops.io as sio

# Packages whose *classes* we are willing to instantiate from an artifact.
_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
_ALLOWED_EXACT_MODULES = ("sklearn", "numpy", "scipy.sparse")
# Inert builtin types; skops already trusts most primitives, these cover the rest it may report.
_ALLOWED_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        "bool",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "set",
        "slice",
        "str",
        "tuple",
    )
)


class UntrustedArtifactError(ValueError):
    """Raised when an artifact references types outside the allowlist."""

    def __init__(self, types: list[str]):
        self.types = list(types)
        super().__init__(f"artifact contains untrusted types: {', '.join(self.types)}")


def _resolve(name: str) -> Any:
    """Import the object a dotted name refers to, or return None if it does not resolve."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _is_allowed(name: str) -> bool:
    if name in _ALLOWED_BUILTINS:
        return True
    module = name.rpartition(".")[0]
    if not (module.startswith(_ALLOWED_PREFIXES) or module in _ALLOWED_EXACT_MODULES):
        return False
    # skops reports functions too (e.g. a FunctionTransformer's func). A package prefix is not
    # enough for those: numpy.testing ships a helper that exec()s a string. Only classes pass.
    return isinstance(_resolve(name), type)


def dumps(model: Any) -> bytes:
    """Serialise a fitted model to skops bytes.

    Args:
        model: A fitted estimator or pipeline.

    Returns:
        The skops-encoded artifact.
    """
    return sio.dumps(model)


def untrusted_types(data: bytes) -> list[str]:
    """List the types in an artifact that the allowlist refuses.

    Args:
        data: A skops-encoded artifact.

    Returns:
        Sorted fully-qualified names of refused types; empty if the artifact is acceptable.
    """
    return sorted(t for t in sio.get_untrusted_types(data=data) if not _is_allowed(t))


def loads(data: bytes) -> Any:
    """Load a skops artifact, refusing anything outside the allowlist.

    Args:
        data: A skops-encoded artifact.

    Returns:
        The deserialised model.
    """
    reported = sio.get_untrusted_types(data=data)
    refused = sorted(t for t in reported if not _is_allowed(t))
    if refused:
        raise UntrustedArtifactError(refused)
    return sio.loads(data, trusted=list(reported))
