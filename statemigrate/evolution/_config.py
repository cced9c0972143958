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

from statemigrate._errors import RegistrationError
from statemigrate._model import _registry
from statemigrate._model._registry import Registry

__all__ = ["ConfigError", "ProjectConfig", "find_config", "load_registry"]


@dataclass(frozen=True)
class ProjectConfig:
    """The settings found, with paths made absolute."""

    root: Path | None = None
    registry: str | None = None
    imports: tuple[str, ...] = ()
    migrations: Path | None = None
    schemas: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)


class ConfigError(RegistrationError):
    """A pyproject.toml that cannot be read, or whose ``[tool.statemigrate]`` is malformed.

    A :class:`~statemigrate.RegistrationError`, as the command line reports every
    problem with the project's set-up.

    Attributes:
        path: the file concerned.
        detail: what is wrong with it.
    """

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def find_config(start: Path | None = None) -> ProjectConfig:
    """Read ``[tool.statemigrate]`` from the nearest pyproject.toml at or above ``start``.

    Raises:
        ConfigError: the file exists but cannot be read, is not UTF-8 TOML, or its
            table (or a value in it) has the wrong type.
    """
    try:
        here = (start or Path.cwd()).resolve()
    except OSError as exc:
        raise ConfigError(
            start or Path("."), f"cannot resolve the folder to search from: {_reason(exc)}"
        ) from exc
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        try:
            found = candidate.is_file()
        except OSError as exc:
            raise ConfigError(candidate, f"stat failed: {_reason(exc)}") from exc
        if found:
            return _parse(candidate)
    return ProjectConfig()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for messages."""
    return _TOML_TYPES.get(type(value), "a date or time")


def _parse(path: Path) -> ProjectConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"read failed: {_reason(exc)}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(path, "not valid TOML: arrays or tables nest too deeply") from None
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(path, f"tool must be a table, not {_toml_type(tool)}")
    table = tool.get("statemigrate", {})
    if not isinstance(table, dict):
        raise ConfigError(
            path, f"tool.statemigrate must be a table, not {_toml_type(table)}"
        )
    root = path.parent

    def text_value(key: str, *, is_path: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(
                path, f"tool.statemigrate.{key} must be a string, not {_toml_type(value)}"
            )
        if is_path and "\0" in value:
            raise ConfigError(path, f"tool.statemigrate.{key} holds a NUL character")
        return value

    imports = table.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ConfigError(path, "tool.statemigrate.imports must be an array of strings")
    migrations = text_value("migrations", is_path=True)
    schemas = text_value("schemas", is_path=True)
    known = {"registry", "imports", "migrations", "schemas"}
    return ProjectConfig(
        root=root,
        registry=text_value("registry"),
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
    :func:`~statemigrate.cli._main.main`) without registering the same steps twice, and the
    process's own registries stay as its code made them.

    Raises:
        RegistrationError: the registry spec is malformed, does not name a Registry,
            or a module (or the registry factory) failed: raised an exception, or
            ``SystemExit`` (``sys.exit()``).
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
        target = target.copy()
        _load_migrations(target, migrations, f"the registry {spec!r}")
        return target
    folder = migrations or config.migrations
    target = _registry.default_registry.copy()
    if folder is not None:
        modules = ", ".join(repr(module) for module in (*config.imports, *imports))
        _load_migrations(target, folder, f"importing {modules}" if modules else "the registry")
    return target


def _load_migrations(target: Registry, folder: Path, origin: str) -> None:
    """Load ``folder`` into ``target``; a failure on a registry that held steps already
    says where they may have come from (the usual cause of a step declared twice)."""
    had_steps = any(target.steps(component) for component in target.components())
    try:
        target.load_migrations(folder)
    except RegistrationError as exc:
        if not had_steps:
            raise
        raise RegistrationError(
            f"{exc}; {origin} had registered steps before {str(folder)!r} was loaded:"
            " if it loads that folder itself, leave out --migrations (and `migrations`"
            " in [tool.statemigrate])"
        ) from exc


def _import(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RegistrationError(f"cannot import {module!r}: {exc}") from exc
    except Exception as exc:  # the user's module failed while running: say how, briefly
        raise RegistrationError(
            f"importing {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except SystemExit as exc:
        # A module that calls sys.exit() (a script's guard run on import) fails to
        # import like any other; left to propagate, it would end the command with its
        # status and no word. KeyboardInterrupt still goes through: Ctrl-C.
        raise RegistrationError(
            f"importing {module!r} failed: it raised SystemExit({exc.code!r})"
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
        except SystemExit as exc:
            raise RegistrationError(
                f"calling {spec!r} failed: it raised SystemExit({exc.code!r})"
            ) from exc
    if not isinstance(value, Registry):
        raise RegistrationError(f"{spec!r} is not a Registry (got {type(value).__name__})")
    return value
