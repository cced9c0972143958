"""The demo service: an HTTP key-value cache that upgrades and rolls back under load.

``statemigrate demo`` runs it end to end (see :func:`run_demo` and ``docs/handoff.md``,
section "The demo"): a cache server built on the reference component
(:mod:`statemigrate.reference`), a load generator in another process, and a script
that upgrades the server from release 1 to release 3, rolls it back, and upgrades it
again, then checks that no acknowledged write was lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemigrate.demo._run import DemoReport, run_demo

__all__ = ["DemoReport", "run_demo"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the demo's child processes run modules of this package
    # with ``python -m``, which warns when the package already imported them.
    if name in __all__:
        from statemigrate.demo import _run

        return getattr(_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
