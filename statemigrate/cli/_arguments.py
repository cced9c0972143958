"""Checks of command-line values that several commands share: counts and output files.

Each check runs before its command does any work, so a bad value costs one line on
stderr and nothing else: no demo run for nothing, no snapshot migrated and then not
written, no device or FIFO replaced by a regular file.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from statemigrate._errors import StoreError
from statemigrate.stores._safedir import FILE_KINDS

__all__ = ["check_output_file", "positive_integer"]


def positive_integer(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1.

    Its errors read ``invalid positive integer: 'abc'`` rather than naming a helper.
    """
    try:
        value = int(text)
    except ValueError:  # also past int()'s 4300 digits: quote only the start
        raise argparse.ArgumentTypeError(f"invalid positive integer: {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def check_output_file(path: str | os.PathLike[str], *, option: str) -> Path:
    """``path`` as a file a command may write, checked before the command starts.

    A command writes its output as a new regular file. A path that exists as anything
    else (a device, a FIFO, a socket, a directory, a symbolic link, which is not
    followed) is refused, as is an empty path and one whose folder is missing, not a
    directory or not writable.

    Raises:
        StoreError: naming ``option``, the path and what is wrong with it.
    """
    name = os.fspath(path)
    if not name:
        raise StoreError("write", "''", f"{option} needs a file name, not an empty string")
    if name.endswith("/"):
        raise StoreError("write", name, f"names a directory; {option} needs a file name")
    target = Path(name)
    try:
        st = os.lstat(name)
    except (FileNotFoundError, NotADirectoryError):
        pass  # the folder's check below says what is wrong
    except OSError as exc:
        raise StoreError(
            "write", name, f"cannot look at it: {exc.strerror or exc}", errno=exc.errno
        ) from exc
    else:
        kind = stat.S_IFMT(st.st_mode)
        if kind != stat.S_IFREG:
            what = FILE_KINDS.get(kind, "not a regular file")
            raise StoreError("write", name, f"is {what}; {option} replaces only a regular file")
    folder = target.parent
    try:
        folder_st = os.stat(folder)
    except OSError as exc:
        raise StoreError(
            "write",
            name,
            f"its folder {str(folder)!r} does not exist"
            if isinstance(exc, FileNotFoundError)
            else f"cannot look at its folder {str(folder)!r}: {exc.strerror or exc}",
            errno=exc.errno,
        ) from exc
    if not stat.S_ISDIR(folder_st.st_mode):
        raise StoreError("write", name, f"{str(folder)!r} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError("write", name, f"its folder {str(folder)!r} is not writable")
    return target
