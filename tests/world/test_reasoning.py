"""Chained arithmetic with the working shown (course_lib.world.reasoning): generator and verifier."""

from __future__ import annotations

import pytest

from course_lib.world import reasoning


def test_worked_answers_are_correct_and_valid():
    for q in reasoning.questions(50, seed=3, steps=3):
        answer = reasoning.worked_answer(q)
        assert reasoning.is_correct(q, answer) and reasoning.working_is_valid(q, answer)
        assert reasoning.solve(q) >= 0


def test_verifier_reads_the_final_answer_only():
    q = "What is 7 plus 5 minus 3?"
    assert reasoning.solve(q) == 9
    assert reasoning.is_correct(q, "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9.")
    assert not reasoning.working_is_valid(q, "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9.")
    assert not reasoning.is_correct(q, "7 plus 5 is 12. 12 minus 3 is 9.")
    assert not reasoning.is_correct(q, "The answer is 8.")


def test_questions_are_seeded_and_distinct():
    a, b = reasoning.questions(30, seed=1), reasoning.questions(30, seed=1)
    assert a == b and len(set(a)) == 30 and a != reasoning.questions(30, seed=2)
    with pytest.raises(ValueError, match="chained"):
        reasoning.parse("What is 3 times 4?")


def test_exclude_keeps_held_out_questions_out():
    held = reasoning.questions(100, seed=99)
    train = reasoning.questions(400, seed=1, exclude=held)
    assert not set(held) & set(train) and len(train) == 400
    assert all(
        r["messages"][0]["content"] not in held for r in reasoning.records(50, 1, exclude=held)
    )


def test_fully_correct_needs_the_answer_and_every_step():
    q = "What is 7 plus 5 minus 3?"
    assert reasoning.fully_correct(q, reasoning.worked_answer(q))
    lucky = "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9."  # right answer, wrong first step
    assert reasoning.is_correct(q, lucky) and not reasoning.fully_correct(q, lucky)
    assert not reasoning.fully_correct(q, "7 plus 5 is 12. 12 minus 3 is 9. The answer is 8.")
