"""The docs hold together: every relative link in README.md and docs/**/*.md points to a file that exists (and to
a heading of it, when it names an anchor), and the README stays an entry page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import ROOT, documentation

#: `[text](target)` and `![alt](target)`; the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")
CODE_SPAN = re.compile(r"`[^`]*`")


def outside_code(page: Path) -> list[tuple[int, str]]:
    """The page's numbered lines outside its code blocks."""
    lines, in_code = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            lines.append((number, line))
    return lines


def links(page: Path) -> list[tuple[int, str]]:
    """Each link target of the page's prose (not in code blocks or inline code), with its line."""
    return [(number, target) for number, line in outside_code(page) for target in LINK.findall(CODE_SPAN.sub("", line))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats -1, -2."""
    seen: dict[str, int] = {}
    for _, line in outside_code(page) if page.suffix == ".md" else []:
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_every_relative_link_of_the_docs_resolves():
    broken = []
    for page in documentation():
        for number, target in links(page):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not ours to check
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            if not file.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_page_of_docs_is_linked_from_somewhere():
    linked = {(page.parent / target.partition("#")[0]).resolve()
              for page in documentation() for _, target in links(page)}
    assert [str(p.relative_to(ROOT)) for p in documentation()[1:] if p.resolve() not in linked] == []


def test_the_readme_is_an_entry_page_that_keeps_the_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "\nmake test " in readme and "make test-fast" in readme and "make run" in readme  # .ci/run runs it
