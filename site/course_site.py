"""Sphinx extension of the course website: navigation, and the checks that make `make site` strict.

- the README is the home page: the navigation in site/toc.md is appended to it while reading;
- a progress bar shows its final line, not each of its updates;
- a lesson or solutions notebook with code cells that never ran is a warning (the site shows
  committed outputs and executes nothing: run `make notebooks` or `make execute` first);
- after the build every page is read back: a link or image to a page, file or anchor that does not
  exist, or a script, style sheet, font or image loaded from another host (the site must work
  offline), is a warning. `make site` turns warnings into errors.
"""

from __future__ import annotations

import json
import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sphinx.util import logging

logger = logging.getLogger(__name__)

SITE = Path(__file__).resolve().parent
TOC = SITE / "toc.md"
NOTEBOOK_FOLDERS = ("notebooks/", "solutions/", "exercises/")
EXECUTED_FOLDERS = ("notebooks/", "solutions/")  # exercises/ ship without outputs on purpose

# (tag, attribute) pairs that load a resource into the page, as opposed to <a href> links
RESOURCE_ATTRS = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
}


def append_navigation(app, docname: str, source: list[str]) -> None:
    """Append the hidden toctrees of site/toc.md to the home page (the README)."""
    if docname == app.config.root_doc:
        toc = TOC.read_text(encoding="utf-8")
        source[0] += "\n\n" + toc[toc.index("```{toctree}") :]


def warn_unexecuted(app, docname: str, source: list[str]) -> None:
    """Warn when a lesson or solutions notebook has code cells without an execution count."""
    if not docname.startswith(EXECUTED_FOLDERS):
        return
    cells = json.loads(source[0])["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    missing = sum(1 for c in code if c.get("execution_count") is None)
    if missing:
        logger.warning(
            "%d of %d code cells never ran, so the page would show no outputs: execute the "
            "notebook first (`make notebooks` or `make execute`)",
            missing,
            len(code),
            location=docname,
            type="course",
            subtype="unexecuted",
        )


def _final_lines(text: str) -> str:
    """What a terminal shows: each line keeps only what follows its last carriage return."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def collapse_progress(app, docname: str, source: list[str]) -> None:
    """Show a progress bar's final state, not each of its updates (in the page, not the file)."""
    if not docname.startswith(NOTEBOOK_FOLDERS):
        return
    notebook = json.loads(source[0])
    for cell in notebook["cells"]:
        merged: list[dict] = []
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream" and merged and merged[-1].get("name") == out["name"]:
                merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(out["text"])
            else:
                merged.append(out)
        for out in merged:
            if out["output_type"] == "stream":
                out["text"] = _final_lines("".join(out["text"]))
        if "outputs" in cell:
            cell["outputs"] = merged
    source[0] = json.dumps(notebook)


class _PageScan(HTMLParser):
    """Collect the ids a page defines, its links, and the resources it loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for res_tag, attr in RESOURCE_ATTRS:
            if tag == res_tag and attrs.get(attr):
                self.resources.append(attrs[attr])


def _scan(path: Path, cache: dict[Path, _PageScan]) -> _PageScan:
    if path not in cache:
        scan = _PageScan()
        scan.feed(path.read_text(encoding="utf-8"))
        cache[path] = scan
    return cache[path]


def _check_target(outdir: Path, page: Path, url: str, cache) -> str | None:
    """None when `url` (relative to `page`) exists in the built site, else what is missing."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None  # another host: not ours to check offline
    rel = unquote(parts.path)
    if rel:
        target_rel = posixpath.normpath(
            posixpath.join(page.parent.relative_to(outdir).as_posix(), rel)
        )
        if target_rel.startswith(".."):
            return f"{url} points outside the site"
        target = outdir / target_rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return f"{url}: no such file in the site"
    else:
        target = page
    if parts.fragment and target.suffix == ".html":
        if unquote(parts.fragment) not in _scan(target, cache).ids:
            return f"{url}: no anchor #{parts.fragment} in {target.relative_to(outdir).as_posix()}"
    return None


def write_home_redirect(app, exception) -> None:
    """index.html opens the home page (the README), so the folder can be served as it is."""
    if exception is not None or app.builder.format != "html":
        return
    home = app.config.root_doc + ".html"
    if home != "index.html":
        (Path(app.outdir) / "index.html").write_text(
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0; url={home}">'
            f'<title>Redirecting…</title></head><body><a href="{home}">{home}</a></body></html>\n',
            encoding="utf-8",
        )


def check_pages(app, exception) -> None:
    """Read every built page back: internal links and anchors exist, nothing loads from the net."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    cache: dict[Path, _PageScan] = {}
    pages = sorted(p for p in outdir.rglob("*.html") if "_static" not in p.parts)
    problems = 0
    for page in pages:
        scan = _scan(page, cache)
        where = page.relative_to(outdir).as_posix()
        for url in scan.resources:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                logger.warning(
                    "%s: loads %s from the network; the site must work offline (bundle it in "
                    "_static or turn the feature off in site/conf.py)",
                    where,
                    url,
                    type="course",
                    subtype="external",
                )
                problems += 1
            elif parts.scheme == "" and (missing := _check_target(outdir, page, url, cache)):
                logger.warning(
                    "%s: broken resource %s", where, missing, type="course", subtype="link"
                )
                problems += 1
        for url in scan.links:
            if urlsplit(url).scheme in ("mailto", "javascript", "data"):
                continue
            if missing := _check_target(outdir, page, url, cache):
                logger.warning("%s: broken link %s", where, missing, type="course", subtype="link")
                problems += 1
    logger.info("course_site: checked %d pages, %d problems", len(pages), problems)


def setup(app):
    app.connect("source-read", append_navigation)
    app.connect("source-read", warn_unexecuted)
    app.connect("source-read", collapse_progress)
    # after sphinx-mathjax-offline copies MathJax into _static (priority 500), so it is checked
    app.connect("build-finished", write_home_redirect, priority=800)
    app.connect("build-finished", check_pages, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
