"""Project settings from ``[tool.statemigrate]`` in pyproject.toml, for the command line.

Keys (all optional; paths are relative to the pyproject.toml that holds them)::

    [tool.statemigrate]
    registry = "myservice.state:build_registry"  # a Registry, or a callable returning one
    imports = ["myservice.state"]                # modules whose decorators register schemas
    migrations = "migrations"                    # directory of migrations modules
    schemas = "schemas"                          # directory of frozen JSON Schemas

The library itself never reads this file: only the command line does, and flags
override it.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from statemigrate import _registry
from statemigrate._errors import RegistrationError
from statemigrate._registry import Registry

__all__ = ["ProjectConfig", "find_config", "load_registry"]


@dataclass(frozen=True)
class ProjectConfig:
    """The settings found, with paths made absolute."""

    root: Path | None = None
    registry: str | None = None
    imports: tuple[str, ...] = ()
    migrations: Path | None = None
    schemas: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)


def find_config(start: Path | None = None) -> ProjectConfig:
    """Read ``[tool.statemigrate]`` from the nearest pyproject.toml at or above ``start``.

    Raises:
        RegistrationError: the file exists but the table is malformed.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return _parse(candidate)
    return ProjectConfig()


def _parse(path: Path) -> ProjectConfig:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise RegistrationError(f"{path}: not valid TOML: {exc}") from exc
    table = document.get("tool", {}).get("statemigrate", {})
    if not isinstance(table, dict):
        raise RegistrationError(f"{path}: [tool.statemigrate] must be a table")
    root = path.parent

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise RegistrationError(f"{path}: tool.statemigrate.{key} must be a string")
        return value

    imports = table.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise RegistrationError(f"{path}: tool.statemigrate.imports must be a list of strings")
    migrations = text("migrations")
    schemas = text("schemas")
    known = {"registry", "imports", "migrations", "schemas"}
    return ProjectConfig(
        root=root,
        registry=text("registry"),
        imports=tuple(imports),
        migrations=root / migrations if migrations else None,
        schemas=root / schemas if schemas else None,
        extra={k: v for k, v in table.items() if k not in known},
    )


def load_registry(
    config: ProjectConfig,
    *,
    registry: str | None = None,
    migrations: Path | None = None,
    imports: tuple[str, ...] = (),
) -> Registry:
    """Build the registry the command line works on.

    ``registry`` (or the config's) names ``module:attribute``: a Registry, or a callable
    that returns one already holding its migrations. Without it the decorators' default
    registry is used, after importing ``imports`` and loading the migrations directory.

    The folder holding pyproject.toml goes first on ``sys.path`` (as ``python -m`` puts
    the current folder), so ``registry`` and ``imports`` may name the project's own
    modules when the ``statemigrate`` script runs from a checkout that is not installed.

    Migrations are loaded into a copy, never into the registry found: the command line
    can then run any number of times in one process (tests, a service calling
    :func:`~statemigrate._cli.main`) without registering the same steps twice, and the
    process's own registries stay as its code made them.

    Raises:
        RegistrationError: the registry spec is malformed, does not name a Registry,
            or a module (or the registry factory) failed.
    """
    spec = registry or config.registry
    if config.root is not None and (spec or config.imports or imports):
        root = str(config.root)
        if root not in sys.path:
            sys.path.insert(0, root)
    for module in (*config.imports, *imports):
        _import(module)
    if spec:
        target = _resolve(spec)
        if migrations is None:
            return target
        target = _copy(target)
        target.load_migrations(migrations)
        return target
    folder = migrations or config.migrations
    target = _copy(_registry.default_registry)
    if folder is not None:
        target.load_migrations(folder)
    return target


def _copy(registry: Registry) -> Registry:
    """A new registry holding the same schemas and steps (which are immutable)."""
    copy = Registry()
    with registry._lock:
        copy._schemas, copy._steps = registry._save()
    return copy


def _import(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RegistrationError(f"cannot import {module!r}: {exc}") from exc
    except Exception as exc:  # the user's module failed while running: say how, briefly
        raise RegistrationError(
            f"importing {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _resolve(spec: str) -> Registry:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise RegistrationError(f"registry {spec!r} must look like 'package.module:name'")
    value = getattr(_import(module_name), attribute, None)
    if value is None:
        raise RegistrationError(f"{module_name!r} has no attribute {attribute!r}")
    if callable(value) and not isinstance(value, Registry):
        try:
            value = value()
        except Exception as exc:
            raise RegistrationError(
                f"calling {spec!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(value, Registry):
        raise RegistrationError(f"{spec!r} is not a Registry (got {type(value).__name__})")
    return value
