"""docs/observability.md lists every metric with the type and labels it really has."""

from __future__ import annotations

import re
from pathlib import Path

from statemigrate.metrics import INSTRUMENTS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
ROW = re.compile(r"^\| `(statemigrate_[a-z_]+)` \| (\w+) \| ([^|]+) \| [^|]+ \|$")


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in PAGE.read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return rows


def test_every_metric_is_documented_as_defined() -> None:
    defined = {i.name: (i.kind, i.labels) for i in INSTRUMENTS}
    assert documented() == defined


def test_the_page_links_from_the_index_and_the_nav() -> None:
    root = PAGE.parents[1]
    assert "(observability.md)" in (root / "docs" / "index.md").read_text()
    assert "observability.md" in (root / "mkdocs.yml").read_text()
