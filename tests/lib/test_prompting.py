"""Tests of course_lib.prompting: the review, few-shot and retrieval prompts of chapter 01."""

from __future__ import annotations

import pytest

from course_lib.prompting import few_shot_prompt, retrieval_prompt, review_prompt

SHOTS = [
    {"text": "The soup was cold.", "label": "negative"},
    {"text": "Lovely staff.", "label": "positive"},
]


def test_review_prompt_ends_where_the_label_goes():
    p = review_prompt("Great pie.")
    assert p == "Review: Great pie.\nSentiment:", p
    assert not p.endswith(" "), "the label's leading space belongs to the label's token"


def test_few_shot_prompt_solves_the_examples_then_asks():
    p = few_shot_prompt(SHOTS, "Slow service.")
    assert p.startswith("Review: The soup was cold.\nSentiment: negative\n\n"), p
    assert p.count("Sentiment:") == 3, "two solved examples and the query"
    assert p.endswith(review_prompt("Slow service.")), "the query comes last, waiting for its label"
    assert p.index("negative") < p.index("positive"), "the examples keep their order"


def test_zero_shot_is_the_plain_review_prompt():
    assert few_shot_prompt([], "Fine.") == review_prompt("Fine.")


def test_retrieval_prompt_puts_the_facts_first():
    p = retrieval_prompt(["Yara Marsh lives in Fernwick.", "She loves pie."], "Yara Marsh loves")
    assert p == "Yara Marsh lives in Fernwick. She loves pie. Yara Marsh loves", p


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: review_prompt(""), ValueError, "non-empty"),
        (lambda: review_prompt("   "), ValueError, "non-empty"),
        (lambda: review_prompt(None), ValueError, "non-empty"),
        (lambda: few_shot_prompt([{"text": "ok", "label": "good"}], "x"), ValueError, "label"),
        (lambda: few_shot_prompt([{"text": "ok"}], "x"), ValueError, "label"),
        (lambda: few_shot_prompt(SHOTS, ""), ValueError, "non-empty"),
        (lambda: retrieval_prompt("one fact.", "probe"), TypeError, "list of sentences"),
    ],
)
def test_bad_inputs_are_explained(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), f"the message should mention {words!r}: {info.value}"
