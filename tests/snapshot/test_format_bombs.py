"""Bombs and forged sizes are refused with bounded memory (child RSS); no unsafe decoders."""

from __future__ import annotations

import ast
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xxhash
import zstandard
from golden import header_for

from statemigrate._snapshot._format import assemble

MiB = 1 << 20
GiB = 1 << 30
PACKAGE = Path(__file__).resolve().parents[2] / "statemigrate"

# The child decodes what arrives on stdin and reports its own peak RSS. "baseline"
# imports the same modules and reads stdin but decodes nothing. The peak is VmHWM, the
# high-water mark of the child's own address space: on Linux, ru_maxrss also carries
# the RSS the child had before exec (a copy of the parent's, here pytest's, which can
# be hundreds of MiB after other tests) and would hide the growth being measured.
_CHILD = r"""
import json, sys
import zstandard
from statemigrate._snapshot import _chunks
from statemigrate._snapshot import _sections
from statemigrate._errors import SnapshotError
from statemigrate._snapshot._format import DecodeLimits, open_snapshot

mode, options = sys.argv[1], json.loads(sys.argv[2])
blob = sys.stdin.buffer.read()
if options.get("no_precheck"):  # the negative control: a reader that trusts the header
    _sections.check_chunk = lambda *args, **kwargs: None
outcome = "baseline"
try:
    if mode == "open":
        snapshot = open_snapshot(blob, limits=DecodeLimits(**options.get("limits", {})))
        for index in range(len(snapshot.header.sections)):
            snapshot.read_section(index)
        outcome = "accepted"
    elif mode == "stream":
        _chunks._stream_into(memoryview(blob), memoryview(bytearray(options["out"])))
        outcome = "accepted"
    elif mode == "oneshot":
        outcome = "accepted:%d" % len(zstandard.ZstdDecompressor().decompress(blob))
except SnapshotError as exc:
    outcome = exc.kind
    print(exc, file=sys.stderr)
except _chunks._Overlong:
    outcome = "overlong"
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "peak_kib": peak_kib}))
"""


def run_child(mode: str, blob: bytes, **options: Any) -> tuple[str, int]:
    """Run the decoding child; its outcome and its peak RSS in bytes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, json.dumps(options)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(blob, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    if err:
        print(f"child: {err.decode().strip()}")
    return report["outcome"], report["peak_kib"] * 1024


@pytest.fixture(scope="module")
def baseline_rss() -> int:
    """Peak RSS of a child that imports everything and decodes nothing (the lowest of 3)."""
    return min(run_child("baseline", b"x" * 64 * 1024)[1] for _ in range(3))


# --- forged frames -------------------------------------------------------------------------


def forged_frame(claimed: int) -> bytes:
    """A 13-17 byte zstd frame whose header claims ``claimed`` bytes; it holds none."""
    if claimed < 1 << 32:
        descriptor, size = 0x80, struct.pack("<I", claimed)  # 4-byte content size
    else:
        descriptor, size = 0xC0, struct.pack("<Q", claimed)  # 8-byte content size
    window = bytes([(20 - 10) << 3])  # 1 MiB window
    last_empty_raw_block = b"\x01\x00\x00"
    frame = b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + window + size + last_empty_raw_block
    assert zstandard.get_frame_parameters(frame).content_size == claimed
    return frame


def snapshot_of(chunks: list[tuple[int, bytes]]) -> bytes:
    """One section made of ``(declared raw size, stored zstd frame)`` chunks."""
    entries = [[1, raw, len(stored), xxhash.xxh3_64_intdigest(stored)] for raw, stored in chunks]
    section = {
        "component": "bomb", "instance": "main", "version": 1, "fingerprint": "",
        "raw_size": sum(raw for raw, _ in chunks),
        "stored_size": sum(len(stored) for _, stored in chunks),
        "checksum": 0,
        "chunks": entries,
    }
    return b"".join(assemble(header_for([section]), [stored for _, stored in chunks]))


CHUNK = 64 * MiB  # the largest chunk a reader accepts (MAX_CHUNK_SIZE)
BIG = {"max_snapshot_size": 16 * GiB, "max_section_size": 16 * GiB, "max_total_size": 16 * GiB}

FORGED: dict[str, tuple[bytes, dict[str, Any], set[str]]] = {
    "one chunk claims 10 GiB": (
        snapshot_of([(10 * GiB, forged_frame(10 * GiB))]), {}, {"invalid_header"}),
    "160 chunks claim 10 GiB": (
        snapshot_of([(CHUNK, forged_frame(CHUNK))] * 160), {}, {"too_large"}),
    "160 chunks claim 10 GiB, reader limits raised": (
        snapshot_of([(CHUNK, forged_frame(CHUNK))] * 160), {"limits": BIG}, {"corrupt"}),
    "62 chunks claim 3.9 GiB, within the reader's limits": (
        snapshot_of([(CHUNK, forged_frame(CHUNK))] * 62),
        {"limits": {"max_section_size": 4 * GiB, "max_total_size": 4 * GiB}},
        {"corrupt"},
    ),
    "62 chunks claim 3.9 GiB, default limits (a share of memory)": (
        snapshot_of([(CHUNK, forged_frame(CHUNK))] * 62), {}, {"too_large"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_sizes_are_refused_before_allocation(name: str, baseline_rss: int) -> None:
    """B1: a few KiB claiming GiBs; child peak RSS grows less than 16 MiB."""
    blob, options, kinds = FORGED[name]
    assert len(blob) < 8 * 1024
    outcome, rss = run_child("open", blob, **options)
    print(f"{name}: {len(blob)} bytes -> {outcome}, RSS +{(rss - baseline_rss) / MiB:.1f} MiB")
    assert outcome in kinds
    assert rss - baseline_rss < 16 * MiB


@pytest.mark.slow
def test_negative_control_rss_check_flags_a_reader_that_allocates_what_the_header_claims(
    baseline_rss: int,
) -> None:
    """Without check_chunk, 4 forged chunks make the reader touch 256 MiB first."""
    blob = snapshot_of([(CHUNK, forged_frame(CHUNK))] * 4)
    outcome, rss = run_child("open", blob, no_precheck=True)
    print(f"no check_chunk: RSS +{(rss - baseline_rss) / MiB:.1f} MiB")
    assert outcome == "corrupt"  # still rejected in the end ...
    assert rss - baseline_rss > 16 * MiB  # ... but only after the allocation


# --- a real bomb -----------------------------------------------------------------------------


def zero_bomb(size: int) -> bytes:
    """``size`` zero bytes as one zstd frame (about 32 KiB per GiB), built in pieces."""
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=True)
    stream = compressor.compressobj(size=size)
    piece = bytes(MiB)
    frame = b"".join(stream.compress(piece) for _ in range(size // MiB)) + stream.flush()
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == size and frame[4] == 0x84  # 4-byte size after a window
    return frame


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    return zero_bomb(GiB)


def with_claimed_size(frame: bytes, size: int) -> bytes:
    return frame[:6] + struct.pack("<I", size) + frame[10:]


def without_content_size(frame: bytes) -> bytes:
    return frame[:4] + bytes([frame[4] & 0x3F]) + frame[5:6] + frame[10:]


@pytest.mark.slow
def test_a_gib_bomb_in_a_64_mib_chunk_is_refused_within_the_cap(
    gib_bomb: bytes, baseline_rss: int
) -> None:
    """B2: the frame claims the chunk's 64 MiB but would inflate to 1 GiB."""
    assert len(gib_bomb) < 40 * 1024
    blob = snapshot_of([(CHUNK, with_claimed_size(gib_bomb, CHUNK))])
    outcome, rss = run_child("open", blob)
    print(f"1 GiB bomb ({len(gib_bomb)} bytes): {outcome}, RSS +{(rss - baseline_rss) / MiB:.1f}")
    assert outcome == "corrupt"
    assert rss - baseline_rss < CHUNK + 32 * MiB


