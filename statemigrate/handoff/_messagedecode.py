"""Decoding a control channel packet, which comes from another process and is hostile.

:func:`decode_message` returns a message whose fields have their documented types
and ranges, or raises :class:`HandoffError` (``protocol error``), whatever the
bytes: the body must be a JSON object in strict UTF-8, nested a few levels at most,
without repeated keys, with the fields of its kind and numbers in their ranges. A
field whose loss costs only a figure or a trace link (``paused``, ``trace``) is
dropped when bad instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from statemigrate._errors import HandoffError
from statemigrate.handoff._messages import (
    HEADER,
    MAGIC,
    MAX_CODE_VERSION,
    NAMES,
    PROTOCOL_VERSION,
    Abort,
    Applied,
    Commit,
    Failed,
    Held,
    Hello,
    Message,
    Piece,
    Ready,
    Serving,
    SnapshotOffer,
)

__all__ = ["decode_message"]

# A valid body nests three levels at most (HELLO: object, "readable", a version list).
_MAX_DEPTH = 8
#: Integers on the wire: pids are a C ``pid_t``, sizes and versions fit 64 bits.
_MAX_PID = 2**31 - 1
_MAX_INT = 2**63 - 1
_MAX_DIGITS = 19
#: Pre-copy rounds are numbered from 0; far fewer than this ever run.
_MAX_ROUND = 2**16
# JSON strings (escapes included), removed before brackets are counted.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def _deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON ``body`` nests arrays and objects more than ``limit`` deep.

    Checked before ``json.loads``, which recurses once per level and raises
    ``RecursionError`` for deep input. Strings are cut out first, as the parser
    reads them, so brackets inside them do not count. Invalid JSON may be counted
    deeper than the parser would get (an unterminated string, say): it is refused
    either way.
    """
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def _parse_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(text)


def _parse_constant(text: str) -> object:
    raise ValueError(f"{text} is not a number")


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    body: dict[str, object] = {}
    for key, value in pairs:
        if key in body:
            raise ValueError(f"key {_show(key)} appears twice")
        body[key] = value
    return body


