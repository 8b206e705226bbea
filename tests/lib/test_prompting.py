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


# --- few-shot scoring: verbalizers, calibration, the multi-token strawman (chapter 01) ----------

import torch  # noqa: E402

from course_lib.data import load_jsonl  # noqa: E402
from course_lib.prompting import (  # noqa: E402
    CONTENT_FREE,
    VERBALIZER,
    calibrate,
    few_shot_predict,
    label_logprobs,
    next_token_logprobs,
    pick_shots,
)


def test_verbalizer_prompt_shows_the_words_not_the_labels():
    p = few_shot_prompt(SHOTS, "Slow service.", VERBALIZER)
    assert "Sentiment: bad\n\n" in p and "Sentiment: good\n\n" in p and "negative" not in p
    with pytest.raises(ValueError, match="exactly the labels"):
        few_shot_prompt(SHOTS, "x", {"positive": "good"})


def test_pick_shots_is_balanced_seeded_and_shuffled():
    rows = load_jsonl("reviews_train")
    a, b = pick_shots(rows, 2, seed=0), pick_shots(rows, 2, seed=0)
    assert a == b and a != pick_shots(rows, 2, seed=1)
    assert sorted(r["label"] for r in a) == sorted(["negative", "neutral", "positive"] * 2)
    with pytest.raises(ValueError, match="need 5"):
        pick_shots(rows[:3], 5, seed=0)


def test_verbalizers_are_single_tokens_and_long_words_are_refused(base_model, tokenizer):
    prompts = [few_shot_prompt(SHOTS, "Lovely staff.", VERBALIZER), "Review: x\nSentiment:"]
    words = [VERBALIZER[k] for k in ("negative", "neutral", "positive")]
    lp = next_token_logprobs(base_model, tokenizer, prompts, words)
    assert lp.shape == (2, 3) and bool((lp < 0).all())
    one = next_token_logprobs(base_model, tokenizer, prompts[:1], words)  # no padding
    assert torch.allclose(one, lp[:1], atol=1e-4), "right padding must not change the scores"
    with pytest.raises(ValueError, match="tokens"):
        next_token_logprobs(base_model, tokenizer, prompts, ["positive"])


def test_calibration_divides_out_the_prompt_prior():
    prior = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    scores = torch.log(torch.tensor([[0.6, 0.25, 0.15], [0.8, 0.1, 0.1]]))
    cal = calibrate(scores, prior)
    assert cal.argmax(-1).tolist() == [2, 0], "a label the prompt favours loses its head start"
    assert torch.allclose(calibrate(prior, prior), torch.zeros(1, 3), atol=1e-6)
    with pytest.raises(ValueError, match="content-free"):
        calibrate(scores, prior[:, :2])


def test_label_logprobs_gives_sums_and_lengths(base_model, tokenizer):
    sums, lengths = label_logprobs(base_model, tokenizer, ["Review: ok\nSentiment:"])
    assert sums.shape == (1, 3) and lengths.tolist() == [
        len(tokenizer(" " + w, add_special_tokens=False)["input_ids"])
        for w in ("negative", "neutral", "positive")
    ]
    preds = few_shot_predict(base_model, tokenizer, SHOTS, ["Lovely staff."])
    assert preds[0] in ("negative", "neutral", "positive") and len(CONTENT_FREE) == 3
