"""The wheel: it carries the reference migrations and schemas and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from hatchling.builders.wheel import WheelBuilder

from statemigrate.reference import _data_dir

ROOT = Path(__file__).resolve().parents[2]
DATA = "statemigrate/reference/_data"


def _settings() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        table: dict[str, str] = tomllib.load(handle)["tool"]["statemigrate"]
    return table


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = list(WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"]))
    assert len(built) == 1
    return Path(built[0])


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked as an installer would, away from the checkout."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_ships_the_configured_folders_byte_for_byte(wheel: Path) -> None:
    """The folders [tool.statemigrate] names are the one copy; the wheel holds exactly them."""
    settings = _settings()
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name[len(DATA) + 1 :]: archive.read(name)
            for name in archive.namelist()
            if name.startswith(DATA + "/")
        }
    expected: dict[str, bytes] = {}
    for key in ("migrations", "schemas"):
        for relative, data in _files(ROOT / settings[key]).items():
            expected[f"{key}/{relative}"] = data
    assert any(name.startswith("migrations/") and name.endswith(".py") for name in expected)
    assert any(name.startswith("schemas/") and name.endswith(".json") for name in expected)
    assert shipped == expected


def test_the_version_is_written_once(wheel: Path) -> None:
    """The wheel's metadata, ``statemigrate.__version__`` and a snapshot's producer all
    read statemigrate/_version.py; pyproject.toml names no version of its own."""
    from statemigrate import __version__
    from statemigrate._snapshot._header import Producer

    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    assert f"Version: {__version__}" in lines
    assert Producer.current("svc").library == f"statemigrate {__version__}"
    assert (ROOT / "statemigrate" / "_version.py").read_text().count(__version__) == 1


def _run(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts the unpacked wheel ahead of the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_installed_wheel_builds_the_reference_registry(
    installed: Path, tmp_path: Path
) -> None:
    code = (
        "import statemigrate, statemigrate.reference as r\n"
        "print(statemigrate.__file__)\n"
        "print(r.MIGRATIONS_DIR)\n"
        "print(r.build_registry().plan('kvcache', 1, 3))\n"
    )
    done = _run(installed, tmp_path, "-c", code)
    assert done.returncode == 0, done.stderr
    package, migrations, plan = done.stdout.splitlines()
    assert Path(package).is_relative_to(installed)
    assert Path(migrations) == installed / DATA / "migrations"
    assert "kvcache 1 -> 3" in plan


def test_the_installed_wheel_checks_its_shipped_schemas(installed: Path, tmp_path: Path) -> None:
    schemas = installed / DATA / "schemas"
    done = _run(
        installed, tmp_path, "-m", "statemigrate", "schemas", "check",
        "--registry", "statemigrate.reference:build_registry", "--schemas", str(schemas),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_packaged_data_is_preferred_and_a_checkout_is_the_fallback(tmp_path: Path) -> None:
    package, checkout = tmp_path / "pkg", tmp_path / "repo"
    (checkout / "migrations").mkdir(parents=True)
    assert _data_dir("migrations", package=package, checkout=checkout) == checkout / "migrations"
    (package / "_data" / "migrations").mkdir(parents=True)
    assert _data_dir("migrations", package=package, checkout=checkout) == (
        package / "_data" / "migrations"
    )


def test_the_wheel_carries_the_c_checks_built_for_this_interpreter(wheel: Path) -> None:
    """hatch_build.py compiles statemigrate/_model/_cchecks.c into the wheel where a C
    compiler is (as on every machine these tests run on), and the wheel is then tagged
    for this interpreter; the C source itself is not shipped."""
    import shutil
    import sysconfig

    linker = sysconfig.get_config_var("LDSHARED")
    if not linker or shutil.which(linker.split()[0]) is None:
        pytest.skip("no C compiler: the wheel is pure Python by design")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (info,) = [name for name in names if name.endswith(".dist-info/WHEEL")]
        tags = archive.read(info).decode()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert f"statemigrate/_model/_cchecks{suffix}" in names
    assert "statemigrate/_model/_cchecks.c" not in names
    assert "Root-Is-Purelib: false" in tags and "py3-none-any" not in tags


def test_the_source_distribution_can_build_the_c_checks(tmp_path: Path) -> None:
    from hatchling.builders.sdist import SdistBuilder

    (built,) = SdistBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    import tarfile

    with tarfile.open(built) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"hatch_build.py", "statemigrate/_model/_cchecks.c"} <= names
    assert not any(name.startswith("statemigrate/") and name.endswith(".so") for name in names)
