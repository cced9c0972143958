"""Strategies for the pydantic types whose core schema does not describe their input.

Most leaves of a core schema name what they take (``int`` with its bounds, ``str`` with
its pattern). A few are validated by a function the schema only points at, or by a test
of something outside the value:

- ``IPvAnyAddress``, ``IPvAnyNetwork`` and ``IPvAnyInterface`` are a plain validator
  function each (either IP version);
- ``typing.Pattern`` is a plain validator function that compiles its input;
- a URL type with ``allowed_schemes`` (``PostgresDsn``, ``RedisDsn``, ``FileUrl``, ...)
  takes none of the kit's few ``http`` URLs;
- ``NewPath``, ``FilePath`` and ``DirectoryPath`` test the file system when validated.

Paths of the last kind are drawn to pass their test on the machine running the check,
which is all a check can do: a ``FilePath`` from a few files that exist wherever the
kit runs (its own module, the ``os`` module), a ``DirectoryPath`` from the working,
temporary and kit directories, a ``NewPath`` as a short name, relative or in the
temporary directory, that does not exist (validation drops the rare one that does).
Whether they pass on the machine that restores a snapshot is the service's business
(``docs/schemas.md``). Any other test of the file system (a ``SocketPath``'s) is left
to a strategy of the user's.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from hypothesis import strategies as st
from hypothesis.errors import ResolutionFailed

from statemigrate._model._export_checks import is_path_check

__all__ = ["file_system_paths", "plain_function_values", "urls"]

Node = Mapping[str, Any]

# A few well-formed URLs: validity of the rest of the state matters far more to a
# migration than the variety of URLs, and pydantic's URL grammar is large.
_URLS = (
    "https://example.com/",
    "http://localhost:8080/path?q=1",
    "https://user@example.org/a/b#frag",
)
# What follows ``scheme://`` in a URL of a scheme the type names: a host alone, with
# user, password, port and path, and a local one (a DSN's usual forms).
_URL_RESTS = ("example.com/", "user:secret@db.example.org:5432/app", "localhost:6379/0")
_FILE_URL_RESTS = ("/tmp/state.json", "/var/lib/app/data%20file")

# Regular expressions of str (each pattern is valid): a Pattern field's own patterns
# matter to no migration, only that the field holds one.
_PATTERNS = ("", "a+", r"^[a-z]*$", r"(?i)key-\d{1,4}", r"(x|y)\.z")


def urls(node: Node) -> st.SearchStrategy[str]:
    """URL text of a ``url`` or ``multi-host-url`` node, in one of its allowed schemes."""
    schemes = node.get("allowed_schemes")
    if not schemes:
        return st.sampled_from(_URLS)
    forms = [
        f"{scheme}://{rest}"
        for scheme in schemes
        for rest in (_FILE_URL_RESTS if scheme == "file" else _URL_RESTS)
    ]
    return st.sampled_from(forms)


def _networks(
    version: Literal[4, 6], bits: int, make: Callable[..., Any]
) -> st.SearchStrategy[Any]:
    """Networks or interfaces of one IP version: an address with a prefix length."""
    return st.tuples(st.ip_addresses(v=version), st.integers(0, bits)).map(make)


def _network(pair: tuple[Any, int]) -> Any:
    return ipaddress.ip_network(pair, strict=False)


def _any_version(make: Callable[..., Any]) -> st.SearchStrategy[Any]:
    return _networks(4, 32, make) | _networks(6, 128, make)


def _patterns(kind: type) -> st.SearchStrategy[Any]:
    texts = st.sampled_from(_PATTERNS)
    if kind is bytes:
        return texts.map(lambda text: re.compile(text.encode()))
    return texts.map(re.compile)


_BY_TYPE: dict[object, Callable[[], st.SearchStrategy[Any]]] = {
    pydantic.IPvAnyAddress: lambda: st.ip_addresses(),
    pydantic.IPvAnyNetwork: lambda: _any_version(_network),
    pydantic.IPvAnyInterface: lambda: _any_version(ipaddress.ip_interface),
}
_BY_FUNCTION: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "pattern_str_validator": lambda: _patterns(str),
    "pattern_bytes_validator": lambda: _patterns(bytes),
    "pattern_either_validator": lambda: _patterns(str) | _patterns(bytes),
}


def plain_function_values(node: Node) -> st.SearchStrategy[Any] | None:
    """Values of a ``function-plain`` node that is one of pydantic's own types (the
    ``IPvAny*`` types, ``Pattern``), or None for any other plain validator function:
    its input has no shape to draw from."""
    function = (node.get("function") or {}).get("function")
    owner = getattr(function, "__self__", None)
    if owner in _BY_TYPE:
        return _BY_TYPE[owner]()
    if getattr(function, "__module__", "").startswith("pydantic."):
        make = _BY_FUNCTION.get(getattr(function, "__qualname__", ""))
        if make is not None:
            return make()
    return None


_NAME = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)


def file_system_paths(node: Node, where: str) -> st.SearchStrategy[str] | None:
    """Path text that passes the file-system test of a ``NewPath``, ``FilePath`` or
    ``DirectoryPath`` node here and now, or None for a node that tests no path.

    Raises:
        ResolutionFailed: the node tests a path in a way the kit cannot draw for (a
            ``SocketPath``), or no candidate passes the test on this machine.
    """
    if not is_path_check(node):
        return None
    test = str(node["function"]["function"].__qualname__).rpartition(".")[2]
    here = Path(__file__).resolve()
    if test == "validate_new":
        return _NAME | _NAME.map(lambda name: os.path.join(tempfile.gettempdir(), name))
    found: list[str] = []
    if test == "validate_file":
        found = [str(path) for path in (here, Path(os.__file__)) if path.is_file()]
    elif test == "validate_directory":
        found = [str(path) for path in (Path("."), here.parent, Path(tempfile.gettempdir()))]
        found = [path for path in found if Path(path).is_dir()]
    if not found:
        raise ResolutionFailed(
            f"cannot derive a strategy for {where}: a path that must pass pydantic's"
            f" {test} test on the machine running the check; pass a strategy for this"
            " version explicitly"
        )
    return st.sampled_from(found)
