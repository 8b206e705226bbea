"""The instructor's grading command: solutions pass, untouched exercises are 'not done', a broken
notebook is reported and does not stop the run, a wrong answer fails with the checker's diagnosis."""

import shutil

import nbformat
import pytest

from course_lib.course import grading
from course_lib.data import ROOT

CHAPTER = "02_data_preparation"
EXERCISES = ROOT / "exercises" / f"{CHAPTER}_exercises.ipynb"
SOLUTIONS = ROOT / "solutions" / f"{CHAPTER}_solutions.ipynb"


def _wrong_and_tampered(path):
    """A solution whose 02.1 'clean' forgets to unescape HTML entities and whose 02.1 check cell was
    edited to pass."""
    nb = nbformat.read(SOLUTIONS, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "ch02.check_clean(" in cell.source:
            cell.source = "print('✔ 02.1 clean text: passed')"
        elif cell.cell_type == "code" and "def clean" in cell.source:
            cell.source = cell.source.replace("html.unescape(text)", "text")
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    for student in ["ana", "ben", "cy", "dee"]:
        (folder / student).mkdir()
    shutil.copy(SOLUTIONS, folder / "ana" / SOLUTIONS.name)
    shutil.copy(EXERCISES, folder / "ben" / EXERCISES.name)
    (folder / "cy" / EXERCISES.name).write_text('{"cells": [', encoding="utf-8")
    _wrong_and_tampered(folder / "dee" / EXERCISES.name)
    grades = grading.grade_folder(folder, timeout=240)
    return folder, {g.student: g for g in grades}


def test_solutions_pass_every_check(graded):
    _, g = graded
    assert g["ana"].run == "ok", (
        f"the solutions notebook should run cleanly, got {g['ana'].run}: {g['ana'].detail}"
    )
    passed, total = g["ana"].score
    assert total >= 4 and passed == total, (
        f"solutions should pass all checks, got {g['ana'].exercises}"
    )


def test_untouched_exercises_are_not_done(graded):
    _, g = graded
    statuses = {s for s, _ in g["ben"].exercises.values()}
    assert statuses == {"not done"}, (
        f"untouched stubs should read 'not done', got {g['ben'].exercises}"
    )


def test_broken_notebook_is_reported_and_the_run_goes_on(graded):
    _, g = graded
    assert g["cy"].run == "unreadable" and "JSON" in g["cy"].detail, (
        f"got {g['cy'].run}: {g['cy'].detail}"
    )
    assert g["cy"].score == (0, g["ana"].score[1]), (
        "a broken notebook scores 0 of the chapter's checks"
    )


def test_wrong_answer_fails_even_with_a_tampered_check_cell(graded):
    _, g = graded
    status, message = g["dee"].exercises["02.1 clean text"]
    assert status == "failed", (
        f"the restored check cell should catch the missing unescaping, got {status}"
    )
    assert g["dee"].exercises["02.2 LSH candidate probability"][0] == "passed", (
        "other exercises still pass"
    )
    assert any("printed '✔ 02.1 clean text: passed'" in flag for flag in g["dee"].review), (
        f"the imitated pass line must be flagged for review, got {g['dee'].review}"
    )


def test_reports_written(graded):
    folder, g = graded
    table = (folder / "_grades" / "grades.md").read_text(encoding="utf-8")
    rows = (folder / "_grades" / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert all(name in table for name in ["ana", "ben", "cy", "dee"]), "every student gets a row"
    n_checks = g["ana"].score[1]
    assert len(rows) == 1 + 4 * n_checks, (
        f"expected a header and {n_checks} rows per student, got {len(rows)} lines"
    )


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="sub-folder per student"):
        grading.grade_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="positive number of seconds"):
        grading.grade_folder(tmp_path, timeout=0)


def test_unknown_notebook_is_reported(tmp_path):
    (tmp_path / "eve").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "eve" / "my_homework.ipynb")
    [g] = grading.grade_folder(tmp_path, timeout=30)
    assert g.run == "unknown" and "matches" in g.detail, f"got {g.run}: {g.detail}"


def test_a_course_in_a_private_folder_rules_out_user_isolation(tmp_path):
    """A clone inside a 0700 folder (what `mktemp -d` makes) cannot be entered by the sandbox
    user, so "user" isolation must be reported impossible, not fail inside the probe notebook."""
    from course_lib.course import sandbox

    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir(mode=0o700)
    shared.mkdir(mode=0o755)
    private.chmod(0o700)  # mkdir's mode is filtered by the umask
    shared.chmod(0o755)
    ids = (61000, 61000)  # any user id that owns neither folder
    assert sandbox.unenterable([private, shared], *ids) == [private]
