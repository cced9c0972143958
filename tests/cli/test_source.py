"""Reading SNAPSHOT (a path or fd:N): bounded memory, and one line naming source and operation."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from cli_helpers import Result, run
from golden import PRODUCER, rewrite_footer, rewrite_preamble, split

from statemigrate._errors import SnapshotError
from statemigrate._runtime._chain import CHAIN_MAGIC, MAX_PIECES, chain_frame
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import PREAMBLE_SIZE, DecodeLimits, assemble
from statemigrate.cli import _main, _source
from statemigrate.cli._source import MAX_FD, open_read, read_snapshot_source

ERROR_PREFIX = "statemigrate: error:"
CHILD_TIMEOUT = 300  # seconds; a bound on a hang, never a measurement
MiB = 1 << 20


def assert_one_error_line(result: Result, *fragments: str, code: int = 1) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.out == ""
    return lines[0]


@pytest.fixture(autouse=True)
def _in_scratch(hermetic: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def _sound() -> bytes:
    sections = [SectionInput("kvcache", "default", 3, "fp", {"entries": {"a": "b" * 100}})]
    return encode_snapshot(sections, producer=PRODUCER).to_bytes()


SOUND = _sound()
SOUND_V1 = b"".join(assemble(*split(SOUND), version=1))
"""The same snapshot in format version 1, whose preamble declares its length."""


def _sparse_v2(path: Path, size: int, *, head: bytes = b"", piece: int | None = None) -> Path:
    """``head``, then SOUND's preamble, zeros, and SOUND's end with its footer declaring
    a snapshot of ``piece`` bytes (``size`` less the head, by default) ending the file
    of ``size`` bytes: its ends are a sound snapshot's of that length, its chunks are
    zeros (taking no disk)."""
    piece = size - len(head) if piece is None else piece
    end = rewrite_footer(SOUND, total=piece)[PREAMBLE_SIZE:]
    with open(path, "wb") as handle:
        handle.write(head + SOUND[:PREAMBLE_SIZE])
        handle.seek(size - len(end))
        handle.write(end)
    return path


# --- fd:N -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("fd:2147483648", "out of range"),
        ("fd:99999999999999999999", "out of range"),
        ("fd:" + "9" * 5000, "out of range"),
        ("fd:-1", "expected fd:N"),
        ("fd:abc", "expected fd:N"),
        ("fd:", "expected fd:N"),
        ("fd:\u00b2", "expected fd:N"),  # a digit to str.isdigit(), not to int()
        ("fd:\u0663", "expected fd:N"),  # an Arabic-Indic three
        ("fd: 3", "expected fd:N"),
        ("fd:0x3", "expected fd:N"),
    ],
)
def test_a_malformed_fd_is_one_line(
    source: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_one_error_line(run(capsys, "inspect", source), fragment, code=2)
    assert f"open {source[:40]}" in line


def test_the_largest_descriptor_number_is_parsed_and_found_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = f"fd:{MAX_FD}"
    assert_one_error_line(run(capsys, "inspect", source), source, "not an open file descriptor")
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)  # now a number that names nothing
    padded = "fd:" + "0" * 30 + str(fd)  # leading zeros do not make a number large
    assert_one_error_line(run(capsys, "inspect", padded), "not an open file descriptor")


def test_a_write_only_fd_names_the_source_and_the_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "snap"
    path.write_bytes(SOUND)
    fd = os.open(path, os.O_WRONLY)
    try:
        result = run(capsys, "inspect", f"fd:{fd}")
    finally:
        os.close(fd)
    assert_one_error_line(result, f"read fd:{fd}: open for writing only")


def test_a_read_only_fd_still_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "snap"
    path.write_bytes(SOUND)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 5, os.SEEK_SET)
        result = run(capsys, "inspect", f"fd:{fd}")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 5  # read without moving the offset
    finally:
        os.close(fd)
    assert result.code == 0 and "kvcache" in result.out


# --- OS errors name the source and the operation ------------------------------------------


def test_os_errors_name_the_source_and_the_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap"
    snap.write_bytes(SOUND)
    missing = tmp_path / "missing"
    cases = [
        (["inspect", str(missing)], f"open {missing}: No such file or directory (ENOENT)"),
        (
            ["inspect", str(snap), "--key-file", str(missing)],
            f"read {missing}: No such file or directory (ENOENT)",
        ),
        (
            ["inspect", str(snap), "--key-file", str(tmp_path)],
            f"read {tmp_path}: not a regular file",
        ),
        (["inspect", str(snap), "--key-file", ""], "read '': No such file or directory"),
    ]
    for argv, fragment in cases:
        assert_one_error_line(run(capsys, *argv), fragment)


def test_an_os_error_no_command_translates_names_the_command_and_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from statemigrate.cli import _registry

    def failing(args: object, out: object) -> int:
        raise OSError(errno.EIO, "Input/output error", "/srv/state")

    monkeypatch.setattr(_registry, "graph_command", failing)
    assert_one_error_line(
        run(capsys, "graph", "kvcache"), "graph /srv/state: Input/output error (EIO)"
    )


def test_an_argument_holding_a_nul_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _main.main(["inspect", "a\0b"]) == 2
    err = capsys.readouterr().err
    assert err == "statemigrate: error: an argument holds a NUL character\n"


# --- reading is bounded by what the preamble declares ----------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every (offset, length) the code under test reads from a file, by any pread call."""
    seen: list[tuple[int, int]] = []
    pread, preadv = os.pread, os.preadv

    def counted_pread(fd: int, length: int, offset: int) -> bytes:
        seen.append((offset, length))
        return pread(fd, length, offset)

    def counted_preadv(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        seen.append((offset, sum(len(b) for b in buffers)))
        return preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(os, "pread", counted_pread)
    monkeypatch.setattr(os, "preadv", counted_preadv)
    return seen


def _declaring(total: int) -> bytes:
    """A sound version 1 snapshot whose preamble (checksum and all) claims ``total`` bytes."""
    return rewrite_preamble(SOUND_V1, total=total)


@pytest.mark.parametrize(
    ("declared", "fragments"),
    [
        (16 << 30, ("too_large", "larger than the reader allows", str(16 << 30))),
        (3 << 30, ("truncated", f"declares {3 << 30} bytes, has {len(SOUND_V1)}")),
        (
            len(SOUND_V1) - 1,
            ("trailing_data", f"expected {len(SOUND_V1) - 1}, got {len(SOUND_V1)}"),
        ),
        (10, ("trailing_data", f"expected 10, got {len(SOUND_V1)}")),
    ],
)
def test_a_wrong_declared_length_is_refused_after_reading_the_preamble_only(
    declared: int,
    fragments: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reads: list[tuple[int, int]],
) -> None:
    path = tmp_path / "lying.smsnap"
    path.write_bytes(_declaring(declared))
    assert_one_error_line(run(capsys, "inspect", str(path)), *fragments)
    assert reads, "the file was not read at all"
    assert all(offset + length <= PREAMBLE_SIZE for offset, length in reads), reads


def test_a_foreign_file_is_refused_after_reading_the_preamble_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reads: list[tuple[int, int]]
) -> None:
    path = tmp_path / "zeros"
    with open(path, "wb") as handle:
        handle.truncate(64 * MiB)  # sparse: costs no disk
    assert_one_error_line(run(capsys, "inspect", str(path)), "not_snapshot")
    assert all(offset + length <= PREAMBLE_SIZE for offset, length in reads), reads


