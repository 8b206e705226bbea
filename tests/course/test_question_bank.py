"""QUESTIONS.md is generated from the solution notebooks' interview questions and kept in sync."""

import nbformat
import pytest

from course_lib.course import question_bank
from course_lib.course.exercises import solution_notebooks


def test_question_bank_in_sync():
    assert question_bank.BANK_PATH.exists(), "QUESTIONS.md is missing: run `make exercises`"
    assert question_bank.BANK_PATH.read_text(encoding="utf-8") == question_bank.render(), (
        "QUESTIONS.md is stale: run `make exercises` (edit the solution notebooks, never QUESTIONS.md)"
    )


@pytest.mark.parametrize(
    "path", solution_notebooks(question_bank.SOLUTIONS_DIR), ids=lambda p: p.name
)
def test_every_chapter_has_answered_interview_questions(path):
    pairs = question_bank.interview_questions(path)
    assert len(pairs) >= 3, (
        f"{path.name}: expected at least 3 interview questions, found {len(pairs)}"
    )
    assert all(len(answer) > 80 for _, answer in pairs), f"{path.name}: an answer is nearly empty"


def test_question_without_answer_is_an_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Interview questions\n\n**Q1. Why?**\n\nBecause.")]
    path = tmp_path / "99_x_solutions.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="Q1 has no answer"):
        question_bank.interview_questions(path)
