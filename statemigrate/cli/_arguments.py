"""Checks of command-line values: counts, output files, and the forms of values
(``COMPONENT=VERSION``, ``OLD.PATH=NEW``, ``MODULE:NAME``, ``fd:N``).

Each check runs before its command does any work, so a bad value costs one line on
stderr and nothing else: no demo run for nothing, no snapshot migrated and then not
written, no device or FIFO replaced by a regular file. A value of the wrong form is a
usage error, refused by argparse with status 2 like an unknown option.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from statemigrate._errors import StoreError
from statemigrate.cli._objects import is_object_url, split_url
from statemigrate.cli._source import parse_fd
from statemigrate.cli._usage import UsageError
from statemigrate.stores._safedir import FILE_KINDS

__all__ = [
    "ComponentVersions",
    "NamedValues",
    "Renames",
    "UsageError",
    "add_prefix_argument",
    "check_output_file",
    "module_attribute",
    "positive_integer",
    "snapshot_source",
    "store_location",
    "store_prefix",
]


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


def snapshot_source(text: str) -> str:
    """An argparse ``type``: a snapshot's source, whose ``fd:N`` form, or URL's
    ``#generation``, is checked here; whether it exists is left to the command."""
    try:
        if text.startswith("fd:"):
            parse_fd(text)
        elif is_object_url(text):
            split_url(text)
    except StoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def store_prefix(text: str) -> str:
    """An argparse ``type``: an object store's URL, naming no generation."""
    if "#" in text:
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r}: a store's URL names no generation; give it without #..."
        )
    return text


def store_location(text: str) -> str:
    """An argparse ``type``: an object store's URL, naming no generation, or a
    directory's path (which may hold any character, ``#`` included)."""
    if is_object_url(text):
        return store_prefix(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a URL or a directory, not an empty string")
    return text


def add_prefix_argument(parser: argparse.ArgumentParser) -> None:
    """The ``URL`` argument of commands that work on an object-store prefix (``list``,
    ``forget-unrestored``): no ``#`` fragment, since they read no one generation."""
    parser.add_argument(
        "url",
        metavar="URL",
        type=store_prefix,
        help="s3://bucket/prefix, gs://..., az://... or file:///path",
    )


def module_attribute(text: str) -> str:
    """An argparse ``type``: ``package.module:name``, as ``--registry`` and ``--schema``
    name an object to import."""
    module, sep, attribute = text.partition(":")
    if not sep or not module or not attribute:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} must look like 'package.module:name'")
    return text


class NamedValues(argparse.Action):
    """A repeatable ``NAME=VALUE`` option, collected into a dict of values by name.

    Subclasses say how one pair reads (:meth:`parse`) and what a name is (``noun``,
    ``once``). A name given twice is refused, whatever the values: a later value
    silently winning over an earlier one hides a mistake in a long command line.
    """

    noun = "name"
    """What a name stands for, in the refusal of a repeat (``names component 'x' twice``)."""
    once = "give each name once"
    """The cure, after the refusal of a repeat."""

    def parse(self, pair: str) -> tuple[str, Any]:
        """The name and value of one ``NAME=VALUE``.

        Raises:
            argparse.ArgumentError: ``pair`` does not have the option's form.
        """
        raise NotImplementedError

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name, value = self.parse(str(values))
        # A copy: argparse shares the default (``default={}``) between parses.
        collected: dict[str, Any] = dict(getattr(namespace, self.dest, None) or {})
        if name in collected:
            raise argparse.ArgumentError(
                self, f"names {self.noun} {name[:80]!r} twice: {self.once}"
            )
        collected[name] = value
        setattr(namespace, self.dest, collected)


class ComponentVersions(NamedValues):
    """``--to COMPONENT=VERSION``, repeatable: a dict of one version per component."""

    noun = "component"
    once = "give one version per component"

    def parse(self, pair: str) -> tuple[str, int]:
        component, sep, version = pair.partition("=")
        # ASCII digits only: int() refuses some of what str.isdigit() accepts ("²").
        # Ten digits hold every version a snapshot can (at most 2**31).
        if (
            not sep
            or not component
            or not (version.isascii() and version.isdigit())
            or len(version) > 10
        ):
            raise argparse.ArgumentError(self, f"{pair[:80]!r}: expected COMPONENT=VERSION")
        return component, int(version)


class Renames(NamedValues):
    """``--rename OLD.PATH=NEW``, repeatable: a dict of new names by old path."""

    noun = "path"
    once = "give one new name per path"

    def parse(self, pair: str) -> tuple[str, str]:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new or "." in new:
            raise argparse.ArgumentError(
                self, f"{pair[:80]!r}: expected OLD.PATH=NEW_NAME, e.g. entries.*.value=data"
            )
        return old, new


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
