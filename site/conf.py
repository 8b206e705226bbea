"""Sphinx configuration of the course website (`make site` -> site/_build/html/index.html).

The source folder is the repository root, so every link in README.md, GLOSSARY.md, QUESTIONS.md
and the notebooks works on the site as it does on a code host. Only the pages in
`include_patterns` are read; the notebooks are rendered with their committed outputs and never
executed (MyST-NB, `nb_execution_mode = "off"`). The build is offline: the network is blocked
while it runs, no intersphinx, MathJax is bundled (sphinx-mathjax-offline), the theme ships its
own fonts and scripts, and site/course_site.py fails the build on any page that would load
something from another host, on broken internal links, and on lessons that were never executed.
"""

from __future__ import annotations

import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent
sys.path.insert(0, str(SITE))

from course_lib.course.netguard import block_network  # noqa: E402

block_network()  # anything in the build that tries to reach another host fails loudly

project = "Fine-tuning large language models — a hands-on course"
author = "the course authors"
copyright = "the course authors"
language = "en"

extensions = [
    "myst_nb",  # Markdown (MyST) and notebooks
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static instead of loaded from a CDN
    "course_site",  # site/course_site.py: navigation, link and offline checks
]

# ---- what is read --------------------------------------------------------------------------
root_doc = "README"  # the README (its chapter table) is the home page; index.html redirects there
include_patterns = [
    "README.md",
    "GLOSSARY.md",
    "QUESTIONS.md",
    "QUESTIONS.*.md",  # other languages, e.g. QUESTIONS.zh.md
    "OVERCLAIMS.md",
    "CONTRIBUTING.md",
    "notebooks/*.ipynb",
    "exercises/*.ipynb",
    "solutions/*.ipynb",
]
# prune every other top-level folder (.venv, data, submissions, ...) so the walk stays fast
exclude_patterns = [
    p.name
    for p in ROOT.iterdir()
    if p.is_dir() and p.name not in {"notebooks", "exercises", "solutions"}
] + ["**/.ipynb_checkpoints"]
nitpicky = True

# ---- MyST and notebooks ----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README.md#chapters and friends become real anchors
nb_execution_mode = "off"  # show the committed outputs; execution is `make execute`'s job
nb_merge_streams = True  # consecutive stdout (stderr) pieces of a cell become one block
nb_ipywidgets_js = {}  # never load the widget manager from a CDN
suppress_warnings: list[str] = []  # none: every warning fails `make site`

# ---- HTML ----------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "Fine-tuning LLMs: a hands-on course"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,  # the .ipynb of each page, from the site itself
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "launch_buttons": {},
    "navigation_with_keys": False,
    "navbar_persistent": [],  # the search field lives in the sidebar; no second one in a top bar
}
html_last_updated_fmt = None
html_show_sphinx = False
html_copy_source = True  # the download button serves the notebook from _sources
