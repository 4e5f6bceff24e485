"""CITATION.cff, LICENSE, pyproject.toml and book/references.bib say the same thing."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import lbreg

ROOT = Path(__file__).resolve().parents[1]


def _bib_entry(key: str) -> dict[str, str]:
    """The fields of ``@article{key, ...}`` in book/references.bib (one field per line)."""
    text = (ROOT / "book" / "references.bib").read_text()
    body = re.search(r"@\w+\{" + re.escape(key) + r",\n(.*?)\n\}", text, re.S)
    assert body is not None, f"{key} missing from references.bib"
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", body.group(1), re.M))
    return {name: value.replace("{", "").replace("}", "") for name, value in fields.items()}


def _citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_preferred_citation_is_the_book_s_entry_for_the_paper():
    paper, bib = _citation()["preferred-citation"], _bib_entry("wang2023lifted")
    authors = [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    assert " and ".join(authors) == bib["author"]
    for field in ("title", "journal", "doi"):
        assert paper[field] == bib[field], field
    assert (str(paper["volume"]), str(paper["start"]), str(paper["year"])) == (
        bib["volume"], bib["pages"], bib["year"])


def test_the_readme_s_bibtex_and_doi_are_the_book_s():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bibtex\n(.*?)```", readme, re.S)
    assert block is not None, "README has no BibTeX block"
    bib = (ROOT / "book" / "references.bib").read_text()
    entry = re.search(r"@article\{wang2023lifted,.*?\n\}\n", bib, re.S)
    assert block.group(1) == entry.group(0)
    assert f"doi:{_bib_entry('wang2023lifted')['doi']}" in readme


def test_version_and_licence_agree_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = _citation()
    assert citation["version"] == project["version"] == lbreg.__version__
    assert citation["license"] == project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
