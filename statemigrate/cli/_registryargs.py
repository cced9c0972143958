"""Where a command finds its registry: ``--registry``, ``--import`` and ``--migrations``,
or ``[tool.statemigrate]`` of pyproject.toml."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from statemigrate._errors import ConfigurationError
from statemigrate._model._registry import Registry
from statemigrate.cli._arguments import module_attribute
from statemigrate.evolution._config import find_config, load_registry

__all__ = ["add_registry_arguments", "current_folder_first", "named_registry", "registry_from"]


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """``--migrations``, ``--registry`` and ``--import``: where a command finds the registry."""
    parser.add_argument(
        "--migrations",
        type=Path,
        metavar="PATH",
        help="directory of migrations modules (default: [tool.statemigrate] migrations)",
    )
    parser.add_argument(
        "--registry",
        metavar="MODULE:NAME",
        type=module_attribute,
        help="a Registry, or a function returning one (default: [tool.statemigrate] registry)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first so its decorators register schemas (repeatable)",
    )


def current_folder_first() -> None:
    """Put the current folder first on ``sys.path`` before importing the user's modules.

    ``python -m statemigrate`` does so itself; the ``statemigrate`` script puts its
    own folder there instead, so ``--import app`` would not find ``./app.py`` (uvicorn's
    ``--app-dir`` defaults to ``.`` for the same reason). The folder of pyproject.toml,
    when there is one, still goes before it.
    """
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def registry_from(args: argparse.Namespace) -> Registry:
    """The registry named by the command line and pyproject.toml.

    Raises:
        ConfigurationError: it holds no component (most often: none was named), so
            every component would be reported unknown.
    """
    current_folder_first()
    config = find_config()
    registry = load_registry(
        config,
        registry=args.registry,
        migrations=args.migrations,
        imports=tuple(args.imports),
    )
    if not registry.components():
        raise ConfigurationError("registry", _why_empty(args, config.registry, config.imports))
    return registry


def named_registry(args: argparse.Namespace) -> Registry | None:
    """The registry the command line or pyproject.toml names, or ``None`` when neither
    names one (for a command that works without one, such as ``inspect``).

    Raises:
        ConfigurationError, RegistrationError: as :func:`registry_from`.
    """
    config = find_config()
    named = args.registry or args.migrations or args.imports
    if not named and not (config.root is not None and (config.registry or config.imports)):
        return None
    return registry_from(args)


def _why_empty(
    args: argparse.Namespace, configured: object, configured_imports: tuple[str, ...]
) -> str:
    """Why the registry is empty, and what to name instead."""
    if args.registry or args.migrations or configured:
        return "the registry named holds no component"
    imported = (*configured_imports, *args.imports)
    if imported:
        # The modules ran, but registered nothing in the default registry: most often
        # they build a Registry of their own, which only --registry can reach.
        return (
            f"importing {', '.join(imported)} registered no component in the default"
            " registry; if it builds a Registry of its own, name it with"
            " --registry MODULE:NAME"
        )
    return (
        "no component is registered: name the registry with --registry MODULE:NAME,"
        " --import MODULE or --migrations PATH, or in [tool.statemigrate] of pyproject.toml"
    )
