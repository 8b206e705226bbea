"""The course website (`make site`) in headless Chromium: home page, a chapter with its plots, search.

Pages are opened from disk (file://) with every host name unresolvable, as a reader without a
network would; a page that asked for anything but its own files fails the test. Screenshots of
the home page and the chapter are kept in site/_build/browser-tests/.
"""

from __future__ import annotations

import json
import time

import pytest

from course_lib.data import ROOT

from .conftest import ARTIFACTS

SITE = ROOT / "site" / "_build" / "html"
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

JS_NETWORK = """
return performance.getEntriesByType('resource').map(e => e.name)
  .filter(n => !n.startsWith('file:') && !n.startsWith('data:') && !n.startsWith('blob:'));
"""


def _images_in(notebook) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    outputs = [o for c in cells for o in c.get("outputs", [])]
    return sum(1 for o in outputs if any(k.startswith("image/") for k in o.get("data", {})))


@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no website in {SITE}: build it with `make site` (`make test-browser` does)")
    return SITE


def _open(browser, page, wait_for: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    WebDriverWait(browser, timeout).until(
        lambda b: (
            b.execute_script("return document.readyState") == "complete"
            and b.find_elements("css selector", wait_for)
        ),
        message=f"{page.name}: no {wait_for!r} after {timeout} s",
    )


def _offline(browser) -> None:
    asked = browser.execute_script(JS_NETWORK)
    assert not asked, f"{browser.current_url} loads from the network: {asked}"


def _screenshot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / name))


@pytest.mark.timeout(120)
def test_home_page_is_the_readme_chapter_table(site, browser):
    _open(browser, site / "index.html", "article table")  # index.html redirects to the README
    assert browser.current_url.endswith("/README.html"), browser.current_url
    links = browser.execute_script(
        "return [...document.querySelectorAll('article table a')].map(a => a.getAttribute('href'))"
    )
    for lesson in LESSONS:
        assert f"notebooks/{lesson.stem}.html" in links, (
            f"the chapter table has no link to {lesson.name}"
        )
    nav = browser.execute_script(
        "return [...document.querySelectorAll('.bd-sidebar-primary p.caption')]"
        ".map(p => [p.textContent.trim(), p.nextElementSibling.querySelectorAll('a').length])"
    )
    assert ["Chapters", len(LESSONS)] in nav, f"no 'Chapters' navigation with every lesson: {nav}"
    assert browser.find_elements("css selector", "button.search-button-field, form.bd-search")
    _offline(browser)
    _screenshot(browser, "home.png")


@pytest.mark.timeout(120)
def test_chapter_renders_outputs_plots_and_math(site, browser):
    lesson = next((nb for nb in LESSONS if _images_in(nb)), None)
    assert lesson is not None, "no lesson has a plot in its committed outputs"
    _open(browser, site / "notebooks" / f"{lesson.stem}.html", "article .cell_output")
    deadline = time.monotonic() + 20  # images decode and MathJax typesets after the load event
    while True:
        state = browser.execute_script(
            "const imgs = [...document.querySelectorAll('article .cell_output img')];"
            "return {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0)"
            ".length, math: document.querySelectorAll('article mjx-container').length,"
            " raw_math: document.querySelectorAll('article .math').length,"
            " outputs: document.querySelectorAll('article .cell_output').length}"
        )
        settled = state["loaded"] == state["images"] and state["math"] >= state["raw_math"]
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expected = _images_in(lesson)
    assert state["images"] == expected, f"{lesson.name}: {expected} plots in the notebook, {state}"
    assert state["loaded"] == expected, f"{lesson.name}: a plot did not load: {state}"
    assert state["math"] >= state["raw_math"] > 0, (
        f"{lesson.name}: MathJax did not typeset: {state}"
    )
    assert state["outputs"] > expected, f"{lesson.name}: the text outputs are missing: {state}"
    browser.execute_script("document.querySelector('article .cell_output img').scrollIntoView()")
    _offline(browser)
    _screenshot(browser, "chapter.png")


@pytest.mark.timeout(120)
def test_search_finds_the_lora_chapter(site, browser):
    _open(browser, site / "search.html", "input[name='q']")
    browser.get((site / "search.html").as_uri() + "?q=LoRA")
    from selenium.webdriver.support.ui import WebDriverWait

    hits = WebDriverWait(browser, 30).until(
        lambda b: b.execute_script(
            "return [...document.querySelectorAll('#search-results a')].map(a => a.href)"
        ),
        message="the search page found nothing for 'LoRA'",
    )
    assert any("notebooks/04_lora.html" in h for h in hits), hits[:10]
    _offline(browser)
