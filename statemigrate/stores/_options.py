"""The stores' options, checked before anything is opened.

Every bad option of :class:`~statemigrate.stores.TmpfsStore`,
:class:`~statemigrate.stores.MemfdStore`, :class:`~statemigrate.stores.MemoryStore`
and :class:`~statemigrate.stores.ObjectStore` is one
:class:`~statemigrate.ConfigurationError` line that names the option, says what is
allowed and shows the value given: ``keep: must be an int of at least 2, not 1``.
``ConfigurationError`` is a ``ValueError``, so code that caught the ``ValueError``
these checks raised before still catches them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from statemigrate._errors import ConfigurationError

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MIN_PART_SIZE",
    "check_choice",
    "check_int",
    "check_max_concurrency",
    "check_max_size",
    "check_memfd_name",
    "check_no_request_setting",
    "check_no_settings",
    "check_prefix",
    "check_retries",
    "check_seconds",
    "refused",
]

MAX_SECONDS = 86_400.0
"""The longest timeout: a day is far past any request's need, and well within what
obstore converts (1e20 seconds overflowed inside it)."""
MAX_RETRIES = 100
"""The most retries of one request; obstore's count overflowed past an unsigned 64 bits."""
MIN_PART_SIZE = 5 << 20
"""S3's smallest multipart part (the last part excepted)."""
MAX_CONCURRENCY = 10_000
"""The most parts an ``ObjectStore`` uploads at once: S3's most parts in one upload, so
no commit could use more. obstore overflowed on 2**64, at the first multipart commit."""
_MEMFD_NAME_BYTES = 249
"""The longest name memfd_create(2) takes: 255 bytes less its ``memfd:`` prefix."""
_SHOWN_CHARS = 60
"""How much of a refused value's repr a message quotes."""


def refused(option: str, allowed: str, value: object) -> ConfigurationError:
    """The error for ``value`` given as ``option``: ``option: must be allowed, not value``."""
    shown = repr(value)
    if len(shown) > _SHOWN_CHARS:
        shown = f"{shown[: _SHOWN_CHARS - 3]}... ({len(shown)} characters)"
    return ConfigurationError(option, f"must be {allowed}, not {shown}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    option: str, value: int, *, least: int, allowed: str, most: int | None = None
) -> int:
    """``value`` when it is an int (not a bool) of at least ``least`` (and at most
    ``most``, when given).

    Raises:
        ConfigurationError: it is not; ``allowed`` says what would be.
    """
    if not _is_int(value) or value < least or (most is not None and value > most):
        raise refused(option, allowed, value)
    return value


def check_max_concurrency(value: int) -> int:
    """Validate ``ObjectStore(max_concurrency=...)``.

    Raises:
        ConfigurationError: it is not an int from 1 to ``MAX_CONCURRENCY``.
    """
    allowed = f"an int from 1 to {MAX_CONCURRENCY:,}"
    return check_int("max_concurrency", value, least=1, most=MAX_CONCURRENCY, allowed=allowed)


def check_max_size(max_size: int) -> int:
    """Validate a ``max_size`` option.

    A snapshot is never empty, so 0 would refuse every commit: the least is 1 byte.
    (Stores know nothing of the format, so not its smallest snapshot.)

    Raises:
        ConfigurationError: it is not an int of 1 or more.
    """
    return check_int("max_size", max_size, least=1, allowed="an int of 1 or more (bytes)")


def check_no_settings(scheme: str, option: str, settings: Mapping[Any, Any] | None) -> None:
    """``settings`` (``config`` or ``client_options``) for a ``file://`` or
    ``memory://`` URL: obstore's stores for them take none, and ignored them without a
    word, where an ``s3://`` URL's unknown key is refused.

    Raises:
        ConfigurationError: it holds a key; the message shows them.
    """
    if settings:
        allowed = (
            f"empty for a {scheme}:// URL, which takes no settings (obstore's are for"
            " s3://, gs:// and az:// URLs)"
        )
        raise refused(option, allowed, dict(settings))


def check_no_request_setting(scheme: str, option: str, value: object) -> None:
    """``value`` given as ``option`` (a timeout, ``retries`` or ``credential_provider``)
    for a ``file://`` or ``memory://`` URL: their stores send no requests to time out,
    retry or sign, and ignored it without a word, as they did ``config``.

    Raises:
        ConfigurationError: it is not ``None``.
    """
    if value is not None:
        allowed = (
            f"None for a {scheme}:// URL, which sends no requests (it is for s3://, gs://"
            " and az:// URLs)"
        )
        raise refused(option, allowed, value)


def check_choice(option: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``.

    Raises:
        ConfigurationError: it is not; the message lists them.
    """
    if not isinstance(value, str) or value not in choices:
        *first, last = (repr(choice) for choice in choices)
        raise refused(option, f"{', '.join(first)} or {last}", value)
    return value


def check_seconds(option: str, value: float | None, *, zero_ok: bool) -> float | None:
    """``value`` as ``ObjectStore(timeout=...)`` and the other timeouts take it, before
    obstore sees it (a negative one failed there as a ``TypeError`` naming ``str``).

    Raises:
        ConfigurationError: it is neither ``None`` nor a number of seconds above 0 (or
            0 itself, with ``zero_ok``) and at most a day.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (value >= 0 if zero_ok else value > 0)
        or value > MAX_SECONDS
    ):
        least = "0 or more" if zero_ok else "above 0"
        raise refused(option, f"a number of seconds {least} and at most a day", value)
    return float(value)


def check_retries(value: int | None) -> int | None:
    """``value`` as ``ObjectStore(retries=...)`` takes it.

    Raises:
        ConfigurationError: it is neither ``None`` nor an int from 0 to ``MAX_RETRIES``.
    """
    if value is not None and (not _is_int(value) or not 0 <= value <= MAX_RETRIES):
        raise refused("retries", f"an int from 0 to {MAX_RETRIES}", value)
    return value


def check_prefix(prefix: str) -> str:
    """``prefix`` as ``ObjectStore(prefix=...)`` takes it: names separated by ``/``
    (one at either end is ignored). An object key's segment cannot be empty, ``.`` or
    ``..``, or hold a control character; obstore refused such a prefix only at the
    first request, with a message about a path the caller never wrote.

    Raises:
        ConfigurationError: it is not such a string.
    """
    allowed = (
        "a string of names separated by '/', none of them empty, '.' or '..', without"
        " control characters"
    )
    if not isinstance(prefix, str):
        raise refused("prefix", allowed, prefix)
    segments = prefix.strip("/").split("/") if prefix.strip("/") else []
    for segment in segments:
        if segment in ("", ".", "..") or any(
            ord(char) < 0x20 or ord(char) == 0x7F for char in segment
        ):
            raise refused("prefix", allowed, prefix)
    return prefix


def check_memfd_name(name: str) -> str:
    """``name`` as ``MemfdStore(name=...)`` takes it: what memfd_create(2) accepts,
    checked here rather than at the first commit.

    Raises:
        ConfigurationError: it is not a string of at most 249 UTF-8 bytes without NUL.
    """
    if (
        not isinstance(name, str)
        or "\0" in name
        or len(name.encode("utf-8", "surrogatepass")) > _MEMFD_NAME_BYTES
    ):
        raise refused("name", f"a string of at most {_MEMFD_NAME_BYTES} bytes without NUL", name)
    return name