def _show(value: object) -> str:
    """A short, one-line rendering of a value from the peer, for error messages."""
    if isinstance(value, list | dict):
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _text(value: str, where: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape
        raise ValueError(f"{where} holds an unpaired surrogate at {exc.start}") from exc
    return value


def _int(body: Mapping[str, object], key: str, *, minimum: int = 0, maximum: int = _MAX_INT) -> int:
    value = body.get(key)
    if type(value) is not int or not minimum <= value <= maximum:
        raise ValueError(
            f"{key!r} must be an integer from {minimum} to {maximum}, got {_show(value)}"
        )
    return value


def _str(body: Mapping[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return _text(value, repr(key))


def _flag(body: Mapping[str, object], key: str) -> bool:
    """An optional true/false field; absent means false (an older release left it out)."""
    value = body.get(key, False)
    if type(value) is not bool:
        raise ValueError(f"{key!r} must be true or false, got {_show(value)}")
    return value


def _version(value: object) -> bool:
    return type(value) is int and -_MAX_INT <= value <= _MAX_INT


def _readable(value: object, *, key: str = "readable") -> dict[str, tuple[int, ...]]:
    """HELLO's ``readable`` (or ``lossy``): ``{component: [versions]}``."""
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be an object, got {type(value).__name__}")
    readable: dict[str, tuple[int, ...]] = {}
    for name, versions in value.items():
        where = f"'{key}'[{_show(name)}]"
        if not isinstance(versions, list) or not all(_version(v) for v in versions):
            raise ValueError(f"{where} must be a list of 64-bit integers")
        readable[_text(name, where)] = tuple(versions)
    return readable


def _live_versions(body: Mapping[str, object]) -> dict[str, int]:
    """HELLO's optional ``versions``: ``{component: version}``; absent means unknown."""
    value = body.get("versions", {})
    if not isinstance(value, dict):
        raise ValueError(f"'versions' must be an object, got {type(value).__name__}")
    versions: dict[str, int] = {}
    for name, version in value.items():
        where = f"'versions'[{_show(name)}]"
        if not _version(version):
            raise ValueError(f"{where} must be a 64-bit integer, got {_show(version)}")
        versions[_text(name, where)] = version
    return versions


def _code_version(body: Mapping[str, object]) -> str:
    """HELLO's optional ``code_version``; absent means unknown."""
    value = body.get("code_version", "")
    if not isinstance(value, str) or len(value) > MAX_CODE_VERSION:
        raise ValueError(
            f"'code_version' must be a string of at most {MAX_CODE_VERSION} characters,"
            f" got {_show(value)}"
        )
    return _text(value, "'code_version'")


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("'listeners' must be a list of strings")
    if len(set(value)) != len(value):
        raise ValueError("'listeners' names a listener twice")
    return tuple(_text(name, "'listeners'") for name in value)


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _traceparent(value: object) -> str:
    """A well-formed ``traceparent``, or ``""``: a bad one only costs the trace link."""
    if isinstance(value, str) and _TRACEPARENT.fullmatch(value):
        return value
    return ""


#: The longest pause a SNAPSHOT may state, in seconds (a year: far beyond any timeout).
_MAX_PAUSED = 365 * 24 * 3600.0


def _paused(value: object) -> float | None:
    """A pause in seconds, or ``None``: a missing or bad one only costs that figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if 0.0 <= seconds <= _MAX_PAUSED else None


def _lossy(value: object) -> dict[str, tuple[int, int, str]]:
    """SNAPSHOT's optional ``lossy``: ``{component: [from, to, line]}``."""
    if not isinstance(value, dict):
        raise ValueError(f"'lossy' must be an object, got {type(value).__name__}")
    lossy: dict[str, tuple[int, int, str]] = {}
    for name, entry in value.items():
        where = f"'lossy'[{_show(name)}]"
        if (
            not isinstance(entry, list)
            or len(entry) != 3
            or not (_version(entry[0]) and _version(entry[1]))
            or not isinstance(entry[2], str)
        ):
            raise ValueError(f"{where} must be [from version, to version, text]")
        lossy[_text(name, where)] = (entry[0], entry[1], _text(entry[2], where))
    return lossy


def _body(payload: bytes) -> dict[str, object]:
    """Parse a message body: a JSON object in strict UTF-8, shallow, without duplicates."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 at byte {exc.start}") from exc
    if _deeper_than(payload, _MAX_DEPTH):
        raise ValueError(f"nested more than {_MAX_DEPTH} levels deep")
    body = json.loads(
        text,
        object_pairs_hook=_object,
        parse_int=_parse_int,
        parse_constant=_parse_constant,
    )
    if not isinstance(body, dict):
        raise ValueError(f"the body is {type(body).__name__}, not an object")
    return body


def decode_message(packet: bytes, *, stage: str) -> Message:
    """Parse one packet.

    The packet comes from another process and is treated as hostile: whatever it
    holds, the result is a message whose fields have the documented types and
    ranges, or a :class:`HandoffError`.

    Raises:
        HandoffError: ``protocol error``: wrong magic, another protocol version, an
            unknown kind, or a body that is not a UTF-8 JSON object with the fields
            of its kind (nested too deep, repeated keys, wrong types, numbers out of
            range).
    """
    if len(packet) < HEADER or packet[: len(MAGIC)] != MAGIC:
        raise HandoffError(stage, f"protocol error: not a handoff message: {packet[:16]!r}")
    version, kind = packet[len(MAGIC)], packet[len(MAGIC) + 1]
    if version != PROTOCOL_VERSION:
        raise HandoffError(
            stage, f"protocol error: peer speaks version {version}, we speak {PROTOCOL_VERSION}"
        )
    name = NAMES.get(kind)
    if name is None:
        raise HandoffError(stage, f"protocol error: unknown message kind {kind}")
    try:
        body = _body(packet[HEADER:])
        if kind == 1:
            pid = _int(body, "pid", minimum=1, maximum=_MAX_PID)
            return Hello(
                pid=pid,
                readable=_readable(body.get("readable")),
                serving=_flag(body, "serving"),
                precopy=_flag(body, "precopy"),
                versions=_live_versions(body),
                code_version=_code_version(body),
                lossy=_readable(body.get("lossy", {}), key="lossy"),
                held=_flag(body, "held"),
            )
        if kind == 2:
            fallback = body.get("fallback", "")
            if not isinstance(fallback, str):
                raise ValueError(f"'fallback' must be a string, got {type(fallback).__name__}")
            return SnapshotOffer(
                size=_int(body, "size"),
                listeners=_names(body.get("listeners")),
                trace=_traceparent(body.get("trace")),
                fallback=_text(fallback, "'fallback'"),
                paused=_paused(body.get("paused")),
                lossy=_lossy(body.get("lossy", {})),
            )
        if kind == 8:
            piece_kind = body.get("kind")
            if piece_kind not in ("full", "delta"):
                raise ValueError(f'\'kind\' must be "full" or "delta", got {_show(piece_kind)}')
            return Piece(
                round=_int(body, "round", maximum=_MAX_ROUND),
                kind="full" if piece_kind == "full" else "delta",
                size=_int(body, "size"),
            )
        if kind == 9:
            deltas = body.get("deltas")
            if type(deltas) is not bool:
                raise ValueError(f"'deltas' must be true or false, got {_show(deltas)}")
            why = body.get("why", "")
            if not isinstance(why, str):
                raise ValueError(f"'why' must be a string, got {type(why).__name__}")
            return Applied(
                round=_int(body, "round", maximum=_MAX_ROUND),
                deltas=deltas,
                records=_int(body, "records"),
                why=_text(why, "'why'"),
            )
        if kind == 3:
            return Ready(pid=_int(body, "pid", minimum=1, maximum=_MAX_PID))
        if kind == 4:
            return Commit()
        if kind == 5:
            return Failed(reason=_str(body, "reason"))
        if kind == 7:
            return Serving()
        if kind == 10:
            paused = _paused(body.get("paused"))
            if paused is None:
                raise ValueError(f"'paused' must be seconds, got {_show(body.get('paused'))}")
            return Held(paused=paused)
        return Abort(reason=_str(body, "reason"))
    except ValueError as exc:  # json.JSONDecodeError included
        raise HandoffError(stage, f"protocol error: bad {name} body: {exc}") from exc
