"""Encoding and decoding of section payloads: msgpack data, zstd chunks, with hard limits.

This module turns plain data into raw msgpack bytes and back, and raw bytes into stored
chunks and back. It knows nothing of the container layout (see ``_format``) nor of
files. Everything that reads bytes assumes they may be hostile:

* zstd frames are walked block by block before decompression, so a frame must span
  its chunk exactly (no trailing bytes, no second or skippable frame);
* decompression streams into a buffer of the declared size and fails the moment the
  frame wants to produce more (zstandard's one-shot ``decompress()`` trusts the
  size written in the frame and is never used here);
* msgpack is unpacked with length limits derived from the payload size, a budget on
  the number of containers (an empty list costs one byte on the wire and ~64 bytes in
  memory), rejection of duplicate keys and ext types, and msgpack's own
  nesting cap.

Both directions have a fast path and a reference path. msgpack-python is the
reference: it defines what is accepted and how every error is worded. Packing first
tries ormsgpack, told to hand every non-plain value to ``default`` so that it packs
exactly what the reference packs, byte for byte, and falls back on any refusal.
Unpacking first tries msgspec (bounded recursion, lengths checked against the input
before allocating, trailing bytes refused) and accepts its result only when packing it
again gives back the input exactly: a duplicate key, an ext type, a non-str key or a
non-shortest encoding cannot survive that round trip, so anything unusual is decided
by the reference decoder. The fast paths are two to three times faster on large caches
and never change an outcome; tests compare the two paths on arbitrary input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import msgspec
import ormsgpack
import zstandard

from statemigrate._errors import SnapshotError, SnapshotErrorKind
from statemigrate._model._plaindata import MAX_NESTING, find_not_plain
from statemigrate._model._typed import TypedForm

__all__ = [
    "CONTAINER_ALLOWANCE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_NESTING",
    "ChunkCodec",
    "NotPlainError",
    "StoredChunk",
    "check_chunk",
    "compress_chunk",
    "compress_pieces",
    "count_containers",
    "decompress_chunk",
    "pack_data",
    "reference_pack",
    "reference_unpack",
    "section_budget",
    "unpack_data",
    "unpack_typed",
]

DEFAULT_CHUNK_SIZE = 4 << 20
"""Raw bytes per chunk that writers use: large enough to compress well, small enough
that a chunk is a cheap unit of verification and of memory."""

MAX_CHUNK_SIZE = 64 << 20
"""Largest raw chunk a reader accepts, whatever the header claims."""

MAX_WINDOW_SIZE = 8 << 20
"""Largest zstd window a reader accepts; level-1..19 frames of 4 MiB chunks need at
most the chunk size. Bigger windows cost decoder memory, so they are refused."""

_MAX_WINDOW_LOG = MAX_WINDOW_SIZE.bit_length() - 1


CONTAINER_ALLOWANCE = 16_384
"""Containers any payload may hold on top of one per two bytes.

Plain data routinely spends fewer than eight bytes per container (``{"a": {}}`` is four
bytes and two containers; ``[[1, 2], [3, 4]]`` is three bytes per pair), and whatever
the writer packs, the reader must take back. One per two bytes admits every shape but
floods of empty containers, whose memory (about 36x their bytes at the limit) stays
below what plain scalars already cost; the allowance keeps small payloads of any shape
readable."""

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_MAX_BLOCK = 128 << 10
_SAMPLE_SIZE = 64 << 10
# A chunk whose sample does not shrink below this fraction is stored raw: compressing
# incompressible bytes (media, encrypted blobs) costs time and saves nothing.
_POOR_RATIO = 0.9


class ChunkCodec(enum.IntEnum):
    """How a chunk's bytes are stored. The numbers are part of the format."""

    RAW = 0
    ZSTD = 1


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """One chunk as written: its codec, its raw size and its stored bytes."""

    codec: ChunkCodec
    raw_size: int
    data: bytes | memoryview


# --- msgpack -------------------------------------------------------------------------


class NotPlainError(TypeError):
    """The packer was handed something that is not plain data.

    Attributes:
        path: the keys and indexes leading to the value, outermost first.
        detail: what is wrong with it.
        section: the index of the section being encoded, once the encoder knows it.
    """

    def __init__(self, path: list[object], detail: str) -> None:
        super().__init__(detail)
        self.path = path
        self.detail = detail
        self.section: int | None = None

    def __str__(self) -> str:
        where = "".join(f"[{step!r}]" for step in self.path) or "the top level"
        return f"{self.detail} at {where}"


