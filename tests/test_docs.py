"""The README and docs/ hold together: every relative link and image points to a file that
exists, every #anchor to a heading of its target (GitHub's slugs), every external link is a
well-formed http(s) URL (not fetched), and every docs page is reached from the README."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mlflow_stack.settings import REPO_ROOT

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def pages(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text a reader sees as markdown: fenced blocks and inline code removed, where a
    `[x](y)` is an example, not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its visible text, lowercased, with every character
    but letters, digits, underscores, hyphens and spaces dropped, spaces made hyphens."""
    text = re.sub(r"!?\[((?:[^\]\[]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text()))


def link_problems(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """One line per link of `path` that does not resolve."""
    problems = []
    for target in links(path):
        where = f"{path.relative_to(root)}: ({target})"
        scheme = urlsplit(target).scheme
        if scheme:
            parts = urlsplit(target)
            if scheme not in ("http", "https") or not parts.hostname or " " in target:
                problems.append(f"{where} is not a well-formed http(s) URL")
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.is_relative_to(root.resolve()) or not linked.exists():
            problems.append(f"{where}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            problems.append(f"{where}: no heading #{anchor} in {linked.relative_to(root.resolve())}")
    return problems


def unreached_pages(root: Path = REPO_ROOT) -> list[str]:
    """docs pages that no chain of links from the README reaches."""
    reached, todo = set(), [(root / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in links(page):
            file_part = target.partition("#")[0]
            linked = (page.parent / file_part).resolve()
            if file_part.endswith(".md") and not urlsplit(target).scheme and linked.is_file():
                todo.append(linked)
    return [str(p.relative_to(root)) for p in pages(root)[1:] if p.resolve() not in reached]


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_image_and_anchor_resolves(path):
    assert links(path), f"{path.name} has no links: the checker would pass it unread"
    assert link_problems(path) == []


def test_every_docs_page_is_reached_from_the_readme():
    assert unreached_pages() == []


def test_slugs_follow_githubs_rules(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Tests\n\n## The compose stack on a real engine (`-m docker`)\n\n"
                    "## The book's way: clients writing straight to MinIO\n\n"
                    "### `dl_model_tracking` and [links](x.md)\n\n## Tests\n\n## Tests\n\n"
                    "```bash\n# not a heading\n```\n")
    assert anchors(page) == {"tests", "the-compose-stack-on-a-real-engine--m-docker",
                             "the-books-way-clients-writing-straight-to-minio",
                             "dl_model_tracking-and-links", "tests-1", "tests-2"}


def test_the_checker_reports_a_broken_link_and_a_broken_anchor(tmp_path):
    """Negative control: a synthetic README with one good link of each kind and two broken
    ones; only the broken ones are reported."""
    (tmp_path / "docs" / "images").mkdir(parents=True)
    (tmp_path / "docs" / "images" / "a.png").write_bytes(b"")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## First steps\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[good](docs/guide.md#first-steps) ![img](docs/images/a.png) [here](#title) "
        "[site](https://example.org/x) `[code](not-checked.md)`\n\n"
        "[missing](docs/nowhere.md) and [bad anchor](docs/guide.md#last-steps) "
        "and [bad url](https//example.org) and ![gone](docs/images/b.png) and [ftp](ftp://example.org/f)\n")
    assert link_problems(readme, tmp_path) == [
        "README.md: (docs/nowhere.md): no such file",
        "README.md: (docs/guide.md#last-steps): no heading #last-steps in docs/guide.md",
        "README.md: (https//example.org): no such file",
        "README.md: (docs/images/b.png): no such file",
        "README.md: (ftp://example.org/f) is not a well-formed http(s) URL",
    ]


def test_a_page_no_link_reaches_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("[a](docs/a.md)\n")
    (tmp_path / "docs" / "a.md").write_text("[b](b.md#top)\n")
    (tmp_path / "docs" / "b.md").write_text("# Top\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n\n[a](a.md)\n")
    assert unreached_pages(tmp_path) == ["docs/orphan.md"]
