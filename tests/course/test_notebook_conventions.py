"""The course's notebook conventions (CONTRIBUTING.md), checked on every lesson and solutions notebook."""

from __future__ import annotations

import re

import nbformat
import pytest

from course_lib.data import ROOT

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))
RUNTIME = re.compile(r"\*\*Measured runtime:\*\* (\d+) s on a 2-core CPU")
MACHINE_PATHS = re.compile(r"/work/|/tmp/|/root/|/home/")
CELL_CHARACTERS = 1200  # the per-cell budget of CONTRIBUTING.md
BUDGET = {"lesson": 120, "solutions": 60}  # seconds on the 2-core CPU (CONTRIBUTING.md)
# The same code runs up to ~1.3x slower on a busy or slower shared 2-core machine (lesson 04's slowest
# cell: 54 s on 2026-11-26, 77 s on 2026-12-01, identical code). The recorded runtime may exceed the
# budget by that much before this check fails; the README lists the lessons that are over budget.
MACHINE_SLACK = 1.3


def _runtime(nb) -> int:
    match = RUNTIME.search(nb.cells[0].source)
    assert match, (
        "the first cell must state '**Measured runtime:** N s on a 2-core CPU' "
        "(run course_lib.course.run_notebooks)"
    )
    return int(match.group(1))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.startswith(f"# {path.name[:2]} · "), "title must be '# NN · Name'"
    limit = BUDGET["lesson"] * MACHINE_SLACK
    assert _runtime(nb) <= limit, (
        f"{path.name} took {_runtime(nb)} s: the budget is {BUDGET['lesson']} s on 2 cores "
        f"(this check allows {limit:.0f} s for machine variance): shrink the experiment or ship a sweep"
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    dense = [
        f"cell {i} ({len(c.source)} characters)"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and len(c.source) > CELL_CHARACTERS
    ]
    assert not dense, (
        f"{path.name}: code cells over {CELL_CHARACTERS} characters: {dense}. One idea per cell: "
        "split the cell where the idea changes (CONTRIBUTING.md)"
    )
    assert all(c.get("outputs") is not None and c.execution_count for c in code), (
        "commit the notebook executed"
    )


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: p.name)
def test_no_machine_paths_in_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        for out in c.get("outputs", []):
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            found = MACHINE_PATHS.search(text)
            assert not found, f"an output shows a machine path ({found.group(0)}…): {text[:120]!r}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_runtime(path):
    assert _runtime(nbformat.read(path, as_version=4)) <= BUDGET["solutions"] * MACHINE_SLACK, (
        "a solutions notebook must run in 60 s"
    )
