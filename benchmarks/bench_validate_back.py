"""What the snapshot-time check of a union costs: per entry, against the same model
without the union.

A BaseModel schema whose round trip is not known by construction (a union of several
kinds of value, a validator, ...) is checked at every snapshot: its plain form is
validated back and compared with the live state (docs/schemas.md). This times
``Service.snapshot()`` of one component holding ``--entries`` models, for three schemas
that differ only in one field: a plain nested model (no check), a discriminated union
of two models, and a union of ``int | str`` (both checked). The difference per entry is
the check.

    .venv/bin/python benchmarks/bench_validate_back.py                 # 20,000 entries
    .venv/bin/python benchmarks/bench_validate_back.py --entries 2000  # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import table  # the benchmarks folder is not a package: found via sys.path

import statemigrate as sm


class Book(BaseModel):
    kind: Literal["book"] = "book"
    title: str
    pages: int


class Disc(BaseModel):
    kind: Literal["disc"] = "disc"
    title: str
    minutes: float


class Plain(BaseModel):
    sku: str
    qty: int
    item: Book


class Tagged(BaseModel):
    sku: str
    qty: int
    item: Annotated[Book | Disc, Field(discriminator="kind")]


class Untagged(BaseModel):
    sku: str
    qty: int
    item: Book
    code: int | str


def entry(kind: type[BaseModel], i: int) -> BaseModel:
    book = Book(title=f"title {i}", pages=i % 900)
    if kind is Tagged:
        item: Book | Disc = book if i % 2 else Disc(title=f"title {i}", minutes=i / 7)
        return Tagged(sku=f"s{i}", qty=i, item=item)
    if kind is Untagged:
        return Untagged(sku=f"s{i}", qty=i, item=book, code=i if i % 2 else f"c{i}")
    return Plain(sku=f"s{i}", qty=i, item=book)


def seconds_per_snapshot(kind: type[BaseModel], entries: int, repeat: int) -> float:
    class Stock(BaseModel):
        items: dict[str, kind]  # type: ignore[valid-type]

    registry = sm.Registry()
    registry.add_schema("stock", 1, Stock)

    @registry.migratable("stock", version=1)
    class Holder:
        def __init__(self) -> None:
            self.items = {f"k{i}": entry(kind, i) for i in range(entries)}

    service = sm.Service("bench", registry=registry)
    service.register(Holder())
    best = float("inf")
    for _ in range(repeat):
        # CPU time of this process: on a machine shared with other work the wall
        # clock counts the time it waited for a core too.
        began = time.process_time()
        service.snapshot()
        best = min(best, time.process_time() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plain = seconds_per_snapshot(Plain, args.entries, args.repeat)
    rows = [
        ("schema of each entry", "snapshot", "the check"),
        ("plain nested model (not checked)", f"{plain / args.entries * 1e6:.1f} µs", "-"),
    ]
    for label, kind in (("discriminated union of two models", Tagged), ("int | str", Untagged)):
        took = seconds_per_snapshot(kind, args.entries, args.repeat)
        rows.append((
            label, f"{took / args.entries * 1e6:.1f} µs",
            f"{(took - plain) / args.entries * 1e6:.1f} µs",
        ))
    print(
        f"Service.snapshot() per entry (CPU time), {args.entries:,} entries,"
        f" best of {args.repeat}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
