"""Judges: verdict log-odds equal an unpadded forward, swap-and-average cancels position bias,
the constructed bias pairs are ordered by the gold reward, bad input is refused."""

from __future__ import annotations

import pytest
import torch

from course_lib import judges
from course_lib.data import load_jsonl
from course_lib.world.preferences import gold_reward


@pytest.fixture(scope="module")
def smollm2():
    from course_lib.models import load_model

    return load_model("smollm2")


def test_prompts_use_the_chat_template(smollm2):
    _, tok = smollm2
    p = judges.pairwise_prompt(tok, "What is 2 plus 3?", "5.", "6.")
    assert p.startswith("<|im_start|>system\n" + judges.JUDGE_SYSTEM)
    assert p.endswith("<|im_start|>assistant\n") and "Answer A: 5.\nAnswer B: 6." in p
    ref = judges.pointwise_prompt(tok, "What is 2 plus 3?", "5.", reference="5")
    assert "The correct answer is 5." in ref and "yes or no" in ref


def test_verdict_logodds_equal_one_unpadded_forward(smollm2):
    model, tok = smollm2
    prompts = [
        judges.pairwise_prompt(tok, "What is 2 plus 3?", "5.", "6."),
        judges.pairwise_prompt(
            tok, "Where does Jonas Frost live?", "Sure, happy to help! " * 4, "Oakhollow."
        ),
    ]
    batched = judges.verdict_logodds(model, tok, prompts, ("A", "B"))
    a, b = (
        tok("A", add_special_tokens=False)["input_ids"][0],
        tok("B", add_special_tokens=False)["input_ids"][0],
    )
    for i, p in enumerate(prompts):
        ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
        assert batched[i].item() == pytest.approx((logp[a] - logp[b]).item(), abs=1e-4)


def test_verdict_words_must_be_one_token(smollm2):
    model, tok = smollm2
    with pytest.raises(ValueError, match="one"):
        judges.verdict_logodds(model, tok, ["x"], ("Absolutely", "B"))
    with pytest.raises(ValueError, match="non-empty"):
        judges.verdict_logodds(model, tok, "one string", ("A", "B"))


def test_swap_and_average_cancels_a_constant_pull():
    quality = torch.tensor([1.0, -2.0, 0.5])  # x's advantage over y
    ab, ba = 3.0 + quality, 3.0 - quality  # a judge that adds 3 to whatever is shown first
    assert torch.allclose(judges.swap_and_average(ab, ba), quality)
    bias = judges.position_bias(ab, ba)
    assert bias["p_first"] == 1.0 and bias["flip_rate"] == 1.0
    fair = judges.position_bias(quality, -quality)
    assert fair["flip_rate"] == 0.0 and fair["p_first"] == 0.5
    with pytest.raises(ValueError, match="same pairs"):
        judges.swap_and_average(ab, ba[:2])


def test_gold_pairs_follow_the_gold_reward():
    records = load_jsonl("preferences_test")[:50]
    pairs = judges.gold_pairs(records)
    for r, p in zip(records, pairs):
        assert p["x_better"] == (
            gold_reward(r["prompt"], r["chosen"]) > gold_reward(r["prompt"], r["rejected"])
        )
    assert 0.6 < sum(p["x_better"] for p in pairs) / len(pairs) < 1.0  # noisy labels


@pytest.mark.parametrize("kind", judges.BIAS_KINDS)
def test_bias_pairs_are_worse_in_x_and_deterministic(kind):
    pairs = judges.bias_pairs(kind, 30, seed=1)
    assert len(pairs) == 30 and pairs == judges.bias_pairs(kind, 30, seed=1)
    assert pairs != judges.bias_pairs(kind, 30, seed=2)
    for p in pairs:
        assert gold_reward(p["question"], p["x"]) < gold_reward(p["question"], p["y"])
        assert not p["x_better"]
        if kind == "verbosity":
            assert p["x"].startswith(p["y"]) and len(p["x"]) > len(p["y"]) + 100
    with pytest.raises(ValueError, match="kind"):
        judges.bias_pairs("length", 3)


def test_agreement():
    pairs = [{"x_better": True}, {"x_better": False}, {"x_better": True}]
    assert judges.agreement([True, True, False], pairs) == [1, 0, 0]
    with pytest.raises(ValueError, match="verdicts"):
        judges.agreement([True], pairs)
