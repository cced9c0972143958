from typing import Any

def records_fit(
    container: dict[Any, Any] | list[Any],
    names: tuple[str, ...],
    types: tuple[type, ...],
    kinds: bytes,
    key_type: type | None,
    plain: bool = False,
    /,
) -> bool: ...
def packs_plain(value: object, /) -> bool: ...
def records_bytes_fit(
    raw: bytes | bytearray | memoryview,
    root: tuple[tuple[bytes, ...], bytes, bytes] | None,
    collections: tuple[tuple[bool, tuple[tuple[bytes, ...], bytes, bytes]], ...],
    budget: int,
    /,
) -> tuple[int, ...] | None: ...
