"""Every "PAPER_MATH §N" that the code, the book and the tests cite exists on the book's page
book/paper_math.md (the specification they refer to): the section, the numbered item of §5 or
§6 (an "item" or a "check"), and a named statement (Remark 2, Example 1, ...) inside the
section that is cited for it.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "paper_math.md"
# "PAPER_MATH" and what follows it up to the end of the parenthesis or sentence
CITATION = re.compile(r"PAPER_MATH\s+(.*?)(?=[)]|\.\s|\.$|\n\n|$)", re.S)
SECTION = re.compile(r"(?:§|section\s+)(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?")
ITEMS = re.compile(r"^,?\s*(?:items?|checks?)\s+(\d[\d\s,–-]*(?:and\s+\d+)?)")
NAMED = re.compile(r"^,?\s*((?:Remark|Example|Lemma|Theorem|Definition)\s+\d+)")


def _sections() -> dict[str, str]:
    """Section number -> its text (up to the next heading of the same or a higher level)."""
    text = PAGE.read_text()
    heads = list(re.finditer(r"^(#{2,3}) (\d+(?:\.\d+)?) ", text, flags=re.M))
    out = {}
    for i, h in enumerate(heads):
        level = len(h.group(1))
        end = next((g.start() for g in heads[i + 1:] if len(g.group(1)) <= level), len(text))
        out[h.group(2)] = text[h.start():end]
    return out


def _items(section_text: str) -> set[int]:
    """The numbers of the top-level numbered list items of a section."""
    return {int(n) for n in re.findall(r"^(\d+)\. ", section_text, flags=re.M)}


def _numbers(spec: str) -> list[int]:
    """``"8–9, 11"`` -> ``[8, 9, 11]``; ``"12 and 13"`` -> ``[12, 13]``."""
    out = []
    for part in re.split(r"\s*(?:,|\band\b)\s*", spec.strip(" ,")):
        lo, _, hi = re.sub(r"\s*[–-]\s*", "-", part).partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _sources() -> list[tuple[str, str]]:
    """``(file, text)`` of every file that may cite the page; notebooks as their cells' sources."""
    files = [*ROOT.glob("lbreg/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py"),
             *ROOT.glob("book/*.md"), ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    out = [(str(p.relative_to(ROOT)), p.read_text()) for p in files if p != Path(__file__) and p != PAGE]
    for p in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("book/*.ipynb")]:
        nb = nbformat.read(p, as_version=4)
        out.append((str(p.relative_to(ROOT)), "\n\n".join(c.source for c in nb.cells)))
    return out


def _citations() -> list[tuple[str, str, str | None, str | None]]:
    """``(file, section, items or None, named statement or None)`` of every citation."""
    found = []
    for name, text in _sources():
        for m in CITATION.finditer(text):
            tail = m.group(1)
            for s in SECTION.finditer(tail):
                rest = tail[s.end():]
                items, named = ITEMS.match(rest), NAMED.match(rest)
                for sec in filter(None, (s.group(1), s.group(2))):
                    found.append((name, sec, items and items.group(1), named and named.group(1)))
    return found


CITATIONS = _citations()


def test_citations_are_found():
    """The scan sees the citations (so that an empty scan cannot pass)."""
    assert len(CITATIONS) > 50
    assert any(items for _, _, items, _ in CITATIONS) and any(named for *_, named in CITATIONS)


@pytest.mark.parametrize("name,section,items,named", CITATIONS,
                         ids=[f"{c[0]}:sec{c[1]}" for c in CITATIONS])
def test_citation_exists(name, section, items, named):
    sections = _sections()
    assert section in sections, f"{name} cites PAPER_MATH §{section}, which book/paper_math.md lacks"
    if items:
        missing = set(_numbers(items)) - _items(sections[section])
        assert not missing, f"{name} cites PAPER_MATH §{section} item(s) {sorted(missing)}, which it lacks"
    if named:
        assert named in sections[section], f"{name} cites {named} in PAPER_MATH §{section}, which is not there"
