"""The few object-storage operations the object store needs, over obstore.

obstore (the Python bindings of Rust's ``object_store``) is an optional dependency,
imported here and only when an :class:`~statemigrate.stores.ObjectStore` is created.
This module runs each request on an obstore store (built from a URL by
``_object_build``), and translates what obstore raises into :class:`StoreError` (see
``_object_errors``); the commit protocol itself lives in ``_object``.

obstore's local file system store opens whatever file a key names, and blocks in native
code (past the reach of timeouts and of Ctrl-C) on a FIFO with no writer. So a
``file://`` store looks at the local path of each key before it reads or heads it, and
refuses anything but a regular file, as every other store and path the library reads
does.

One backend cannot do a conditional update: obstore's local file system store refuses
``PutMode`` update. For ``file://`` stores the compare-and-swap of the pointer is done
under an ``flock`` of a lock file beside it instead, which makes it atomic between the
processes of one host (not across hosts sharing a network file system).
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from statemigrate._errors import StoreError
from statemigrate.stores import _object_watch
from statemigrate.stores._object_errors import is_missing_bucket, kind_of, translate
from statemigrate.stores._safedir import FILE_KINDS

if TYPE_CHECKING:
    from obstore import PutMode, UpdateVersion

__all__ = [
    "REMOTE_CLASSES",
    "Backend",
    "Listed",
    "NotRegularFile",
    "Oversized",
    "Refused",
    "Version",
    "obstore_module",
]

REMOTE_CLASSES = frozenset({"S3Store", "GCSStore", "AzureStore"})
"""obstore's stores of objects on another host."""
_DROPPING_CLASSES = REMOTE_CLASSES | {"LocalStore"}
"""Stores whose multipart upload drops each part once it is written; obstore's
``MemoryStore`` keeps every part until the upload completes."""
_INSTALL_HINT = "obstore is not installed: pip install 'statemigrate[objectstore]'"

Version = tuple[str | None, str | None]
"""``(e_tag, version)`` of one state of an object, as a conditional update needs it."""


class Listed(NamedTuple):
    """One object found by a listing."""

    name: str
    size: int
    modified: datetime | None
    etag: str | None


class EtagChanged(StoreError):
    """A read conditional on the etag recorded at commit found another etag.

    Internal: a copy of the prefix (a managed multipart copy re-parts the object) changes
    the etag of intact bytes, so the object store checks the content before it calls
    the object replaced.
    """


class NotRegularFile(StoreError):
    """A ``file://`` store's key names something other than a regular file (a FIFO, a
    device, a socket, a directory), which is refused unopened.

    Attributes:
        what: what it is (``"a FIFO"``, ...).
    """

    def __init__(self, op: str, where: str, what: str) -> None:
        self.what = what
        super().__init__(op, where, f"is {what}, not a regular file; refusing it")


class Refused(Exception):
    """A conditional write found the object changed (or present, for create-only).

    Internal: the object store turns it into :class:`StoreConflictError`.
    """


