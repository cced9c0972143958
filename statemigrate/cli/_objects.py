"""Object-store URLs on the command line: where snapshots are read from and committed to.

A command's ``SNAPSHOT`` (or ``migrate``'s ``-o OUT``) that starts with ``scheme://``
names an :class:`~statemigrate.stores.ObjectStore` prefix rather than a file:
``s3://bucket/prefix``, ``gs://...``, ``az://...`` or ``file:///absolute/path``. A
fragment chooses the generation read: ``#current`` (the default), ``#previous``,
``#unrestored`` (kept after a start could not restore it) or ``#N``. Endpoint, region
and credentials come from the environment as obstore reads them (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), or from repeated ``--store-option KEY=VALUE``, which are
obstore configuration keys, or the store's timeouts and retries
(:mod:`statemigrate.cli._storeoptions`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import unquote, urlsplit

from statemigrate._errors import ConfigurationError, SnapshotError, StoreError
from statemigrate._runtime._chainread import Chain
from statemigrate._snapshot._format import (
    DEFAULT_MAX_SNAPSHOT_SIZE,
    DecodeLimits,
    Snapshot,
)
from statemigrate.cli._source import open_read, open_snapshot_source, with_key_hint
from statemigrate.cli._storeoptions import parse_store_option, split_store_options
from statemigrate.cli._usage import UsageError
from statemigrate.stores import ObjectRef, ObjectStore

__all__ = [
    "Which",
    "add_store_argument",
    "commit_to_url",
    "is_object_url",
    "open_source",
    "open_store",
    "split_url",
]

Which = Literal["current", "previous", "unrestored"] | int
"""A generation of an object store: current, previous, unrestored, or a number."""

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_MAX_DIGITS = 20  # generation numbers are written with 20 digits in object names
_FRAGMENT_HELP = "expected URL#current, URL#previous, URL#unrestored or URL#N (a generation number)"


def is_object_url(source: str) -> bool:
    """Whether ``source`` names an object store (``scheme://...``) rather than a file.

    A file whose name looks like a URL is still reachable as ``./name``.
    """
    return _URL.match(source) is not None


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--store-option KEY=VALUE`` option of commands that take object-store URLs."""
    parser.add_argument(
        "--store-option",
        dest="store_options",
        action="append",
        default=[],
        type=parse_store_option,
        metavar="KEY=VALUE",
        help="an obstore setting for URL sources and outputs, e.g. endpoint=http://host:9000"
        " or allow_http=true, or the store's timeout, connect_timeout, retry_timeout"
        " (seconds) and retries (repeatable; the environment supplies the rest)",
    )


def split_url(text: str) -> tuple[str, Which]:
    """``text`` as the store's URL and the generation its fragment names.

    Raises:
        StoreError: the fragment is neither ``current``, ``previous``, ``unrestored``
            nor a number.
    """
    url, sep, fragment = text.partition("#")
    if not sep or fragment == "current":
        return url, "current"
    if fragment in ("previous", "unrestored"):
        return url, "previous" if fragment == "previous" else "unrestored"
    # Leading zeros stripped first: int() refuses strings of more than 4300 digits.
    digits = fragment.lstrip("0")
    if fragment.isascii() and fragment.isdigit() and 0 < len(digits) <= _MAX_DIGITS:
        return url, int(digits)
    raise StoreError("open", text, _FRAGMENT_HELP)


def open_store(
    url: str,
    options: Sequence[tuple[str, str]],
    *,
    max_size: int | None = None,
    create: bool = False,
) -> ObjectStore:
    """The object store at ``url``, configured by ``--store-option`` pairs.

    Args:
        url: the store's URL, without a fragment.
        options: obstore settings, as ``(key, value)`` pairs; ``timeout``,
            ``connect_timeout``, ``retry_timeout`` and ``retries`` are the store's own.
        max_size: the largest snapshot to read or commit (default: what a reader
            accepts, :data:`DEFAULT_MAX_SNAPSHOT_SIZE`).
        create: whether a missing ``file://`` directory may be created (for a commit);
            reading never creates one.

    Raises:
        StoreError: the URL is not one the store supports, is ``memory://``, or names
            a missing directory; obstore is missing or refused a setting.
        ConfigurationError: a timeout or retries is not a valid one.
        UsageError: an option is given with a ``file://`` URL, which takes none, or
            one that obstore does not take for the URL's backend.
    """
    match = _URL.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "memory":
        raise StoreError(
            "open",
            url,
            "a memory:// store is private to one process; the command line cannot share it",
        )
    if scheme == "file" and not create:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None  # ObjectStore says what is wrong with the URL
        path = unquote(parts.path) if parts and parts.netloc in ("", "localhost") else ""
        if path.startswith("/") and not os.path.isdir(path):
            if os.path.isfile(path):
                raise StoreError("open", url, "is a file, not a directory")
            if os.path.lexists(path):
                raise StoreError("open", url, "is not a directory")
            raise StoreError("open", url, "no such directory")
    if max_size is None:
        max_size = DEFAULT_MAX_SNAPSHOT_SIZE  # what a reader accepts by default
    if scheme == "file" and options:
        # Checked here, not by argparse, which reads the options before the URL.
        key = options[0][0]
        raise UsageError(
            f"argument --store-option: {key!r} is not a setting of file:// URLs, which take"
            " none (obstore's settings, the timeouts and retries are for s3://, gs:// and"
            " az:// URLs)"
        )
    settings = split_store_options(options)  # argparse checked them, when it read them
    try:
        # No warnings of slow requests: a command that fails prints one line, and a
        # hung server's request says why in that line when it times out.
        return ObjectStore(
            url,
            config=settings.config or None,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            retries=settings.retries,
            retry_timeout=settings.retry_timeout,
            max_size=max_size,
            warn_after=None,
        )
    except ConfigurationError as exc:
        if exc.option != "config":
            raise
        # A key obstore does not take for this URL's backend: found only as the store
        # is built, but as much a usage error as a file:// URL's key is.
        raise UsageError(
            f"argument --store-option: {exc.detail}; or the store's timeout,"
            " connect_timeout, retry_timeout and retries"
        ) from exc


def open_source(
    source: str,
    *,
    key: bytes | None,
    options: Sequence[tuple[str, str]],
    limits: DecodeLimits | None = None,
) -> tuple[Snapshot | Chain, ObjectRef | None]:
    """Read and verify the snapshot or checkpoint chain named by ``source``, and the
    generation it came from when ``source`` is an object-store URL.

    A file path or ``fd:N`` is read as :func:`read_snapshot_source` reads it; a URL's
    generation is read whole (it may be at most ``limits.max_snapshot_size`` bytes,
    checked before any byte is fetched). Both are then opened by :func:`open_read`: a
    chain's links are left to the caller.

    Raises:
        StoreError: the source cannot be read (for a URL: no snapshot committed, no
            such generation, the server unreachable, the bucket missing, access denied).
        SnapshotError: the bytes are not a sound snapshot or chain, or the key does
            not match; an authenticated one read without a key says how to give it.
    """
    limits = limits or DecodeLimits()
    try:
        if not is_object_url(source):
            return open_snapshot_source(source, key=key, limits=limits), None
        url, which = split_url(source)
        store = open_store(url, options, max_size=limits.max_snapshot_size)
        ref = store.ref(which)
        return open_read(ref.open(), key=key, limits=limits), ref
    except SnapshotError as exc:
        # Without a key, the only refusal of kind "auth" is a MAC with no key to check
        # it: the cure is an option the library's message cannot name.
        if exc.kind == "auth" and key is None:
            raise with_key_hint(exc) from exc
        raise


def commit_to_url(
    target: str,
    parts: Sequence[bytes | bytearray | memoryview],
    options: Sequence[tuple[str, str]],
) -> ObjectRef:
    """Commit ``parts`` as the next generation of the object store at ``target``.

    Raises:
        StoreError: ``target`` names a generation (a commit always makes the next
            one), or the commit failed; the store's pointer is then as it was.
        StoreConflictError: another writer committed first.
    """
    url, sep, _ = target.partition("#")
    if sep:
        raise StoreError(
            "commit", target, "a commit makes the next generation: give the URL without #..."
        )
    return open_store(url, options, create=True).commit(parts)
