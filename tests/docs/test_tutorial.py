"""docs/tutorial.md runs as written: its modules, its programs (a process each), their output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
STORE = "/dev/shm/notes-tutorial"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MODULE = re.compile(r"# file: (\w+\.py)\n")


@dataclass
class Block:
    """A python block of the tutorial and the output block that follows it, if any."""

    code: str
    output: str | None = None

    @property
    def module(self) -> str | None:
        """The file name when the block is a module (first line ``# file: NAME.py``)."""
        match = MODULE.match(self.code)
        return match.group(1) if match else None


def blocks(text: str) -> list[Block]:
    """The python blocks in order; a ``text`` block right after one is its output."""
    found: list[Block] = []
    previous_end = -1
    for fence in FENCE.finditer(text):
        language, body = fence.group(1), fence.group(2)
        adjacent = text[previous_end : fence.start()].strip() == ""
        if language == "python":
            found.append(Block(body))
        elif language == "text" and found and adjacent and found[-1].output is None:
            found[-1].output = body
        previous_end = fence.end()
    return found


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private directory on tmpfs standing in for ``/dev/shm``."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("the tutorial keeps its snapshots in /dev/shm (tmpfs)")
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="statemigrate-tutorial-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_tutorial_has_its_modules_and_programs() -> None:
    found = blocks(TUTORIAL.read_text())
    assert [b.module for b in found if b.module] == ["notes_v1.py", "notes_v2.py"]
    programs = [b for b in found if not b.module]
    assert len(programs) == 7
    assert sum(b.output is not None for b in programs) == 6
    assert all(STORE in b.code for b in programs)


@pytest.mark.slow
def test_every_tutorial_program_runs_in_its_own_process_and_prints_what_is_shown(
    tmp_path: Path, scratch: Path
) -> None:
    store = str(scratch / "notes")
    ran = 0
    for number, block in enumerate(blocks(TUTORIAL.read_text())):
        code = block.code.replace(STORE, store)
        if block.module:
            (tmp_path / block.module).write_text(code)
            continue
        program = tmp_path / f"program_{number}.py"
        program.write_text(code)
        child = subprocess.Popen(
            [sys.executable, "-X", "dev", "-W", "error", program.name],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)
        assert child.returncode == 0, f"block {number} failed:\n{code}\n{err}"
        assert "Warning" not in err, err
        if block.output is not None:
            assert out == block.output, f"block {number} printed something else:\n{code}"
        ran += 1
    assert ran == 7