def test_a_sound_snapshot_is_read_in_one_buffer_of_its_size(
    tmp_path: Path, reads: list[tuple[int, int]]
) -> None:
    path = tmp_path / "sound"
    path.write_bytes(SOUND)
    data = read_snapshot_source(str(path))
    assert bytes(data) == SOUND
    assert (0, len(SOUND)) in reads  # the rest is one read into the whole buffer


def test_the_limit_applies_to_the_declared_length(tmp_path: Path) -> None:
    path = tmp_path / "sound"
    path.write_bytes(SOUND)
    with pytest.raises(SnapshotError) as caught:
        read_snapshot_source(str(path), limits=DecodeLimits(max_snapshot_size=len(SOUND) - 1))
    assert caught.value.kind == "too_large" and caught.value.actual == len(SOUND)


_MEASURE = """
import resource, sys
from statemigrate.cli._main import main
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(["inspect", sys.argv[1]])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(code, (after - before) * 1024)
"""


def _peak_growth(path: Path) -> tuple[int, int]:
    """Run inspect on ``path`` in a fresh process: its exit status, and how many bytes
    its peak resident size grew while inspect ran."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=True,
    )
    code, growth = proc.stdout.split()
    return int(code), int(growth)


def test_a_large_file_of_zeros_costs_no_memory(tmp_path: Path) -> None:
    """A 512 MiB file of zeros once cost twice its size in memory before being refused."""
    path = tmp_path / "zeros"
    with open(path, "wb") as handle:
        handle.truncate(512 * MiB)
    code, growth = _peak_growth(path)
    assert code == 1
    assert growth < 32 * MiB, growth


@pytest.mark.parametrize("version", [1, 2])
def test_a_large_snapshot_is_held_once_not_twice(
    version: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of 64 MiB (declared by a version 1 preamble; the file's size for version
    2) costs one buffer of that size, not the chunks read plus their join (traced
    allocations are exact, unlike resident size)."""
    size = 64 * MiB
    path = tmp_path / "big"
    if version == 1:
        with open(path, "wb") as handle:
            handle.write(_declaring(size))
            handle.truncate(size)
    else:
        _sparse_v2(path, size)
    tracemalloc.start()
    try:
        result = run(capsys, "inspect", str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The zeros after the preamble are no snapshot's chunks.
    assert_one_error_line(result, "corrupt" if version == 1 else "invalid_header")
    assert size <= peak < size + size // 4, peak


def test_a_version_2_file_over_the_limit_is_refused_after_reading_the_preamble_only(
    tmp_path: Path, reads: list[tuple[int, int]]
) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as handle:
        handle.write(SOUND[:PREAMBLE_SIZE])
        handle.truncate(64 * MiB)
    with pytest.raises(SnapshotError) as caught:
        read_snapshot_source(str(path), limits=DecodeLimits(max_snapshot_size=MiB))
    assert caught.value.kind == "too_large" and caught.value.actual == 64 * MiB
    assert all(offset + length <= PREAMBLE_SIZE for offset, length in reads), reads


@pytest.mark.parametrize(
    ("footer", "fragments"),
    [
        (
            len(SOUND),
            ("trailing_data: ", "bytes follow the end of the snapshot", f"expected {len(SOUND)},"),
        ),
        (3 << 30, ("truncated: ", "snapshot is cut short", f"declares {3 << 30} bytes")),
    ],
    ids=["footer shorter than the file", "footer longer than the file"],
)
@pytest.mark.parametrize("chain", [False, True], ids=["snapshot", "chain piece"])
def test_a_version_2_file_whose_footer_declares_another_length_is_refused_from_its_ends(
    footer: int,
    fragments: tuple[str, ...],
    chain: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reads: list[tuple[int, int]],
) -> None:
    """A sparse 3 GiB file with a sound version 3 preamble and a small snapshot's end
    once cost 3 GB and many seconds before its footer said it was 1,089 bytes long: a
    version 2 or 3 snapshot's length is in its footer, which is now checked against
    the file's size (a chain's piece's) from its last 16 KiB before the whole is read,
    with the error reading it whole gives."""
    size = 64 * MiB
    head = chain_frame([size - _FRAME_1]) if chain else b""
    path = _sparse_v2(tmp_path / "lying", size, head=head, piece=footer)
    line = assert_one_error_line(run(capsys, "inspect", str(path)), *fragments)
    assert reads, "the file was not read at all"
    assert sum(length for _, length in reads) < 64 << 10, reads
    if chain:
        assert "checkpoint chain piece 0: " in line
    with pytest.raises(SnapshotError) as whole:
        open_read(path.read_bytes())
    assert line == f"statemigrate: error: {whole.value}"


# --- a checkpoint chain is checked from its frame before it is read -------------------------


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """``head``, then zeros up to ``size`` bytes, taking no disk for the zeros."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


_FRAME_1 = len(chain_frame([0]))
"""The size of the frame of a one-piece chain."""


@pytest.mark.parametrize(
    ("head", "fragments"),
    [
        pytest.param(
            CHAIN_MAGIC,
            ("corrupt: checkpoint chain frame declares 0 pieces (at offset 8)",),
            id="magic and zeros",
        ),
        pytest.param(
            CHAIN_MAGIC + (MAX_PIECES + 1).to_bytes(4, "little"),
            (f"declares {MAX_PIECES + 1} pieces",),
            id="too many pieces",
        ),
        pytest.param(
            chain_frame([MiB - _FRAME_1])[:-1] + b"\0",
            ("corrupt: checkpoint chain frame checksum mismatch",),
            id="frame checksum",
        ),
        pytest.param(
            chain_frame([2 * MiB]),
            ("truncated: checkpoint chain piece 0 ends past the object",),
            id="a piece past the end",
        ),
        pytest.param(
            chain_frame([len(SOUND)]) + SOUND,
            ("trailing_data: bytes follow the checkpoint chain's last piece",),
            id="pieces short of the end",
        ),
        pytest.param(
            chain_frame([MiB - _FRAME_1]),
            ("not_snapshot: checkpoint chain piece 0: not a statemigrate snapshot (bad magic)",),
            id="a piece of zeros",
        ),
        pytest.param(
            chain_frame([len(SOUND), MiB - len(SOUND) - _FRAME_1 - 8]) + SOUND,
            ("not_snapshot: checkpoint chain piece 1:",),
            id="a second piece of zeros",
        ),
        pytest.param(
            chain_frame([MiB - _FRAME_1]) + rewrite_preamble(SOUND_V1, total=len(SOUND_V1)),
            ("trailing_data: checkpoint chain piece 0: bytes follow the end of the snapshot",),
            id="a piece's preamble declaring another length",
        ),
    ],
)
def test_a_chain_is_refused_from_its_frame_and_preambles_before_it_is_read(
    head: bytes,
    fragments: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reads: list[tuple[int, int]],
) -> None:
    """A file that starts with the chain's magic once was read whole before its frame
    was looked at: a sparse 3 GiB one cost 3 GB, or a MemoryError. Now the frame, and
    the preamble of each piece it declares, are checked from a few small reads, with
    the errors reading the whole chain gives."""
    path = _sparse(tmp_path / "chain", head, MiB)
    line = assert_one_error_line(run(capsys, "inspect", str(path)), *fragments)
    assert reads, "the file was not read at all"
    assert all(offset + length <= len(head) + PREAMBLE_SIZE for offset, length in reads), reads
    with pytest.raises(SnapshotError) as whole:
        open_read(path.read_bytes())
    assert line == f"statemigrate: error: {whole.value}"


def test_a_sound_chain_is_still_read_in_one_buffer(
    tmp_path: Path, reads: list[tuple[int, int]]
) -> None:
    chain = chain_frame([len(SOUND), len(SOUND_V1)]) + SOUND + SOUND_V1
    path = tmp_path / "chain"
    path.write_bytes(chain)
    assert bytes(read_snapshot_source(str(path))) == chain
    assert (0, len(chain)) in reads


def test_an_authenticated_piece_without_a_key_is_refused_from_its_preamble(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reads: list[tuple[int, int]]
) -> None:
    key = b"k" * 32
    sections = [SectionInput("kvcache", "default", 3, "fp", {"entries": {}})]
    signed = encode_snapshot(sections, producer=PRODUCER, key=key).to_bytes()
    path = _sparse(tmp_path / "chain", chain_frame([MiB - _FRAME_1]) + signed[:PREAMBLE_SIZE], MiB)
    assert_one_error_line(
        run(capsys, "inspect", str(path)),
        "auth: checkpoint chain piece 0: snapshot is authenticated but no key was given",
    )
    assert all(offset + length <= _FRAME_1 + PREAMBLE_SIZE for offset, length in reads), reads


def test_a_buffer_that_cannot_be_allocated_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sound-looking chain (or snapshot) larger than the process may allocate (under
    ``ulimit -v``) once ended in a MemoryError traceback."""

    def no_memory(size: int) -> bytearray:
        raise MemoryError

    monkeypatch.setattr(_source, "bytearray", no_memory, raising=False)
    chain = _sparse_v2(tmp_path / "chain", MiB, head=chain_frame([MiB - _FRAME_1]))
    snap = _sparse_v2(tmp_path / "snap", MiB)
    for path, size in ((chain, MiB), (snap, MiB)):
        assert_one_error_line(
            run(capsys, "inspect", str(path)),
            f"read {path}: cannot allocate the {size} bytes to read it into: out of memory",
        )


def test_any_other_memory_error_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from statemigrate.cli import _registry

    def failing(args: object, out: object) -> int:
        raise MemoryError

    monkeypatch.setattr(_registry, "graph_command", failing)
    assert_one_error_line(run(capsys, "graph", "kvcache"), "graph: out of memory")


_UNDER_A_LIMIT = """
import resource, sys
from statemigrate.cli._main import main
# Room for what is loaded already and a little more, far less than the file's size.
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))
sys.exit(main(["inspect", sys.argv[1]]))
"""


@pytest.mark.slow
def test_a_chain_over_the_address_space_limit_is_one_line(tmp_path: Path) -> None:
    """As under ``ulimit -v``: the sparse chain's frame and its piece's ends are sound, and its
    1 GiB buffer cannot be had. (It is never read: the allocation fails first.)"""
    path = _sparse_v2(tmp_path / "chain", 1 << 30, head=chain_frame([(1 << 30) - _FRAME_1]))
    proc = subprocess.run(
        [sys.executable, "-c", _UNDER_A_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"statemigrate: error: read {path}: cannot allocate the {1 << 30} bytes to read it"
        " into: out of memory\n"
    )
