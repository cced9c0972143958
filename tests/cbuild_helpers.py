"""Builds of statemigrate/_model/_cchecks.c with a deliberate mistake, compiled the way
hatch_build.py compiles the real one: the negative controls of the tests of the C code.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import types
from collections.abc import Mapping
from pathlib import Path

import pytest

from statemigrate._model import _accel

SOURCE = Path(_accel.__file__).with_name("_cchecks.c")


def compiler() -> str | None:
    linker = sysconfig.get_config_var("LDSHARED")
    return shutil.which(linker.split()[0]) if linker else None


needs_compiler = pytest.mark.skipif(
    compiler() is None or not SOURCE.exists(), reason="no C compiler or C source here"
)


def broken_builds(
    folder: Path, breaks: Mapping[str, tuple[str, str]]
) -> dict[str, types.ModuleType]:
    """The C source compiled once per break (name: (sound text, broken text)), each
    loaded as a module of its own."""
    built: dict[str, types.ModuleType] = {}
    text = SOURCE.read_text()
    for name, (sound, broken) in breaks.items():
        assert text.count(sound) == 1, f"the source changed: {sound!r} is not there once"
        source = folder / f"{len(built)}" / "_cchecks.c"
        source.parent.mkdir()
        source.write_text(text.replace(sound, broken))
        target = source.with_name("_cchecks" + sysconfig.get_config_var("EXT_SUFFIX"))
        linker = sysconfig.get_config_var("LDSHARED").split()
        include = sysconfig.get_paths()["include"]
        subprocess.run([*linker, "-fPIC", "-O1", "-I", include, str(source), "-o", str(target)],
                       check=True, capture_output=True)
        spec = importlib.util.spec_from_file_location("_cchecks", target)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        built[name] = module
    sys.modules.pop("_cchecks", None)
    return built