class Oversized(Exception):
    """A small object is larger than its reader allows: the caller says what that
    means (for the pointer: not ours).

    Attributes:
        size: the object's size in bytes.
        limit: the most its reader allows.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"is {size} bytes, more than {limit}")


def obstore_module() -> Any:
    """The obstore package, imported on first use.

    Raises:
        StoreError: obstore is not installed; the message names the extra.
    """
    try:
        import obstore
    except ImportError as exc:
        raise StoreError("open", "obstore", _INSTALL_HINT) from exc
    return obstore


class Backend:
    """One obstore store and a key prefix inside it; every request translates errors.

    Args:
        store: the obstore store.
        prefix: keys of this backend start with ``prefix/`` (empty: none).
        location: printable location of the prefix, used in error messages.
        remote: whether the objects live on another host.

    Attributes:
        drops_sent_parts: whether a multipart upload drops each part once it is
            written, so that the caller may wait for that before making more.
        warn_after: seconds after which a request still running is logged as slow
            (``None``: never; see ``_object_watch``).
    """

    def __init__(self, store: Any, prefix: str, location: str, *, remote: bool) -> None:
        self._obs = obstore_module()
        self.store = store
        self.prefix = prefix.strip("/")
        self.location = location if location.endswith("://") else location.rstrip("/")
        self.remote = remote
        self.drops_sent_parts = type(store).__name__ in _DROPPING_CLASSES
        self.warn_after: float | None = _object_watch.DEFAULT_WARN_AFTER
        self._local_root: Path | None = None
        if type(store).__name__ == "LocalStore":
            root = store.prefix
            self._local_root = Path(root) if root is not None else Path("/")

    def key(self, name: str) -> str:
        """The store key of ``name`` (a name relative to the prefix)."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def where(self, name: str) -> str:
        """Printable location of ``name``."""
        separator = "" if self.location.endswith("/") else "/"
        return f"{self.location}{separator}{name}"

    def _refuse_special(self, op: str, name: str) -> None:
        """Refuse ``name`` of a ``file://`` store unless it is a regular file or absent.

        obstore would open a FIFO (and wait for a writer for ever) or a device; a stat
        of the path does not open it. A symbolic link is judged by what it names, as
        obstore follows it. Other stores hold only objects.

        Raises:
            NotRegularFile: naming what the file is.
        """
        if self._local_root is None:
            return
        path = self._local_root / self.key(name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return  # missing or unreadable: obstore says which, in its own request
        if not stat.S_ISREG(mode):
            what = FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise NotRegularFile(op, self.where(name), what)

    def _watch(self, op: str, name: str) -> _object_watch.Watch | _object_watch.Unwatched:
        """A request of ``op`` on ``name``, logged if it runs past ``warn_after``."""
        return _object_watch.watch(op, self.where(name), self.warn_after)

    # -- reads -----------------------------------------------------------------------

    def get_small(self, name: str, *, limit: int) -> tuple[bytes, Version] | None:
        """The bytes and version of a small object, or ``None`` when there is none.

        Raises:
            Oversized: it is larger than ``limit`` (read no further).
            NotRegularFile: a ``file://`` store's file is not a regular file.
            StoreError: the bucket is missing, or the request failed.
        """
        self._refuse_special("open", name)
        try:
            with self._watch("open", name):
                result = self._obs.get(self.store, self.key(name))
                meta = result.meta
                if meta["size"] > limit:
                    raise Oversized(meta["size"], limit)
                data = bytes(result.bytes())
        except Oversized:
            raise
        except Exception as exc:
            if kind_of(exc) == "not_found" and not is_missing_bucket(exc):
                return None
            raise translate("open", self.where(name), exc) from exc
        return data, (meta.get("e_tag"), meta.get("version"))

    def etag_of(self, name: str) -> str | None:
        """The etag ``name`` has now (a HEAD request).

        Raises:
            StoreError: the object or the bucket is missing, or the request failed.
        """
        self._refuse_special("open", name)
        try:
            with self._watch("open", name):
                meta = self._obs.head(self.store, self.key(name))
        except Exception as exc:
            raise translate("open", self.where(name), exc) from exc
        etag: str | None = meta.get("e_tag")
        return etag

    def exists(self, name: str) -> bool:
        """Whether there is an object ``name`` (a HEAD request).

        Raises:
            StoreError: the bucket is missing, or the request failed.
        """
        self._refuse_special("open", name)
        try:
            with self._watch("open", name):
                self._obs.head(self.store, self.key(name))
        except Exception as exc:
            if kind_of(exc) == "not_found" and not is_missing_bucket(exc):
                return False
            raise translate("open", self.where(name), exc) from exc
        return True

    def read_into(self, name: str, size: int, etag: str | None, *, window: int) -> memoryview:
        """Read the ``size`` bytes of ``name`` into one new buffer, ``window`` at a time.

        Each window is a ranged GET conditional on ``etag``, so the memory used is the
        buffer plus one window, and a replaced object is noticed.

        Raises:
            StoreError: the object is missing, has another size, was replaced since it
                was committed, or a request failed.
        """
        buffer = bytearray(size)
        view = memoryview(buffer)
        position = 0
        while True:
            end = min(position + window, size)
            view[position:end] = self.read_range(name, position, end, size=size, etag=etag)
            position = end
            if position >= size:
                return view.toreadonly()

    def read_range(
        self, name: str, start: int, end: int, *, size: int, etag: str | None
    ) -> memoryview:
        """Bytes ``start`` to ``end`` of ``name``, an object of ``size`` bytes: one GET,
        conditional on ``etag`` when given (a ``size`` of 0 reads the whole object).

        Raises:
            StoreError: the object is missing, has another size, was replaced since
                (:class:`EtagChanged`), or the request failed.
        """
        where = self.where(name)
        options: dict[str, Any] = {"if_match": etag} if etag else {}
        if size:
            options["range"] = (start, end)
        self._refuse_special("open", name)
        try:
            with self._watch("open", name):
                result = self._obs.get(self.store, self.key(name), options=options)
                found = result.meta["size"]
                if found != size:
                    raise StoreError(
                        "open", where, f"is {found} bytes, but {size} were committed"
                        " (corrupt)"
                    )
                chunk = memoryview(result.bytes())
        except StoreError:
            raise
        except Exception as exc:
            missing = StoreError("open", where, "is missing (deleted after its commit?)")
            if kind_of(exc) == "precondition":
                # S3 answers a conditional GET of a deleted object with 404, Azure
                # (Azurite) with 412: If-Match never matches what is not there.
                if not self.exists(name):
                    raise missing from exc
                raise EtagChanged(
                    "open", where, "was replaced after it was committed (etag differs)"
                ) from exc
            error = translate("open", where, exc)
            if kind_of(exc) == "not_found" and not is_missing_bucket(exc):
                error = missing
            raise error from exc
        if chunk.nbytes != end - start:
            raise StoreError(
                "open",
                where,
                f"returned {chunk.nbytes} bytes for range {start}-{end} (corrupt)",
            )
        return chunk

    def list_names(self, folder: str) -> list[str]:
        """Names (relative to the prefix) of the objects under ``folder/``.

        Raises:
            StoreError: the listing failed.
        """
        return [listed.name for listed in self.list_objects(folder)]

    def list_objects(self, folder: str) -> list[Listed]:
        """The objects under ``folder/``: names relative to the prefix, sizes, times.

        Raises:
            StoreError: the listing failed.
        """
        start = len(self.prefix) + 1 if self.prefix else 0
        found: list[Listed] = []
        try:
            with self._watch("list", folder) as watching:
                for batch in self._obs.list(self.store, self.key(folder) + "/"):
                    watching.progress()  # a page of the listing: the server answers
                    found.extend(
                        Listed(
                            meta["path"][start:],
                            meta["size"],
                            meta.get("last_modified"),
                            meta.get("e_tag"),
                        )
                        for meta in batch
                    )
        except Exception as exc:
            raise translate("list", self.where(folder), exc) from exc
        return found

    # -- writes ----------------------------------------------------------------------

    def put_create(self, name: str, parts: Iterable[memoryview]) -> Version:
        """Write ``parts`` as a new object in one request; refused if ``name`` exists.

        Raises:
            Refused: the object exists.
            StoreError: the request failed.
        """
        return self._put("write", name, list(parts), mode="create", use_multipart=False)

    def put_parts(
        self, name: str, parts: Iterator[memoryview], *, part_size: int, max_concurrency: int
    ) -> Version:
        """Stream ``parts`` into ``name`` as a multipart upload, ``part_size`` per part.

        obstore cannot make a multipart upload create-only; callers pick a fresh random
        name. An exception raised by ``parts`` aborts the upload and propagates.
        obstore keeps each buffer of ``parts`` until the request of its part is
        acknowledged, and pulls the next one as long as at most ``max_concurrency``
        requests are in flight: to bound the memory whatever the server's pace,
        callers pace ``parts`` by what obstore still holds (see ``_object_parts``).

        Raises:
            StoreError: a request failed; the upload is aborted.
        """
        raised: list[BaseException] = []
        # A large snapshot takes long on a healthy server too: the upload is late when
        # it takes no part for warn_after seconds, not when it runs that long.
        watching = self._watch("write", name)

        def guarded() -> Iterator[memoryview]:
            try:
                for part in parts:
                    watching.progress()
                    yield part
            except BaseException as exc:
                raised.append(exc)
                raise

        return self._put(
            "write",
            name,
            guarded(),
            mode=None,
            use_multipart=True,
            chunk_size=part_size,
            max_concurrency=max_concurrency,
            raised=raised,
            watching=watching,
        )

    def swap(self, name: str, data: bytes, expected: Version | None) -> Version:
        """Replace ``name`` with ``data`` only if it is still at version ``expected``
        (create it only if it does not exist, when ``expected`` is ``None``).

        Raises:
            Refused: the object changed, or exists when it should not.
            StoreError: the request failed.
        """
        if self._local_root is not None:
            return self._swap_locked(name, data, expected)
        mode: PutMode = "create"
        if expected is not None:
            update: UpdateVersion = {}
            if expected[0] is not None:
                update["e_tag"] = expected[0]
            if expected[1] is not None:
                update["version"] = expected[1]
            mode = update
        return self._put("commit", name, data, mode=mode, use_multipart=False)

    def delete(self, names: list[str]) -> None:
        """Delete the objects ``names``; a missing one is not an error.

        Raises:
            StoreError: a request failed.
        """
        if not names:
            return
        try:
            with self._watch("delete", names[0]):
                self._obs.delete(self.store, [self.key(name) for name in names])
        except Exception as exc:
            if kind_of(exc) != "not_found" or is_missing_bucket(exc):
                raise translate("delete", self.where(names[0]), exc) from exc

    def _put(
        self,
        op: str,
        name: str,
        data: object,
        *,
        raised: list[BaseException] | None = None,
        watching: _object_watch.Watch | _object_watch.Unwatched | None = None,
        **options: Any,
    ) -> Version:
        try:
            with watching or self._watch(op, name):
                result = self._obs.put(self.store, self.key(name), data, **options)
        except Exception as exc:
            if raised and exc is raised[0]:
                raise  # the caller's own iterator failed; obstore aborted the upload
            kind = kind_of(exc)
            if kind in ("exists", "precondition") and not is_missing_bucket(exc):
                raise Refused(str(exc)) from exc
            raise translate(op, self.where(name), exc) from exc
        return result.get("e_tag"), result.get("version")

    def _swap_locked(self, name: str, data: bytes, expected: Version | None) -> Version:
        assert self._local_root is not None
        lock_path = self._local_root / self.key(name + ".lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                "lock", str(lock_path), exc.strerror or str(exc), errno=exc.errno
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._refuse_special("commit", name)
            try:
                with self._watch("commit", name):
                    meta = self._obs.head(self.store, self.key(name))
                now: Version | None = (meta.get("e_tag"), meta.get("version"))
            except Exception as exc:
                if kind_of(exc) != "not_found":
                    raise translate("commit", self.where(name), exc) from exc
                now = None
            if (now is None) != (expected is None) or (
                now is not None and expected is not None and now[0] != expected[0]
            ):
                raise Refused(f"{self.where(name)} changed")
            # LocalStore writes a temporary file and renames it: readers see the old
            # pointer or the new one.
            return self._put("commit", name, data, mode="overwrite", use_multipart=False)
        finally:
            os.close(fd)  # releases the flock
