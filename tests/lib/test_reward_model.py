"""course_lib.reward_model: the Bradley–Terry loss (= TRL RewardTrainer's), batching and scoring."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import reward_model as rm
from course_lib.data import load_jsonl
from course_lib.models import load_model


@pytest.fixture(scope="module")
def model_and_tok(tokenizer):
    return load_model("reward")[0], tokenizer


def test_bradley_terry_values():
    loss = rm.bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (-math.log(1 / (1 + math.exp(-2))) + math.log(2)) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6), (
        f"expected mean −log σ(r_c − r_r) = {expected:.4f}"
    )
    swapped = rm.bradley_terry_loss(torch.tensor([0.0]), torch.tensor([2.0]))
    assert swapped > loss, (
        "ranking the rejected response higher must cost more (chosen and rejected swapped?)"
    )


def test_bradley_terry_equals_trl_formula():
    rc, rr = torch.randn(8), torch.randn(8)
    trl = -F.logsigmoid(rc - rr).mean()  # trl.trainer.reward_trainer.RewardTrainer.compute_loss
    assert torch.allclose(rm.bradley_terry_loss(rc, rr), trl), (
        "the Bradley–Terry loss should equal TRL's"
    )


def test_scores_ignore_padding(model_and_tok):
    model, tok = model_and_tok
    both = rm.score(
        model,
        tok,
        ["What is 2 plus 3?", "Where does Ada Crane live?"],
        ["5.", "Sure, happy to help! Redcliff."],
    )
    alone = rm.score(model, tok, ["What is 2 plus 3?"], ["5."])
    assert both.shape == (2,), f"one scalar per pair expected, got shape {tuple(both.shape)}"
    assert torch.allclose(both[0], alone[0], atol=1e-4), (
        "padding changed the score: the head must read the last real token"
    )


def test_pair_batches_and_loss(model_and_tok):
    model, tok = model_and_tok
    records = load_jsonl("preferences_train")[:8]
    batch = next(iter(rm.pair_batches(tok, records, batch_size=4)))
    assert set(batch) == {"chosen", "rejected"} and batch["chosen"]["input_ids"].shape[0] == 4
    loss = rm.pair_loss(model, batch)
    loss.backward()
    assert loss.item() > 0 and model.score.weight.grad is not None, (
        "the loss should train the reward head"
    )


def test_pair_accuracy_modes(model_and_tok):
    model, tok = model_and_tok
    records = load_jsonl("preferences_test")[:16]
    labels, gold = (
        rm.pair_accuracy(model, tok, records),
        rm.pair_accuracy(model, tok, records, against="gold"),
    )
    assert 0 <= labels <= 1 and 0 <= gold <= 1
    noisy = sum(r["gold_chosen"] < r["gold_rejected"] for r in records)
    assert noisy == 0 or labels != gold, (
        "accuracy against the labels and against gold must differ on noisy pairs"
    )


def test_bad_input(model_and_tok):
    model, tok = model_and_tok
    with pytest.raises(ValueError, match="same shape"):
        rm.bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="equally many"):
        rm.score(model, tok, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="batch_size"):
        rm.pair_batches(tok, load_jsonl("preferences_test")[:2], batch_size=5)
    with pytest.raises(ValueError, match="against"):
        rm.pair_accuracy(model, tok, load_jsonl("preferences_test")[:2], against="truth")