def _plain_leaf(value: object) -> object:
    """Refuse values msgpack cannot hold; exporting them is the schema layer's job."""
    raise TypeError(f"{type(value).__name__} is not plain data (msgpack-able)")


def pack_data(
    data: object,
    *,
    default: Callable[[Any], object] | None = None,
    nesting: int = MAX_NESTING,
) -> bytes:
    """Encode plain data as msgpack bytes.

    Args:
        data: dicts with str keys, lists, str, bytes, int, float, bool and None.
        default: called for any other value; must return plain data. Without it such
            values raise ``TypeError``. It may be called twice for one value (once by
            the fast packer, once by the reference packer), so it should be pure.
        nesting: how many levels of containers ``data`` may take, its own included:
            :data:`MAX_NESTING` less the levels above it in what the reader decodes.

    Raises:
        NotPlainError: without ``default``, a value is not plain data (including a map
            key that is not a str, which the decoder would refuse, and a str with a lone
            surrogate, which UTF-8 cannot encode); with or without it, containers nested
            deeper than ``nesting``, which the reader would refuse. The error gives the
            path.
        TypeError: a value is not plain data and ``default`` could not convert it.
    """
    try:
        return _fast_pack(data, default or _plain_leaf)
    except Exception:
        pass  # the reference packer decides, and words the error if there is one
    return reference_pack(data, default=default, nesting=nesting)


# Every value ormsgpack would convert on its own (datetimes, enums, dataclasses, UUIDs,
# ints past 64 bits, tuples, subclasses of str, int, dict and list) goes to ``default``
# instead, which refuses it as the reference packer does.
_FAST_PACK_OPTIONS = (
    ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_UUID
)


def _fast_pack(data: object, default: Callable[[Any], object]) -> bytes:
    """ormsgpack's packing, which refuses (``TypeError``) whatever it would pack
    differently from msgpack-python: keys other than str, nesting past 255 levels,
    strings with lone surrogates, values ``default`` rejects."""
    packed: bytes = ormsgpack.packb(data, default=default, option=_FAST_PACK_OPTIONS)
    return packed


def reference_pack(
    data: object,
    *,
    default: Callable[[Any], object] | None = None,
    nesting: int = MAX_NESTING,
) -> bytes:
    """:func:`pack_data` through msgpack-python alone: slower, and the definition of
    the bytes and errors that :func:`pack_data` produces."""
    # The fast packer takes 255 levels at most, so deeper data always comes here: a
    # snapshot the reader would refuse as too deep is refused before it is written.
    too_deep = _deeper_than(data, nesting)
    if too_deep is not None:
        raise NotPlainError(
            too_deep,
            f"containers nested deeper than {MAX_NESTING} levels, the most a snapshot"
            " reader takes",
        )
    if default is None:
        # msgpack-python would pack int keys the decoder refuses, and tuples or str
        # subclasses that come back as lists and plain str: refused, with their path.
        problem = find_not_plain(data)
        if problem is not None:
            raise NotPlainError(*problem)
    packed: bytes = msgpack.packb(
        data,
        use_bin_type=True,
        datetime=False,
        strict_types=default is not None,
        default=default or _plain_leaf,
    )
    return packed


def _deeper_than(data: object, limit: int) -> list[object] | None:
    """The path to the first map or list of ``data`` nested deeper than ``limit`` levels
    (``data`` itself is level 1), or ``None``. Iterative: data this deep would exhaust
    the interpreter's recursion."""
    if not isinstance(data, dict | list):
        return None
    if limit < 1:
        return []
    path: list[object] = []
    stack: list[Iterator[tuple[object, object]]] = [_steps(data)]
    while stack:
        for step, child in stack[-1]:
            if isinstance(child, dict | list):
                if len(stack) >= limit:
                    return [*path, step]
                path.append(step)
                stack.append(_steps(child))
                break
        else:
            stack.pop()
            if path:
                path.pop()
    return None


def _steps(container: dict[Any, Any] | list[Any]) -> Iterator[tuple[object, object]]:
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def _reject_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack ext type {code} is not allowed in snapshots")


