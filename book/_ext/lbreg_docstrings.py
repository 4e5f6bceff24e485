"""Sphinx extension: make lbreg's docstrings render in the API reference; fix a doubled script.

Three adjustments to docstrings, applied before autodoc parses them:

1. **Dollar math.** Some modules write LaTeX as ``$...$`` and ``$$...$$`` (Markdown style) rather
   than with the reStructuredText ``:math:`` role and ``.. math::`` directive. reST would read
   such text literally (and trip over ``|z|`` or ``x_b`` inside it), so ``$$...$$`` becomes a
   ``.. math::`` block and ``$...$`` a ``:math:`` role. Text inside ````literals```` is left alone.
2. **Starred names in Args entries.** Napoleon escapes ``**kwargs:`` alone but not inside a
   shared entry such as ``reg, **solver_kwargs:``, which reST then reads as unclosed bold.
3. **Module constants.** Napoleon reads the first line of an attribute docstring as
   ``type: description``; lbreg's constants are documented in prose ("Code-noise levels of the
   study: std 0.33, ..."), so their docstrings bypass Napoleon.

Registered before ``sphinx.ext.napoleon`` (event priority 400 < 500) for the first two, and
after it (priority 600) for the third.

And one to the pages: with Sphinx 7.4, the inline configuration script of ``sphinx_thebe``
(``const THEBE_JS_URL = ...``) is emitted twice, and the second ``const`` is a JavaScript
``SyntaxError`` on every page. :func:`_dedupe_scripts` keeps the first copy of each script.
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx

_LITERAL = re.compile(r"``.+?``", re.DOTALL)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.DOTALL)
_PROSE_KINDS = ("data", "attribute")
# An Args entry naming several parameters, one of them starred: "    reg, **solver_kwargs: ..."
_STARRED_ENTRY = re.compile(r"^(\s+)((?:\*{0,2}\w+)(?:,\s*\*{0,2}\w+)+)(\s*(?:\([^)]*\))?:(?:\s|$))")


def _escape_starred(line: str) -> str:
    m = _STARRED_ENTRY.match(line)
    if not m or "*" not in m.group(2):
        return line
    names = re.sub(r"(?<![\\\w])\*", r"\\*", m.group(2))
    return m.group(1) + names + line[m.end(2):]


def _display(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _DISPLAY.finditer(text):
        before = text[pos:m.start()]
        line_start = text.rfind("\n", 0, m.start()) + 1
        indent = re.match(r"[ \t]*", text[line_start:]).group(0)
        body = [ln.strip() for ln in m.group(1).strip().splitlines() if ln.strip()]
        block = f"\n\n{indent}.. math::\n\n" + "\n".join(f"{indent}    {ln}" for ln in body) + f"\n\n{indent}"
        out.append(before.rstrip(" \t") + block)
        pos = m.end()
        # what follows the closing $$ starts a new paragraph at the same indentation
        rest = text[pos:]
        stripped = rest.lstrip(" \t")
        pos += len(rest) - len(stripped)
        if stripped.startswith("\n"):
            pos += 1
    out.append(text[pos:])
    return "".join(out)


def _inline(text: str) -> str:
    def role(m: re.Match[str]) -> str:
        start, end = m.start(), m.end()
        pre = "\\ " if start > 0 and (m.string[start - 1].isalnum() or m.string[start - 1] in "`)") else ""
        post = "\\ " if end < len(m.string) and m.string[end].isalnum() else ""
        content = " ".join(m.group(1).split())
        return f"{pre}:math:`{content}`{post}"

    return _INLINE.sub(role, text)


def dollars_to_rst(text: str) -> str:
    """Convert ``$$...$$`` and ``$...$`` outside ````literals```` to reST math."""
    if "$" not in text:
        return text
    pieces: list[str] = []
    pos = 0
    for m in _LITERAL.finditer(text):
        pieces.append(_inline(_display(text[pos:m.start()])))
        pieces.append(m.group(0))
        pos = m.end()
    pieces.append(_inline(_display(text[pos:])))
    return "".join(pieces)


_saved: dict[str, list[str]] = {}


def _before_napoleon(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    converted = [_escape_starred(ln) for ln in dollars_to_rst("\n".join(lines)).split("\n")]
    lines[:] = converted
    if what in _PROSE_KINDS:
        _saved[name] = list(converted)


def _after_napoleon(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in _PROSE_KINDS and name in _saved:
        lines[:] = _saved.pop(name)


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    kept = []
    for script in scripts:
        attrs = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "",
               tuple(sorted((k, str(v)) for k, v in attrs.items() if k != "priority")))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", _before_napoleon, priority=400)
    app.connect("autodoc-process-docstring", _after_napoleon, priority=600)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
