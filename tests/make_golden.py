"""Write the golden snapshot files of the current format version into ``tests/data``.

Run once per released format version, from the repository root::

    .venv/bin/python tests/make_golden.py

It never overwrites: a golden file, once committed, is a promise that this exact
snapshot decodes forever, so it is never regenerated or edited. A new format version
gets new files with a new name prefix (``v2-...``) next to the old ones.

Each snapshot comes with ``<name>.expected.json``: its SHA-256, the key it needs, its
header and every section's decoded data (see ``golden.py`` for the JSON form).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# The path above must be set first when this runs as a script.
from golden import (
    DATA,
    GOLDEN_KEY,
    PRODUCER,
    SUFFIX,
    sha256,
    to_json,
)

from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import FORMAT_VERSION, open_snapshot
from statemigrate._snapshot._header import DeltaBase


def _cache_entries(rng: random.Random, count: int) -> dict[str, object]:
    names = ["ada", "grace", "edsger", "barbara", "ken", "радослав", "明", "zoë"]
    return {
        f"user:{n:04d}": {
            "name": rng.choice(names),
            "score": round(rng.uniform(-1000, 1000), 6),
            "hits": rng.randrange(1 << 40),
            "tags": rng.sample(["a", "b", "vip", "trial", "eu", "us"], k=rng.randrange(4)),
            "token": rng.randbytes(8),
            "active": rng.random() < 0.5,
            "ttl": None if rng.random() < 0.3 else rng.randrange(86_400),
        }
        for n in range(count)
    }


EDGE_VALUES: list[object] = [
    0,
    -1,
    127,
    128,
    -32,
    -33,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.0,
    1e308,
    5e-324,
    "",
    "ünïcødé ✓ 𝄞",
    "x" * 300,
    b"",
    b"\x00\xff" * 40,
    True,
    False,
    None,
    [],
    {},
    {"nested": {"deeper": [[[1, [2, [3]]]]]}},
]


def _write(
    name: str, sections: list[SectionInput], *, key: bytes | None, **options: object
) -> None:
    target = DATA / f"{name}{SUFFIX}"
    record = DATA / f"{name}.expected.json"
    if target.exists() or record.exists():
        print(f"{target.name}: exists, left alone (golden files are never regenerated)")
        return
    encoded = encode_snapshot(sections, producer=PRODUCER, key=key, **options)  # type: ignore[arg-type]
    blob = encoded.to_bytes()
    snapshot = open_snapshot(blob, key=key)
    decoded = [snapshot.read_section(i) for i in range(len(sections))]
    if decoded != [s.data for s in sections]:
        raise SystemExit(f"{name}: does not decode to what was encoded")
    expected = {
        "file": target.name,
        "sha256": sha256(blob),
        "size": len(blob),
        "format_version": FORMAT_VERSION,
        "authenticated": key is not None,
        "key": None if key is None else key.hex(),
        "header": to_json(snapshot.header.to_plain()),
        "sections": [to_json(data) for data in decoded],
    }
    target.write_bytes(blob)
    record.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{target.name}: {len(blob)} bytes")


def main() -> None:
    rng = random.Random(20240601)
    DATA.mkdir(exist_ok=True)
    prefix = f"v{FORMAT_VERSION}"
    _write(f"{prefix}-empty", [], key=None)
    _write(
        f"{prefix}-small",
        [
            SectionInput("cache", "main", 3, "sha256:cache-v3", _cache_entries(rng, 300)),
            SectionInput("sessions", "eu", 1, "sha256:sessions-v1", EDGE_VALUES),
            # Random bytes do not compress: these chunks are stored raw (codec 0).
            SectionInput("blobs", "main", 1, "", rng.randbytes(6000)),
            SectionInput("counters", "empty", 2, "", {}),
        ],
        key=None,
        generation=7,
        meta={"purpose": "golden", "format": str(FORMAT_VERSION)},
        level=3,
        chunk_size=4096,
    )
    _write(
        f"{prefix}-mac",
        [
            SectionInput("cache", "main", 3, "sha256:cache-v3", _cache_entries(rng, 12)),
            SectionInput("counters", "main", 2, "", {"requests": 12345, "errors": 0}),
        ],
        key=GOLDEN_KEY,
        generation=8,
        meta={"purpose": "golden, authenticated"},
        chunk_size=1024,
    )
    # A delta (format version 3 and later): its header names its base.
    _write(
        f"{prefix}-delta",
        [
            SectionInput(
                "cache", "main", 3, "sha256:cache-v3",
                {
                    "state": {"entries": _cache_entries(rng, 5)},
                    "deleted": {"entries": ["gone-1", "gone-2"]},
                },
            ),
            SectionInput(
                "counters", "main", 2, "",
                {"state": {"requests": 12400, "errors": 1}, "deleted": {}},
            ),
        ],
        key=None,
        generation=9,
        meta={"purpose": "golden, delta"},
        base=DeltaBase("5b1d2a07c0ffee00d15ea5e0000b45e1", 8),
    )
    # A delta that keeps the writer's key order: its last 'moved' records go to the end.
    _write(
        f"{prefix}-delta-moved",
        [
            SectionInput(
                "cache", "main", 3, "sha256:cache-v3",
                {
                    "state": {
                        "entries": {
                            "kept": {"value": "replaced in place", "hits": 2},
                            "touched": {"value": "moved to the end", "hits": 7},
                            "new": {"value": "inserted last", "hits": 0},
                        },
                    },
                    "deleted": {"entries": ["gone"]},
                    "moved": {"entries": 2},
                },
            ),
        ],
        key=None,
        generation=10,
        meta={"purpose": "golden, delta with moved records"},
        base=DeltaBase("6b181e1de9c3c85ebd00446f2e90156a", 9),
    )


if __name__ == "__main__":
    main()