def _budget_hooks(
    containers: int,
) -> tuple[Callable[[list[tuple[Any, Any]]], dict[Any, Any]], Callable[[list[Any]], list[Any]]]:
    """Hooks that count containers as msgpack builds them, and reject duplicate keys.

    Closures over a local counter: these run once per map and list of a snapshot,
    millions of times for a large cache, so they do as little as they can.
    """
    left = containers

    def map_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        nonlocal left
        left -= 1
        if left < 0:
            raise _BudgetExceeded
        result = dict(pairs)
        if len(result) != len(pairs):
            raise _DuplicateKey(_first_duplicate(pairs))
        return result

    def list_hook(items: list[Any]) -> list[Any]:
        nonlocal left
        left -= 1
        if left < 0:
            raise _BudgetExceeded
        return items

    return map_hook, list_hook


class _BudgetExceeded(Exception):
    pass


class _DuplicateKey(Exception):
    def __init__(self, key: object) -> None:
        self.key = key


def _first_duplicate(pairs: list[tuple[Any, Any]]) -> object:
    seen: set[object] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def unpack_data(
    raw: bytes | bytearray | memoryview,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> object:
    """Decode msgpack bytes written by :func:`pack_data`, refusing hostile input.

    Args:
        raw: exactly one msgpack object, nothing after it.
        section: named in errors.
        container_budget: how many maps and lists may be built; by default one per
            two input bytes plus :data:`CONTAINER_ALLOWANCE`. Only floods of empty
            lists and maps (one byte on the wire, ~60 in memory) come near it.

    Raises:
        SnapshotError: kind ``too_deep`` past the nesting cap, ``too_large`` when the
            container budget runs out, ``invalid_data`` for anything else (bad UTF-8,
            duplicate keys, keys that are neither str nor bytes, ext types, trailing
            bytes, truncation).
    """
    budget = budget_total(len(raw), container_budget)
    if _container_headers_at_most(raw, budget):
        value = _fast_unpack(raw)
        if value is not _REFUSED:
            return value
    return reference_unpack(raw, section=section, container_budget=container_budget)


def unpack_typed(
    raw: bytes | bytearray | memoryview,
    form: TypedForm,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> tuple[object, bool]:
    """Decode msgpack bytes straight into a schema's typed form when that is exact.

    msgspec decodes ``raw`` with the form's type, with the limits of
    :func:`unpack_data`. The value is kept when it packs back to ``raw`` byte for
    byte (so it is what :func:`unpack_data` returns) and every record in it holds its
    keys in declaration order: it is then what validating the plain data against the
    form's schema returns (see ``statemigrate._model._typed``). Otherwise the bytes
    are decoded again by :func:`unpack_data`, and the caller validates as usual.

    Returns:
        ``(value, True)`` for a value that needs no further validation, and
        ``(plain data, False)`` for one that does.

    Raises:
        SnapshotError: as :func:`unpack_data`.
    """
    if _container_headers_at_most(raw, budget_total(len(raw), container_budget)):
        value = _fast_unpack(raw, form.decoder)
        if value is not _REFUSED and form.in_order(value):
            return value, True
        value = None  # freed before the bytes are decoded again
    return unpack_data(raw, section=section, container_budget=container_budget), False


_REFUSED = object()

_FAST_DECODER = msgspec.msgpack.Decoder()

# Every byte value except the type bytes that open a map or an array (fixmap, fixarray,
# array 16/32, map 16/32): deleting these leaves one byte per possible container.
_NOT_CONTAINER_BYTES = bytes(
    byte for byte in range(256) if not (0x80 <= byte <= 0x9F or 0xDC <= byte <= 0xDF)
)


def _container_headers_at_most(raw: bytes | bytearray | memoryview, budget: int) -> bool:
    """Whether ``raw`` cannot hold more than ``budget`` maps and lists.

    The fast decoder cannot count containers as it builds them, so it runs only when
    the bytes that could open one are few enough: every container starts with such a
    byte, so their count bounds the containers from above without parsing anything.
    Typical data stays far below the budget; a flood of empty containers does not,
    and goes to the reference decoder, which counts exactly.
    """
    if len(raw) <= budget:
        return True
    data = raw.tobytes() if isinstance(raw, memoryview) else raw
    return len(data.translate(None, _NOT_CONTAINER_BYTES)) <= budget


def _fast_unpack(
    raw: bytes | bytearray | memoryview, decoder: msgspec.msgpack.Decoder[Any] | None = None
) -> object:
    """msgspec's decoding of ``raw`` with ``decoder`` (typed or not), or ``_REFUSED``
    unless the reference decoder would give the same value.

    Packing the value again must give ``raw`` back byte for byte. Every input the
    reference decoder treats specially fails that: duplicate keys shrink a map, an ext
    decodes to an object ormsgpack will not pack, keys other than str are refused by
    the packer, and lengths or numbers not in their shortest form come back shorter.
    A typed decoder adds its own ways to differ, which fail it too: an int turned into
    a float packs as a float, and a key the type does not know is skipped.
    """
    try:
        value = (decoder or _FAST_DECODER).decode(raw)
        same = _fast_pack(value, _plain_leaf) == raw
    except Exception:
        # Truncation, bad UTF-8, recursion past msgspec's limit, anything at all: the
        # reference decoder will say exactly what is wrong.
        return _REFUSED
    return value if same else _REFUSED


def reference_unpack(
    raw: bytes | bytearray | memoryview,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> object:
    """:func:`unpack_data` through msgpack-python alone: slower, and the definition
    of what :func:`unpack_data` accepts and of every error it raises."""
    size = len(raw)
    map_hook, list_hook = _budget_hooks(budget_total(size, container_budget))
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_ext_len=0,
            ext_hook=_reject_ext,
            object_pairs_hook=map_hook,
            list_hook=list_hook,
            # Length caps from the payload size bound what a forged length prefix can
            # ask for; msgpack derives the same from len(raw), set here to be explicit.
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
        )
    except msgpack.exceptions.StackError as exc:
        raise SnapshotError(
            "too_deep", f"data nested deeper than {MAX_NESTING} levels", section=section
        ) from exc
    except _BudgetExceeded as exc:
        raise SnapshotError(
            "too_large",
            f"more than {budget_total(size, container_budget)} maps and lists in"
            f" {size} bytes of data",
            section=section,
        ) from exc
    except _DuplicateKey as exc:
        raise SnapshotError(
            "invalid_data", f"duplicate map key {exc.key!r}", section=section
        ) from exc
    except msgpack.exceptions.ExtraData as exc:
        raise SnapshotError(
            "invalid_data", "bytes left over after the data", section=section
        ) from exc
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        # msgpack reports truncation, bad UTF-8, non-str keys, ext types and bad
        # type bytes with these; the message says which.
        raise SnapshotError("invalid_data", _one_line(exc), section=section) from exc
    except (MemoryError, RecursionError) as exc:
        raise SnapshotError(
            "too_large", f"decoding ran out of resources: {type(exc).__name__}",
            section=section,
        ) from exc


def budget_total(size: int, container_budget: int | None) -> int:
    """The container budget :func:`unpack_data` applies to ``size`` input bytes."""
    return container_budget if container_budget is not None else size // 2 + CONTAINER_ALLOWANCE


def section_budget(size: int, max_section_size: int) -> int:
    """The containers a snapshot section of ``size`` raw bytes may hold, for a reader
    that takes sections of up to ``max_section_size`` bytes.

    One per two bytes, as any payload may; and beyond that, up to one per byte (the
    most bytes can encode) as long as the section holds no more containers than a
    section of the largest size may. Dense data (a list of mostly empty lists) then
    costs no more memory than the reader already accepts from its largest section,
    and a state of any shape restores unless it is both dense and huge.
    """
    return max(size // 2, min(size, max_section_size // 2)) + CONTAINER_ALLOWANCE


def count_containers(data: object) -> int:
    """How many maps and lists the plain data ``data`` holds, itself included, the way
    msgpack writes them (a tuple counts as the list it is written as)."""
    count = 0
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            count += 1
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            count += 1
            stack.extend(value)
    return count


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- zstd chunks -----------------------------------------------------------------------


def _compressor(level: int, size: int) -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters.from_level(level, source_size=size)
    # Levels 20-22 ask for windows up to 128 MiB, which readers refuse (MAX_WINDOW_SIZE);
    # cap the window so that whatever level a writer picks, its snapshots stay readable.
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=size,
        window_log=min(params.window_log, _MAX_WINDOW_LOG),
        write_content_size=1,
        write_checksum=1,
        write_dict_id=0,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def compress_chunk(raw: bytes | memoryview, *, level: int) -> StoredChunk:
    """Compress one chunk, or keep it raw when compression would not pay.

    Args:
        raw: the chunk's raw bytes.
        level: zstd level; 1 is fast and already shrinks typical state 4-6x.
    """
    size = len(raw)
    if size == 0:
        return StoredChunk(ChunkCodec.RAW, 0, raw)
    compressor = _compressor(level, size)
    if size > 2 * _SAMPLE_SIZE:
        sample = compressor.compress(raw[:_SAMPLE_SIZE])
        if len(sample) > _POOR_RATIO * _SAMPLE_SIZE:
            return StoredChunk(ChunkCodec.RAW, size, raw)
    stored = compressor.compress(raw)
    if len(stored) > _POOR_RATIO * size:
        return StoredChunk(ChunkCodec.RAW, size, raw)
    return StoredChunk(ChunkCodec.ZSTD, size, stored)


def compress_pieces(
    pieces: Sequence[bytes | memoryview], *, level: int
) -> list[bytes] | None:
    """Compress one chunk given as consecutive pieces, without joining them first.

    The same frame rules and the same test of whether compression pays as
    :func:`compress_chunk`, but the pieces are streamed through the compressor, so no
    copy of the whole chunk is made.

    Returns:
        The stored bytes (one zstd frame) as the compressor produced them, in order and
        not joined, so the frame is never held twice; or ``None`` when the chunk is
        better kept raw, as its pieces.
    """
    size = sum(len(piece) for piece in pieces)
    if size == 0:
        return None
    compressor = _compressor(level, size)
    if size > 2 * _SAMPLE_SIZE:
        sample = compressor.compressobj(size=_SAMPLE_SIZE)
        taken = 0
        out = []
        for piece in pieces:
            part = piece[: _SAMPLE_SIZE - taken]
            out.append(sample.compress(part))
            taken += len(part)
            if taken == _SAMPLE_SIZE:
                break
        out.append(sample.flush())
        if sum(len(o) for o in out) > _POOR_RATIO * _SAMPLE_SIZE:
            return None
    stream = compressor.compressobj(size=size)
    stored = [stream.compress(piece) for piece in pieces]
    stored.append(stream.flush())
    if sum(len(o) for o in stored) > _POOR_RATIO * size:
        return None
    return stored


def zstd_frame_length(frame: memoryview) -> int:
    """Length in bytes of the single zstd frame at the start of ``frame``.

    Walks the block headers (three bytes each, one per <= 128 KiB of output), which is
    cheap and lets the caller insist that a chunk holds exactly one frame.

    Raises:
        ValueError: not a zstd frame, a reserved block type, or the frame runs past the
            end of the buffer.
    """
    return _walk_frame(frame)[0]


def _walk_frame(frame: memoryview) -> tuple[int, int]:
    """The frame's length and the most bytes its blocks can decode to.

    Raw and RLE blocks state their output size; a compressed block yields at most one
    block's worth (128 KiB). The second number lets a reader refuse a frame whose
    header claims more than its blocks could ever produce, before allocating for it.
    """
    if bytes(frame[:4]) != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame (bad magic)")
    try:
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise ValueError(f"bad zstd frame header: {exc}") from exc
    has_checksum = (frame[4] >> 2) & 1
    end = len(frame)
    most_output = 0
    while True:
        if pos + 3 > end:
            raise ValueError("zstd frame ends inside a block header")
        header = frame[pos] | (frame[pos + 1] << 8) | (frame[pos + 2] << 16)
        pos += 3
        last, block_type, block_size = header & 1, (header >> 1) & 3, header >> 3
        if block_type == 3:
            raise ValueError("reserved zstd block type")
        if block_size > _ZSTD_MAX_BLOCK:
            raise ValueError("zstd block larger than 128 KiB")
        pos += 1 if block_type == 1 else block_size
        most_output += _ZSTD_MAX_BLOCK if block_type == 2 else block_size
        if pos > end:
            raise ValueError("zstd frame ends inside a block")
        if last:
            break
    return pos + 4 * has_checksum, most_output


def check_chunk(
    stored: memoryview,
    codec: int,
    raw_size: int,
    *,
    section: str | None = None,
    chunk: int | None = None,
    offset: int | None = None,
) -> None:
    """Check that a stored chunk can decode to ``raw_size`` bytes, without decoding it.

    Readers run this on every chunk of a section before allocating the section's
    buffer, so a forged size claim costs nothing: a zstd frame must be exactly one
    frame, state ``raw_size`` as its content size, fit the window cap, need no
    dictionary, and have enough blocks to produce that many bytes.

    Raises:
        SnapshotError: ``corrupt`` for any structural mismatch, ``too_large`` for a
            window beyond the reader's cap, ``unsupported_version`` for an unknown codec.
    """

    def error(
        kind: SnapshotErrorKind, detail: str, *, expected: object = None, actual: object = None
    ) -> SnapshotError:
        return SnapshotError(
            kind, detail, section=section, chunk=chunk, offset=offset,
            expected=expected, actual=actual,
        )

    if codec == ChunkCodec.RAW:
        if len(stored) != raw_size:
            raise error(
                "corrupt", "raw chunk size differs from its declared size",
                expected=raw_size, actual=len(stored),
            )
        return
    if codec != ChunkCodec.ZSTD:
        raise error("unsupported_version", f"unknown chunk codec {codec}")
    try:
        frame_length, most_output = _walk_frame(stored)
        params = zstandard.get_frame_parameters(stored)
    except (ValueError, zstandard.ZstdError) as exc:
        raise error("corrupt", f"zstd chunk: {_one_line(exc)}") from exc
    if frame_length != len(stored):
        raise error(
            "corrupt", "zstd chunk is not exactly one frame",
            expected=len(stored), actual=frame_length,
        )
    if params.content_size != raw_size:
        raise error(
            "corrupt", "zstd frame's content size differs from the declared raw size",
            expected=raw_size, actual=params.content_size,
        )
    if most_output < raw_size:
        raise error(
            "corrupt", "zstd frame has too few blocks for its declared size",
            expected=raw_size, actual=most_output,
        )
    if params.window_size > MAX_WINDOW_SIZE:
        raise error(
            "too_large", "zstd frame needs too much memory (window)",
            expected=MAX_WINDOW_SIZE, actual=params.window_size,
        )
    if params.dict_id != 0:
        raise error("corrupt", "zstd frame needs a dictionary")


def decompress_chunk(
    stored: memoryview,
    codec: int,
    out: memoryview,
    *,
    section: str | None = None,
    chunk: int | None = None,
    offset: int | None = None,
) -> None:
    """Decode one stored chunk into ``out``, which has exactly the declared raw size.

    Raises:
        SnapshotError: ``corrupt`` when the chunk does not decode to exactly
            ``len(out)`` bytes from exactly one frame; ``too_large`` when the frame
            needs a window beyond the reader's cap (see :func:`check_chunk`).
    """
    check_chunk(stored, codec, len(out), section=section, chunk=chunk, offset=offset)
    if codec == ChunkCodec.RAW:
        out[:] = stored
        return

    def error(detail: str, *, expected: object = None, actual: object = None) -> SnapshotError:
        return SnapshotError(
            "corrupt", detail, section=section, chunk=chunk, offset=offset,
            expected=expected, actual=actual,
        )

    try:
        _stream_into(stored, out)
    except zstandard.ZstdError as exc:
        raise error(f"zstd chunk: {_one_line(exc)}") from exc
    except _Overlong as exc:
        raise error("zstd chunk decodes to more bytes than declared") from exc
    except _Short as exc:
        raise error(
            "zstd chunk decodes to fewer bytes than declared",
            expected=len(out), actual=exc.got,
        ) from exc


class _Overlong(Exception):
    pass


class _Short(Exception):
    def __init__(self, got: int) -> None:
        self.got = got


def _stream_into(stored: memoryview, out: memoryview) -> None:
    """Decompress into ``out`` without ever holding more than ``len(out)`` bytes."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    want = len(out)
    with decompressor.stream_reader(
        stored, read_size=1 << 20, read_across_frames=False, closefd=False
    ) as reader:
        got = 0
        while got < want:
            n = reader.readinto(out[got:])
            if n == 0:
                raise _Short(got)
            got += n
        if reader.read(1):
            raise _Overlong


def iter_slices(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` pairs that cut ``total`` bytes into pieces of ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)
