"""The snapshot header: what a snapshot says about itself, and its validation.

The header is msgpack bytes inside the container (see ``_format`` for where). On the
way in it is validated with pydantic, because bytes are a trust boundary; once valid it
becomes plain frozen dataclasses that the rest of the library uses.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, Strict

from statemigrate._snapshot._chunks import MAX_CHUNK_SIZE
from statemigrate._version import __version__

__all__ = [
    "ChunkInfo",
    "DeltaBase",
    "Producer",
    "SectionInfo",
    "SnapshotHeader",
    "parse_header",
]

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Size = Annotated[int, Field(ge=0, le=1 << 62)]


@dataclass(frozen=True, slots=True)
class Producer:
    """Who wrote a snapshot: enough to tell, later, which deploy it came from."""

    service: str
    code_version: str
    python: str
    host: str
    pid: int
    library: str

    @classmethod
    def current(cls, service: str, *, code_version: str = "") -> Producer:
        """Describe this process as the producer of a snapshot for ``service``."""
        return cls(
            service=service,
            code_version=code_version,
            python=platform.python_version(),
            host=socket.gethostname(),
            pid=os.getpid(),
            library=f"statemigrate {__version__}",
        )


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One chunk of a section: codec number, raw and stored sizes, xxh3-64 of stored bytes."""

    codec: int
    raw_size: int
    stored_size: int
    checksum: int


@dataclass(frozen=True, slots=True)
class SectionInfo:
    """One component instance's state inside a snapshot."""

    component: str
    instance: str
    version: int
    fingerprint: str
    raw_size: int
    stored_size: int
    checksum: int
    """xxh3-64 of the raw (decompressed) msgpack bytes."""
    chunks: tuple[ChunkInfo, ...]

    @property
    def key(self) -> str:
        """``component/instance``, the name used in messages."""
        return f"{self.component}/{self.instance}"


@dataclass(frozen=True, slots=True)
class DeltaBase:
    """The snapshot (full or delta) a delta applies on top of."""

    snapshot_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """Everything a snapshot says about itself.

    ``base`` is set for a delta (format version 3 and later): the snapshot whose state
    its sections change. A full snapshot has none.
    """

    snapshot_id: str
    created_ns: int
    generation: int
    producer: Producer
    meta: dict[str, str]
    sections: tuple[SectionInfo, ...]
    base: DeltaBase | None = None

    @property
    def is_delta(self) -> bool:
        """Whether this is the header of a delta."""
        return self.base is not None

    def to_plain(self) -> dict[str, Any]:
        """The header as plain data, exactly as it is stored (a full snapshot's has no
        ``base`` key, so it reads as the header of format version 2 did)."""
        plain = asdict(self)
        if self.base is None:
            del plain["base"]
        plain["sections"] = [
            {**section, "chunks": [list(c.values()) for c in section["chunks"]]}
            for section in plain["sections"]
        ]
        return plain


# --- validation models (trust boundary) ---------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class _ProducerModel(BaseModel):
    model_config = _STRICT
    service: Annotated[str, Field(max_length=200)]
    code_version: Annotated[str, Field(max_length=200)]
    python: Annotated[str, Field(max_length=50)]
    host: Annotated[str, Field(max_length=255)]
    pid: Annotated[int, Field(ge=0, le=1 << 32)]
    library: Annotated[str, Field(max_length=100)]


# msgpack has no tuples: a chunk arrives as a list, so the tuple itself is lax while
# every element stays a strict int.
_Chunk = Annotated[
    tuple[
        Annotated[int, Strict(), Field(ge=0, le=255)],
        Annotated[int, Strict(), Field(ge=0, le=MAX_CHUNK_SIZE)],
        Annotated[int, Strict(), Field(ge=0, le=1 << 62)],
        Annotated[int, Strict(), Field(ge=0, lt=1 << 64)],
    ],
    Strict(False),
]


class _SectionModel(BaseModel):
    model_config = _STRICT
    component: _Name
    instance: _Name
    version: Annotated[int, Field(ge=1, le=1 << 31)]
    fingerprint: Annotated[str, Field(max_length=128)]
    raw_size: _Size
    stored_size: _Size
    checksum: Annotated[int, Field(ge=0, lt=1 << 64)]
    chunks: list[_Chunk]


class _BaseModel(BaseModel):
    model_config = _STRICT
    snapshot_id: Annotated[str, Field(min_length=1, max_length=64)]
    generation: Annotated[int, Field(ge=0, lt=1 << 63)]


class _HeaderModel(BaseModel):
    model_config = _STRICT
    snapshot_id: Annotated[str, Field(min_length=1, max_length=64)]
    created_ns: Annotated[int, Field(ge=0, lt=1 << 63)]
    generation: Annotated[int, Field(ge=0, lt=1 << 63)]
    producer: _ProducerModel
    meta: dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=4096)]]
    sections: list[_SectionModel]
    base: _BaseModel | None = None


_HEADER_ADAPTER = pydantic.TypeAdapter(_HeaderModel)


def parse_header(plain: object, *, deltas: bool = True) -> SnapshotHeader:
    """Validate decoded header data and turn it into a :class:`SnapshotHeader`.

    Args:
        plain: the decoded header.
        deltas: whether the header may name a base (format version 3 and later);
            the headers of older versions may not.

    Raises:
        ValueError: with a one-line reason naming the first bad field; the caller
            turns it into ``SnapshotError(kind="invalid_header")``.
    """
    if not deltas and isinstance(plain, dict) and "base" in plain:
        raise ValueError("base: deltas exist from container format version 3 on")
    try:
        model = _HEADER_ADAPTER.validate_python(plain)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "header"
        raise ValueError(f"{where}: {first['msg']}") from exc
    sections = tuple(
        SectionInfo(
            component=s.component,
            instance=s.instance,
            version=s.version,
            fingerprint=s.fingerprint,
            raw_size=s.raw_size,
            stored_size=s.stored_size,
            checksum=s.checksum,
            chunks=tuple(ChunkInfo(*chunk) for chunk in s.chunks),
        )
        for s in model.sections
    )
    seen: set[tuple[str, str]] = set()
    for section in sections:
        pair = (section.component, section.instance)
        if pair in seen:
            raise ValueError(f"sections: {section.key} appears twice")
        seen.add(pair)
        if sum(c.raw_size for c in section.chunks) != section.raw_size:
            raise ValueError(f"sections: {section.key} raw_size is not the sum of its chunks")
        if sum(c.stored_size for c in section.chunks) != section.stored_size:
            raise ValueError(
                f"sections: {section.key} stored_size is not the sum of its chunks"
            )
    return SnapshotHeader(
        snapshot_id=model.snapshot_id,
        created_ns=model.created_ns,
        generation=model.generation,
        producer=Producer(**model.producer.model_dump()),
        meta=dict(model.meta),
        sections=sections,
        base=None if model.base is None else DeltaBase(
            model.base.snapshot_id, model.base.generation
        ),
    )
