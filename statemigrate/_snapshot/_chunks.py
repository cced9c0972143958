"""Chunks as stored: zstd compression, and decompression that trusts no size claim.

This module turns a chunk's raw bytes into its stored bytes and back. It knows nothing
of msgpack (``_msgpack``), of the container layout (``_format``) nor of files.
Everything that reads bytes assumes they may be hostile:

* zstd frames are walked block by block before decompression, so a frame must span
  its chunk exactly (no trailing bytes, no second or skippable frame);
* decompression streams into a buffer of the declared size and fails the moment the
  frame wants to produce more (zstandard's one-shot ``decompress()`` trusts the
  size written in the frame and is never used here).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import zstandard

from statemigrate._errors import SnapshotError, SnapshotErrorKind, first_line

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_WINDOW_SIZE",
    "ChunkCodec",
    "StoredChunk",
    "check_chunk",
    "compress_chunk",
    "compress_pieces",
    "decompress_chunk",
    "iter_slices",
    "zstd_frame_length",
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
        raise error("corrupt", f"zstd chunk: {first_line(exc)}") from exc
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
        raise error(f"zstd chunk: {first_line(exc)}") from exc
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
