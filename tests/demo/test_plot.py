"""The demo's latency figures and its picture, from made-up samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from statemigrate.demo._latency import summarize
from statemigrate.demo._plot import Window, render_svg, write_plot


def test_percentiles_are_nearest_rank_within_the_window() -> None:
    samples = [(float(i), i / 1000) for i in range(1, 101)]  # 1 ms .. 100 ms
    whole = summarize(samples)
    assert (whole.requests, whole.p50_ms, whole.p99_ms, whole.max_ms) == (100, 50, 99, 100)
    window = summarize(samples, 91.0, 100.0)
    assert (window.requests, window.p50_ms, window.max_ms) == (10, 95, 100)
    assert summarize(samples, 500.0, 600.0).requests == 0


def test_the_picture_shades_each_window_in_both_panels() -> None:
    samples = [(1000.0 + i / 100, 0.001 + (0.05 if 300 <= i < 320 else 0)) for i in range(600)]
    windows = [Window(1003.0, 1003.2, "v1->v2 pause 200 ms"), Window(1005.0, 1005.1, "back")]
    svg = render_svg(samples, windows, title="run")
    assert svg.count('fill="#f4a261" fill-opacity') == 2 * len(windows)
    assert "v1-&gt;v2 pause 200 ms" in svg and ">back<" in svg
    assert svg.count("<polyline") == 4  # throughput, and max, p99, p50 of latency


def test_nothing_answered_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no requests were answered"):
        write_plot(tmp_path / "x.svg", [], [], title="empty")


def test_any_other_suffix_gets_bare_svg(tmp_path: Path) -> None:
    target = tmp_path / "run.svg"
    write_plot(target, [(1.0, 0.002), (1.05, 0.003)], [], title="run")
    assert target.read_text().startswith("<svg")
