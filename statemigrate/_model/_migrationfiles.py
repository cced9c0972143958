"""A migrations directory's modules: which files are loaded and in what order, and
importing each under a fresh module name.

:meth:`~statemigrate._model._registry.Registry.load_migrations` loads them into a
registry, all or nothing; this module knows nothing of registries. It raises
:class:`~statemigrate.RegistrationError`, naming the directory or the file.
"""

from __future__ import annotations

import errno
import importlib.util
import itertools
import os
import re
import stat
import sys
from pathlib import Path

from statemigrate._errors import RegistrationError

__all__ = ["import_file", "migration_files"]

# Each loaded migrations module gets a fresh module name, so loading the same directory
# into two registries runs its code twice instead of reusing the first import.
_load_serial = itertools.count(1)


_NOT_DIRECTORIES = {
    stat.S_IFREG: "a regular file",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def migration_files(folder: Path) -> list[Path]:
    """The migrations modules of ``folder`` in load order: the ``*.py`` files directly
    in it whose names do not start with ``_``, sorted.

    Raises:
        RegistrationError: ``folder`` is missing, is not a directory (saying what it
            is), is a loop of symbolic links, or cannot be read.
    """
    where = f"migrations directory {str(folder)!r}"
    try:
        kind = stat.S_IFMT(os.stat(folder).st_mode)
    except FileNotFoundError:
        dangling = os.path.islink(folder)
        raise RegistrationError(
            f"{where} is a symbolic link to nothing" if dangling else f"{where} does not exist"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RegistrationError(f"{where} is a loop of symbolic links") from None
        raise RegistrationError(f"{where} cannot be read: {_os_reason(exc)}") from exc
    if kind != stat.S_IFDIR:
        what = _NOT_DIRECTORIES.get(kind, "not a directory")
        raise RegistrationError(f"{where} is {what}, not a directory")
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise RegistrationError(f"{where} cannot be read: {_os_reason(exc)}") from exc
    return sorted(
        entry
        for entry in entries
        if entry.suffix == ".py" and not entry.name.startswith("_") and entry.is_file()
    )


def _os_reason(exc: OSError) -> str:
    """``Permission denied (EACCES)``: an OS error's reason and its name."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "no errno"
    return f"{exc.strerror or exc} ({name})"


def import_file(entry: Path) -> None:
    stem = re.sub(r"\W", "_", entry.stem)
    module_name = f"_statemigrate_migrations_{next(_load_serial)}_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, entry)
    if spec is None or spec.loader is None:
        raise RegistrationError(f"cannot load migrations module {str(entry)!r}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as a normal import does: dataclasses and pydantic look
    # a class's module up in sys.modules to resolve its annotations.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise RegistrationError(
            f"migrations module {str(entry)!r} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    except SystemExit as exc:
        # sys.exit() in a migrations module is a failure to load it, not a request to
        # end whatever process loads the directory (a service, the command line).
        del sys.modules[module_name]
        raise RegistrationError(
            f"migrations module {str(entry)!r} failed to load: it raised SystemExit({exc.code!r})"
        ) from exc
    except BaseException:
        del sys.modules[module_name]
        raise