def test_an_honest_gib_frame_in_a_64_mib_chunk_is_refused_before_decoding(
    gib_bomb: bytes, baseline_rss: int
) -> None:
    outcome, rss = run_child("open", snapshot_of([(CHUNK, gib_bomb)]))
    assert outcome == "corrupt"
    assert rss - baseline_rss < 16 * MiB


def test_streaming_stops_a_frame_without_content_size_at_the_buffer(
    gib_bomb: bytes, baseline_rss: int
) -> None:
    """The streaming decoder alone, given no size to check: it stops at the buffer's end."""
    frame = without_content_size(gib_bomb)
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    outcome, rss = run_child("stream", frame, out=CHUNK)
    assert outcome == "overlong"
    assert rss - baseline_rss < CHUNK + 32 * MiB


@pytest.mark.slow
def test_negative_control_rss_check_flags_one_shot_decompression(baseline_rss: int) -> None:
    """decompress() trusts the frame and inflates all of it (finding 1), here 256 MiB."""
    outcome, rss = run_child("oneshot", zero_bomb(256 * MiB))
    print(f"one-shot: RSS +{(rss - baseline_rss) / MiB:.1f} MiB")
    assert outcome == f"accepted:{256 * MiB}"
    assert rss - baseline_rss > CHUNK + 32 * MiB


# --- source scans ----------------------------------------------------------------------------


def _sources() -> list[tuple[str, ast.Module]]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 5
    return [(str(path.relative_to(PACKAGE.parent)), ast.parse(path.read_text("utf-8")))
            for path in files]


def one_shot_decompress_calls(name: str, tree: ast.Module) -> list[str]:
    """``<anything>.decompress(...)`` calls: ZstdDecompressor().decompress, dctx.decompress,
    zstandard.decompress. decompressobj() and stream_reader() are the safe ones."""
    return [
        f"{name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "decompress"
    ]


CODE_RUNNING_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill",
                        "cloudpickle", "jsonpickle"}


def code_running_decoders(name: str, tree: ast.Module) -> list[str]:
    """Imports of pickle-like modules and calls of eval or exec."""
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in CODE_RUNNING_MODULES:
                found.append(f"{name}:{getattr(node, 'lineno', 0)}: import {module}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"eval", "exec"}):
            found.append(f"{name}:{node.lineno}: {node.func.id}()")
    return found


@pytest.mark.slow
def test_no_one_shot_zstd_decompression_anywhere_in_the_package() -> None:
    assert [hit for name, tree in _sources() for hit in one_shot_decompress_calls(name, tree)] == []


@pytest.mark.slow
def test_no_code_running_decoder_anywhere_in_the_package() -> None:
    """B9: no pickle, marshal, shelve or dill import; no eval or exec call."""
    assert [hit for name, tree in _sources() for hit in code_running_decoders(name, tree)] == []


def test_negative_control_source_scans_flag_what_they_look_for() -> None:
    sample = ast.parse(
        "import zstandard, pickle\n"
        "from marshal import loads\n"
        "import dill.source\n"
        "data = zstandard.ZstdDecompressor().decompress(blob)\n"
        "dctx.decompress(blob)\n"
        "zstandard.decompress(blob)\n"
        "eval('1')\n"
        "exec('x = 1')\n"
        "stream = zstandard.ZstdDecompressor().decompressobj()\n"
    )
    assert len(one_shot_decompress_calls("sample", sample)) == 3
    assert len(code_running_decoders("sample", sample)) == 5
