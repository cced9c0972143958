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


def example_alerts() -> dict[str, str]:
    """The page's example alerting rules: each alert's name and its text."""
    text = PAGE.read_text().split("## Example alerts", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = block.split("- alert: ")[1:]
    return {rule.split("\n", 1)[0].strip(): rule for rule in rules}


def test_the_example_alerts_read_defined_metrics() -> None:
    defined = {i.name for i in INSTRUMENTS}
    for name, rule in example_alerts().items():
        used = re.findall(r"statemigrate_[a-z_]+", rule)
        assert used, name
        assert {re.sub(r"_(bucket|sum|count)$", "", metric) for metric in used} <= defined


def test_there_are_alerts_on_stale_snapshots_and_failed_commits() -> None:
    """checkpoints.md sends its readers here for both."""
    rules = example_alerts().values()
    assert any("statemigrate_last_snapshot_timestamp_seconds" in rule for rule in rules)
    assert any('statemigrate_commits_total{outcome="failed"}' in rule for rule in rules)


RULES = PAGE.parent / "alerts.yml"


def test_the_page_shows_the_rules_file_as_it_is() -> None:
    """The rules live in docs/alerts.yml; the page shows that file, unchanged."""
    text = PAGE.read_text().split("## Example alerts", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block == RULES.read_text()


def test_each_rule_is_explained_on_the_page() -> None:
    text = PAGE.read_text().split("## Example alerts", 1)[1]
    for name in example_alerts():
        assert f"- **{name}.**" in text, name
