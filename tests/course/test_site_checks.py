"""The website's own checks (site/course_site.py), on tiny pages: no Sphinx build, no browser."""

import importlib.util
import json

import pytest

from course_lib.data import ROOT


@pytest.fixture(scope="module")
def course_site():
    spec = importlib.util.spec_from_file_location("course_site", ROOT / "site" / "course_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_bar_updates_collapse_to_the_last_one(course_site):
    text = "\rtrain:   0%|  | 0/9\rtrain: 100%|##| 9/9\nafter 9 steps\r\n"
    assert course_site._final_lines(text) == "train: 100%|##| 9/9\nafter 9 steps\n"


def test_collapse_merges_consecutive_streams_of_a_cell(course_site):
    stream = {"output_type": "stream", "name": "stderr"}
    cell = {
        "cell_type": "code",
        "outputs": [{**stream, "text": "\rbar 1/2"}, {**stream, "text": "\rbar 2/2\n"}],
    }
    source = [json.dumps({"cells": [cell]})]
    course_site.collapse_progress(None, "notebooks/01_x", source)
    (out,) = json.loads(source[0])["cells"][0]["outputs"]
    assert out["text"] == "bar 2/2\n"


def test_link_check_finds_missing_pages_and_anchors(course_site, tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "README.html").write_text('<h1 id="top">t</h1><a href="notebooks/a.html#s1">a</a>')
    (tmp_path / "notebooks" / "a.html").write_text('<section id="s1"></section>')
    page, cache = tmp_path / "README.html", {}

    def check(url):
        return course_site._check_target(tmp_path, page, url, cache)

    assert check("notebooks/a.html#s1") is None
    assert check("#top") is None
    assert check("https://arxiv.org/abs/2106.09685") is None  # other hosts are not checked
    assert "no anchor #s2" in check("notebooks/a.html#s2")
    assert "no such file" in check("notebooks/b.html")
    assert "outside the site" in check("../elsewhere.html")
