"""One default snapshot size limit: every reader, store and receiver shares it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

import statemigrate as sm
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.cli._objects import open_store
from statemigrate.cli._source import read_snapshot_source
from statemigrate.handoff import _receive, _systemd
from statemigrate.handoff import _service as handoff_service
from statemigrate.stores import MemfdRef, MemfdStore, MemoryStore, ObjectStore, TmpfsStore
from statemigrate.stores import open_memfd as open_memfd_function


def default_of(func: Callable[..., object], name: str) -> object:
    return inspect.signature(func).parameters[name].default


DEFAULTS: dict[str, Callable[[], object]] = {
    "DecodeLimits().max_snapshot_size": lambda: sm.DecodeLimits().max_snapshot_size,
    "MemoryStore(max_size=)": lambda: default_of(MemoryStore, "max_size"),
    "TmpfsStore(max_size=)": lambda: default_of(TmpfsStore, "max_size"),
    "MemfdStore(max_size=)": lambda: default_of(MemfdStore, "max_size"),
    "MemfdRef(max_size=)": lambda: default_of(MemfdRef, "max_size"),
    "ObjectStore(max_size=)": lambda: default_of(ObjectStore, "max_size"),
    "open_memfd(max_size=)": lambda: default_of(open_memfd_function, "max_size"),
    "Inheritance.hello(max_size=)": lambda: default_of(_receive.Inheritance.hello, "max_size"),
    "Inheritance.hello_async(max_size=)": lambda: default_of(
        _receive.Inheritance.hello_async, "max_size"
    ),
    "take_over(max_size=)": lambda: default_of(handoff_service.take_over, "max_size"),
    "take_over_async(max_size=)": lambda: default_of(handoff_service.take_over_async, "max_size"),
    "listen_fds(max_memfd_size=)": lambda: default_of(_systemd.listen_fds, "max_memfd_size"),
}


@pytest.mark.parametrize("where", sorted(DEFAULTS))
def test_every_default_is_the_shared_limit(where: str) -> None:
    assert DEFAULTS[where]() == DEFAULT_MAX_SNAPSHOT_SIZE == sm.DEFAULT_MAX_SNAPSHOT_SIZE


def test_the_command_lines_object_store_takes_the_shared_limit(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri(), ())
    assert store._max_size == DEFAULT_MAX_SNAPSHOT_SIZE


def snapshot_bytes() -> bytes:
    encoded = encode_snapshot(
        [SectionInput("c", "default", 1, "0" * 32, {"n": 1})], producer=Producer.current("s")
    )
    return encoded.to_bytes()


def test_the_reader_refuses_one_byte_over_its_limit() -> None:
    data = snapshot_bytes()
    sm.open_snapshot(data, limits=sm.DecodeLimits(max_snapshot_size=len(data)))
    with pytest.raises(sm.SnapshotError) as caught:
        sm.open_snapshot(data, limits=sm.DecodeLimits(max_snapshot_size=len(data) - 1))
    assert caught.value.kind == "too_large"


def test_the_command_lines_file_reader_refuses_one_byte_over(tmp_path: Path) -> None:
    data = snapshot_bytes()
    path = tmp_path / "s.smsnap"
    path.write_bytes(data)
    read_snapshot_source(str(path), limits=sm.DecodeLimits(max_snapshot_size=len(data)))
    with pytest.raises(sm.SnapshotError, match="too_large"):
        read_snapshot_source(str(path), limits=sm.DecodeLimits(max_snapshot_size=len(data) - 1))


@pytest.mark.parametrize("kind", ["memory", "tmpfs", "memfd"])
def test_each_store_refuses_one_byte_over_its_limit(kind: str, tmp_path: Path) -> None:
    data = snapshot_bytes()

    def store(max_size: int) -> sm.stores.Store:
        if kind == "memory":
            return MemoryStore(max_size=max_size)
        if kind == "tmpfs":
            return TmpfsStore(tmp_path / str(max_size), max_size=max_size)
        return MemfdStore(max_size=max_size)

    assert bytes(store(len(data)).commit([data]).open()) == data
    with pytest.raises(sm.StoreError, match="max_size"):
        store(len(data) - 1).commit([data])


def test_a_received_memfd_is_refused_one_byte_over_the_limit() -> None:
    data = snapshot_bytes()
    ref = MemfdStore().commit([data])
    assert bytes(open_memfd_function(ref.fd, max_size=len(data))) == data
    with pytest.raises(sm.StoreError, match="max_size"):
        open_memfd_function(ref.fd, max_size=len(data) - 1)
