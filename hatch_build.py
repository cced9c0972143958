"""Compiles statemigrate/_model/_cchecks.c into the wheel when a C compiler is there.

The extension only makes a restore faster (statemigrate/_model/_accel.py says where).
When it cannot be built (no compiler, no Python headers, an interpreter without a
shared-library build) the wheel is pure Python and says so in a warning; every check
then runs in Python, with the same results. ``STATEMIGRATE_PURE_PYTHON_BUILD=1``
builds that wheel on purpose.

The library is written next to its source, where an editable install finds it, and a
wheel takes it from there.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "statemigrate/_model/_cchecks.c"


class CChecksHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = self._compile(Path(self.root))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True  # the library is for this interpreter and platform
        if version != "editable":
            relative = built.relative_to(self.root).as_posix()
            build_data["force_include"][str(built)] = relative

    def _compile(self, root: Path) -> Path | None:
        if os.environ.get("STATEMIGRATE_PURE_PYTHON_BUILD"):
            return None
        linker = sysconfig.get_config_var("LDSHARED")
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        if not linker or not suffix:
            self.app.display_warning("statemigrate: no C build settings; the wheel is pure Python")
            return None
        source = root / SOURCE
        target = source.with_name(source.name.removesuffix(".c") + suffix)
        command = [
            *shlex.split(linker),
            *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
            "-O2",
            "-Wall",
            "-I",
            sysconfig.get_paths()["include"],
            str(source),
            "-o",
            str(target),
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            output = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                "statemigrate: the C checks were not built, so the wheel is pure Python"
                f" (restores run slower, with the same results): {output.strip()[:500]}"
            )
            return None
        return target
