"""Names of a package that load their module on first access (PEP 562).

A package lists such names with the module each comes from; importing the package
then does not import those modules, and the first access does, once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, namespace: dict[str, Any], modules: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for the names in ``modules``.

    Args:
        package: the package's ``__name__``, for the error on an unknown name.
        namespace: the package's ``globals()``: a name loaded once is stored there,
            an ordinary attribute from then on.
        modules: each lazy name and the module that defines it.
    """

    def module_getattr(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted(set(namespace) | set(modules))

    return module_getattr, module_dir
