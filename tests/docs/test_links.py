"""Every relative link and #anchor in the top-level and docs/ markdown resolves.

The docs are read in two places: on the repository host, which names a heading's anchor
one way, and on the mkdocs site, which names it another. A link's anchor must name a
heading in both, so it works wherever it is followed. Links to other sites are not
checked. `mkdocs build --strict` in CI checks the site too; this test needs no mkdocs.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [*sorted(ROOT.glob("*.md")), *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_LINK_DEFINITION = re.compile(r"^[ ]{0,3}\[(?!\^)[^\]]+\]:[ \t]*<?([^\s>]+)>?", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _fenced(lines: list[str]) -> list[bool]:
    """For each line, whether it belongs to a fenced code block (fences included)."""
    inside = []
    fence = ""
    for line in lines:
        mark = _FENCE.match(line)
        inside.append(bool(fence or mark))
        if not fence and mark:
            fence = mark.group(1)
        elif fence and mark and mark.group(1)[0] == fence[0] and len(mark.group(1)) >= len(fence):
            fence = ""
    return inside


def _blank_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked, keeping every offset and line."""
    lines = text.split("\n")
    prose = "\n".join(
        " " * len(line) if code else line for line, code in zip(lines, _fenced(lines), strict=True)
    )
    return _CODE_SPAN.sub(lambda m: re.sub(r"[^`\n]", "x", m.group(0)), prose)


def _heading_texts(text: str) -> list[str]:
    """The visible text of each ATX heading outside fenced blocks, in order."""
    lines = text.split("\n")
    texts = []
    for line, code in zip(lines, _fenced(lines), strict=True):
        heading = None if code else _HEADING.match(line)
        if heading:
            # A link in a heading shows its text; the anchors drop backticks and the like.
            texts.append(re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)))
    return texts


def site_anchor(heading: str) -> str:
    """The anchor the mkdocs site (Python-Markdown's toc) gives a heading, before dedup."""
    ascii_only = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^\w\s-]", "", ascii_only).strip().lower()
    return re.sub(r"[-\s]+", "-", slug)


def host_anchor(heading: str) -> str:
    """The anchor the repository host gives a heading, before dedup."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def anchors(text: str) -> tuple[set[str], set[str]]:
    """The anchors of a page's headings on the site and on the repository host."""
    site: set[str] = set()
    host: set[str] = set()
    for heading in _heading_texts(text):
        base = site_anchor(heading)
        name, count = base, 0
        while name in site or not name:
            count += 1
            name = f"{base}_{count}"
        site.add(name)
        base = host_anchor(heading)
        name, count = base, 0
        while name in host:
            count += 1
            name = f"{base}-{count}"
        host.add(name)
    return site, host


def broken_links(page: Path, text: str) -> list[str]:
    """One line per relative link in `text` (the content of `page`) that leads nowhere."""
    prose = _blank_code(text)
    found = [(m.start(), m.group(1)) for m in _INLINE_LINK.finditer(prose)]
    found += [(m.start(), m.group(1)) for m in _LINK_DEFINITION.finditer(prose)]
    problems = []
    for offset, target in sorted(found):
        if _SCHEME.match(target):
            continue
        where = f"{page.relative_to(ROOT)}:{prose.count(chr(10), 0, offset) + 1}: {target}"
        path, _, anchor = target.partition("#")
        if path.startswith("/"):
            problems.append(f"{where}: absolute path, use a relative one")
            continue
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file():
            problems.append(f"{where}: no such file")
            continue
        if page.parent == DOCS and not dest.is_relative_to(DOCS):
            problems.append(f"{where}: leaves docs/, so the site cannot follow it")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
                continue
            site, host = anchors(text if dest == page else dest.read_text(encoding="utf-8"))
            lacking = [name for name, ids in (("site", site), ("host", host)) if anchor not in ids]
            if lacking:
                sites = " or ".join(lacking)
                problems.append(f"{where}: no heading with this anchor on the {sites}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


def test_every_docs_page_is_in_the_site_nav() -> None:
    """mkdocs.yml's nav lists each page of docs/, so none is built without a way to it."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*- (?:[^:\n]+: )?(\S+\.md)\s*$", config, re.M))
    assert nav == {page.name for page in DOCS.glob("*.md")}


def test_anchors_follow_both_renderers() -> None:
    text = (
        "# Top\n\n## `inspect`\n\n## The registry: where `plan` finds steps\n\n"
        "## a -> b\n\n## Top\n\n```sh\n# not a heading\n```\n"
    )
    site, host = anchors(text)
    assert site == {"top", "inspect", "the-registry-where-plan-finds-steps", "a-b", "top_1"}
    assert host == {"top", "inspect", "the-registry-where-plan-finds-steps", "a---b", "top-1"}


def test_a_broken_link_or_anchor_is_reported() -> None:
    """Negative control: the checker finds each kind of dead link, and only those."""
    page = DOCS / "cli.md"
    text = "\n".join(
        [
            "# Page",
            "## A heading",
            "[fine](api.md) [fine too](#a-heading) [elsewhere](https://example.org/x.md)",
            "[missing file](no-such-page.md)",
            "[missing anchor](stores.md#no-such-heading)",
            "[missing here](#not-on-this-page)",
            "[leaves the docs](../README.md)",
            "[wrapped",
            "text](gone.md)",
            "[only the site has it](#a-b)",
            "## a -> b",
            "[defined]: also-gone.md",
            "[^note]: a footnote, not a link",
            "`[in code](ignored.md)`",
            "`a code span",
            "over two lines` [after it](gone-too.md)",
            "```",
            "[in a block](ignored.md)",
            "```",
        ]
    )
    problems = broken_links(page, text)
    assert [line.split(": ")[0:2] for line in problems] == [
        ["docs/cli.md:4", "no-such-page.md"],
        ["docs/cli.md:5", "stores.md#no-such-heading"],
        ["docs/cli.md:6", "#not-on-this-page"],
        ["docs/cli.md:7", "../README.md"],
        ["docs/cli.md:8", "gone.md"],
        ["docs/cli.md:10", "#a-b"],
        ["docs/cli.md:12", "also-gone.md"],
        ["docs/cli.md:16", "gone-too.md"],
    ]
    assert problems[5].endswith("on the host")
