"""The stores' options: each bad one is one ConfigurationError line (a ValueError too)
that names the option, says what is allowed and shows the value given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from obstore.store import MemoryStore as RawMemoryStore

from statemigrate import ConfigurationError
from statemigrate.stores import MemfdStore, MemoryStore, ObjectStore, TmpfsStore


def object_store(**options: Any) -> Callable[[Path], object]:
    return lambda base: ObjectStore("memory://", **options)


def tmpfs_store(**options: Any) -> Callable[[Path], object]:
    return lambda base: TmpfsStore(options.pop("directory", base / "store"), **options)


BAD_OPTIONS = [
    (object_store(keep=1), "keep: must be an int of at least 2, not 1"),
    (object_store(keep=2.0), "keep: must be an int of at least 2, not 2.0"),
    (object_store(keep=True), "keep: must be an int of at least 2, not True"),
    (object_store(part_size=1 << 20), "part_size: must be an int of at least 5 MiB, not 1048576"),
    (object_store(max_concurrency=0), "max_concurrency: must be an int from 1 to 10,000, not 0"),
    (object_store(max_concurrency=10_001), "max_concurrency: must be an int from 1 to 10,000"),
    (object_store(max_concurrency=2**64), "max_concurrency: must be an int from 1 to 10,000"),
    (object_store(max_size=0), "max_size: must be an int of 1 or more (bytes), not 0"),
    (
        object_store(config={"bogus": 1}),
        "config: must be empty for a memory:// URL, which takes no settings (obstore's are"
        " for s3://, gs:// and az:// URLs), not {'bogus': 1}",
    ),
    (
        lambda base: ObjectStore(f"file://{base}/objects", config={"keep": "1"}),
        "config: must be empty for a file:// URL, which takes no settings",
    ),
    (
        lambda base: ObjectStore(f"file://{base}/objects", client_options={"timeout": "3s"}),
        "client_options: must be empty for a file:// URL",
    ),
    (
        lambda base: ObjectStore(f"file://{base}/objects", timeout=3),
        "timeout: must be None for a file:// URL, which sends no requests (it is for s3://,"
        " gs:// and az:// URLs), not 3",
    ),
    (
        lambda base: ObjectStore(f"file://{base}/objects", retries=0),
        "retries: must be None for a file:// URL, which sends no requests",
    ),
    (object_store(retries=2), "retries: must be None for a memory:// URL, which sends no"),
    (object_store(connect_timeout=1), "connect_timeout: must be None for a memory:// URL"),
    (object_store(retry_timeout=0), "retry_timeout: must be None for a memory:// URL"),
    (
        object_store(credential_provider=lambda: None),
        "credential_provider: must be None for a memory:// URL",
    ),
    (object_store(max_size=-1), "max_size: must be an int of 1 or more (bytes), not -1"),
    (
        object_store(warn_after=0),
        "warn_after: must be a number of seconds above 0 and at most a day, not 0",
    ),
    (object_store(timeout=-1), "timeout: must be a number of seconds above 0 and at most a day"),
    (object_store(retries=101), "retries: must be an int from 0 to 100, not 101"),
    (object_store(prefix="a//b"), "prefix: must be a string of names separated by '/'"),
    (object_store(prefix="app/../other"), "prefix: must be a string of names"),
    (object_store(prefix="./app"), "prefix: must be a string of names"),
    (object_store(prefix="a\nb"), "prefix: must be a string of names"),
    (object_store(prefix=None), "prefix: must be a string of names"),
    (
        lambda base: ObjectStore(RawMemoryStore(), retries=2),
        "retries: must be None with an obstore store passed in (set it on that store), not 2",
    ),
    (tmpfs_store(max_size=-1), "max_size: must be an int of 1 or more (bytes), not -1"),
    (tmpfs_store(max_size=0), "max_size: must be an int of 1 or more (bytes), not 0"),
    (lambda base: MemfdStore(max_size=0), "max_size: must be an int of 1 or more (bytes), not 0"),
    (lambda base: MemoryStore(max_size=0), "max_size: must be an int of 1 or more (bytes), not 0"),
    (tmpfs_store(temp_files="tmp"), "temp_files: must be 'auto', 'anonymous' or 'named'"),
    (tmpfs_store(directory=""), "directory: must be a non-empty path (str or os.PathLike), not ''"),
    (tmpfs_store(directory=3), "directory: must be a non-empty path (str or os.PathLike), not 3"),
    (lambda base: MemfdStore(max_size="1"),  # type: ignore[arg-type]
     "max_size: must be an int of 1 or more (bytes)"),
    (lambda base: MemfdStore(name="a\0b"), "name: must be a string of at most 249 bytes"),
    (lambda base: MemfdStore(name="x" * 250), "name: must be a string of at most 249 bytes"),
    (lambda base: MemoryStore(max_size=-5), "max_size: must be an int of 1 or more (bytes)"),
]


@pytest.mark.parametrize(("make", "line"), BAD_OPTIONS)
def test_a_bad_option_is_one_configuration_line(
    base: Path, make: Callable[[Path], object], line: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make(base)
    message = str(caught.value)
    assert message.startswith(line), message
    assert "\n" not in message
    assert ", not " in message  # the value given is shown
    assert caught.value.option == line.split(":", 1)[0]
    # Code written when these were plain ValueErrors still catches them.
    assert isinstance(caught.value, ValueError)


def test_a_long_value_is_quoted_by_its_start() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ObjectStore("memory://", prefix="a//" + "b" * 500)
    assert str(caught.value).endswith("... (505 characters)")
    assert len(str(caught.value)) < 250


@pytest.mark.parametrize("prefix", ["", "/", "app", "/app/", "team/app", "a b/c%2Fd", "*"])
def test_prefixes_of_any_other_shape_are_taken(prefix: str) -> None:
    store = ObjectStore("memory://", prefix=prefix)
    store.commit(b"snapshot")
    assert bytes(store.open()) == b"snapshot"


def test_a_memfd_name_at_its_longest_is_taken() -> None:
    with MemfdStore(name="x" * 249) as store:
        store.commit(b"snapshot")


def test_the_largest_max_concurrency_commits_in_parts(base: Path) -> None:
    """At its bound, max_concurrency reaches obstore without overflowing: a snapshot
    of several parts commits and reads back (2**64 was taken, then failed every
    multipart commit with OverflowError)."""
    store = ObjectStore(f"file://{base}/objects", max_concurrency=10_000)
    data = bytes(range(256)) * (11 << 12)  # 11 MiB: three parts of 5 MiB
    store.commit(data)
    assert bytes(store.open()) == data


def test_a_max_size_of_one_byte_is_taken() -> None:
    store = MemoryStore(max_size=1)
    store.commit(b"x")
    assert bytes(store.open()) == b"x"
