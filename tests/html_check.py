"""Open every page of the built book in headless Chromium and fail on what a reader would see.

Run by ``make check-html`` after ``make book``; it builds nothing itself. For every HTML page
under ``_build/html`` (served over a localhost ``http.server``, since ``file://`` breaks some
scripts) it fails on

- a JavaScript error: an uncaught exception (``pageerror``) or a console message of type error;
- a broken image: an ``<img>`` whose ``naturalWidth`` is 0 once loaded;
- unrendered math: ``$$`` in the visible text outside code, a MathJax error (``mjx-merror``),
  an undefined TeX macro (which MathJax typesets as red text), or a ``.math`` element that
  MathJax left untypeset;
- an internal link whose page or anchor does not exist;
- a failed request for a local file (HTTP status >= 400);
- a request that leaves the machine: the book must render offline (MathJax is served from
  ``_static/mathjax``), so any external request is blocked and reported.

It saves a full-page screenshot of each page under ``_build/screenshots/`` and ends with one
line ``html-check: N passed, M failed``. Chromium is the system browser (Debian's ``chromium``,
installed by the Makefile target when missing), driven by Playwright's Python package; the
check never downloads a browser.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}
MATH_TIMEOUT_MS = 60_000


# --------------------------------------------------------------------------- local server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on a free localhost port in a daemon thread; return the server and its URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------- link targets


class _Anchors(HTMLParser):
    """Collects the ``id`` and ``<a name>`` values of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value and (key == "id" or (tag == "a" and key == "name")):
                self.anchors.add(value)


@functools.lru_cache(maxsize=None)
def anchors_of(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.anchors)


def resolve_local(html_root: Path, base_url: str, url: str) -> Path | None:
    """The file under ``html_root`` that a same-origin ``url`` points to (``None`` if missing)."""
    path = unquote(urlsplit(url).path)
    rel = path[len(urlsplit(base_url).path):] if path.startswith(urlsplit(base_url).path) else path
    target = (html_root / rel.lstrip("/")).resolve()
    if target.is_dir():
        target = target / "index.html"
    if html_root.resolve() not in target.parents and target != html_root.resolve():
        return None
    return target if target.is_file() else None


# --------------------------------------------------------------------------- one page

# Evaluated in the page once it has loaded and MathJax (if any) has typeset.
_INSPECT = r"""
async () => {
  const imgs = Array.from(document.querySelectorAll('img'));
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done);
    setTimeout(done, 15000);
  })));
  const broken = imgs.filter(img => img.naturalWidth === 0)
                     .map(img => img.getAttribute('src') || '(no src)');
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'NOSCRIPT', 'MJX-CONTAINER']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawMath = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let el = node.parentElement, hidden = false;
    while (el) { if (skip.has(el.tagName)) { hidden = true; break; } el = el.parentElement; }
    if (!hidden && node.nodeValue.includes('$$')) rawMath.push(node.nodeValue.trim().slice(0, 80));
  }
  const hasMathJax = !!(window.MathJax && window.MathJax.startup);
  const mathEls = Array.from(document.querySelectorAll('.math'));
  const untypeset = hasMathJax
      ? mathEls.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.trim().slice(0, 80))
      : mathEls.map(el => el.textContent.trim().slice(0, 80));
  const merror = Array.from(document.querySelectorAll('mjx-merror'))
                      .map(el => (el.getAttribute('data-mjx-error') || el.textContent).slice(0, 80));
  // MathJax's noundefined extension typesets an unknown macro as red text instead of an error.
  const undefinedMacros = Array.from(document.querySelectorAll('mjx-container mjx-mtext[style*="color: red"]'))
                      .map(el => el.closest('mjx-container').querySelector('mjx-assistive-mml')?.textContent.slice(0, 80) || '?');
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  return {broken, rawMath, untypeset, merror, undefinedMacros, links, nImages: imgs.length, nMath: mathEls.length};
}
"""

_WAIT_MATHJAX = """
async (timeoutMs) => {
  if (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) return 'none';
  const timeout = new Promise(done => setTimeout(() => done('timeout'), timeoutMs));
  return await Promise.race([window.MathJax.startup.promise.then(() => 'done'), timeout]);
}
"""


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_REFRESH = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


