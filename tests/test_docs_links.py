"""Every relative link in the README, docs/, bench/README.md and bench/results/README.md points to a
file that exists, and every `#anchor` to a heading of that file (GitHub's heading slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    ROOT / "bench" / "README.md",
    ROOT / "bench" / "results" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    links = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
        links.extend(LINK.findall(line))
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


def test_slug_follows_github():
    assert slug("Why `docplatform/` and not `platform/`") == "why-docplatform-and-not-platform"
    assert slug("Uploads, jobs and virus scanning") == "uploads-jobs-and-virus-scanning"
    assert slug("Prefill attention and the bf16 GEMV (AVX-512 BF16)") == (
        "prefill-attention-and-the-bf16-gemv-avx-512-bf16"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        target_path = (page.parent / target).resolve() if target else page
        if not target_path.exists():
            broken.append(f"{link}: no file {target_path.relative_to(ROOT)}")
            continue
        if anchor and target_path.suffix == ".md" and anchor not in anchors(target_path):
            broken.append(f"{link}: no heading #{anchor} in {target_path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    # .ci/run runs the README's test command
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/start.sh" in readme