def check_page(context, html_root: Path, base: str, page: Path, shots: Path) -> PageReport:
    rel = page.relative_to(html_root).as_posix()
    report = PageReport(rel)
    redirect = _REFRESH.search(page.read_text(encoding="utf-8", errors="replace"))
    if redirect:  # e.g. the root index.html: only its target must exist (it is checked itself)
        target = resolve_local(html_root, base, urljoin(f"{base}/{rel}", redirect.group(1)))
        if target is None:
            report.problems.append(f"redirect to a missing page: {redirect.group(1)}")
        report.notes.append(f"redirects to {redirect.group(1)}")
        return report
    blocked: list[str] = []
    console: list[str] = []

    def on_route(route) -> None:
        url = route.request.url
        if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    def on_console(msg) -> None:
        if msg.type == "error":
            console.append(msg.text)

    def on_response(resp) -> None:
        if resp.url.startswith(base) and resp.status >= 400:
            report.problems.append(f"HTTP {resp.status} for {resp.url[len(base):]}")

    page_obj = context.new_page()
    page_obj.route("**/*", on_route)
    page_obj.on("console", on_console)
    page_obj.on("pageerror", lambda err: report.problems.append(f"JavaScript error: {err}"))
    page_obj.on("response", on_response)
    try:
        page_obj.goto(f"{base}/{rel}", wait_until="load", timeout=60_000)
        if page_obj.evaluate(_WAIT_MATHJAX, MATH_TIMEOUT_MS) == "timeout":
            report.problems.append(f"MathJax did not finish typesetting within {MATH_TIMEOUT_MS / 1000:.0f} s")
        page_obj.wait_for_timeout(300)  # let late console messages arrive
        info = page_obj.evaluate(_INSPECT)
        page_obj.screenshot(path=str(shots / (rel.replace("/", "__").removesuffix(".html") + ".png")), full_page=True)
    except Exception as err:  # a page that cannot be loaded or inspected fails, with the reason
        report.problems.append(f"could not load or inspect the page: {err}")
        page_obj.close()
        return report
    page_obj.close()

    for url in blocked:
        report.problems.append(f"external request (the book must render offline): {url}")
    for text in console:
        # A blocked external request also logs a console error; it is reported above.
        if not any(url in text for url in blocked) and "ERR_BLOCKED_BY_CLIENT" not in text:
            report.problems.append(f"console error: {text}")
    report.problems += [f"broken image: {src}" for src in info["broken"]]
    report.problems += [f"raw $$ in the visible text: {t!r}" for t in info["rawMath"]]
    report.problems += [f"untypeset math: {t!r}" for t in info["untypeset"]]
    report.problems += [f"MathJax error: {t!r}" for t in info["merror"]]
    report.problems += [f"undefined TeX macro (typeset in red): {t!r}" for t in info["undefinedMacros"]]

    external = 0
    for href in info["links"]:
        if not href.startswith(base):
            external += href.startswith("http")
            continue
        url, fragment = urldefrag(href)
        target = resolve_local(html_root, base, url)
        if target is None:
            report.problems.append(f"broken internal link: {href[len(base):]}")
        elif fragment and target.suffix == ".html" and unquote(fragment) not in anchors_of(target):
            report.problems.append(f"missing anchor: {href[len(base):]}")
    report.notes.append(
        f"{info['nImages']} images, {info['nMath']} math, {len(info['links'])} links ({external} external, not fetched)"
    )
    return report


# --------------------------------------------------------------------------- main


def pages_of(html_root: Path) -> list[Path]:
    return sorted(
        p for p in html_root.rglob("*.html")
        if not SKIP_DIRS.intersection(p.relative_to(html_root).parts[:-1])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="built book")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", CHROMIUM))
    args = parser.parse_args(argv)

    html_root = args.html.resolve()
    if not (html_root / "index.html").is_file():
        print(f"html-check: no built book at {html_root} (run `make book` first)", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"html-check: no Chromium at {args.chromium} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright  # imported late: a clear message above first

    args.screenshots.mkdir(parents=True, exist_ok=True)
    for old in args.screenshots.glob("*.png"):
        old.unlink()
    server, base = serve(html_root)
    reports: list[PageReport] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for page in pages_of(html_root):
                report = check_page(context, html_root, base, page, args.screenshots)
                reports.append(report)
                status = "FAIL" if report.problems else "ok  "
                print(f"{status} {report.page}  ({'; '.join(report.notes)})", flush=True)
                for problem in report.problems:
                    print(f"       - {problem}", flush=True)
            browser.close()
    finally:
        server.shutdown()

    failed = sum(bool(r.problems) for r in reports)
    print(f"screenshots: {args.screenshots}")
    print(f"html-check: {len(reports) - failed} passed, {failed} failed")
    return 1 if failed or not reports else 0


if __name__ == "__main__":
    sys.exit(main())
