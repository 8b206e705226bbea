"""course_lib.build.rlhf_models: chapter 09's shipped SFT policy and reward model, and the command
that builds them."""

import json

import pytest
import torch

from course_lib import models
from course_lib import reward_model as rm
from course_lib.build import rlhf_models
from course_lib.data import load_jsonl
from course_lib.generation import generate
from course_lib.models import load_model


@pytest.fixture(scope="module")
def info():
    return json.loads((models.RLHF_DIR / "build_info.json").read_text())


def test_shipped_reward_model_matches_its_build_record(info, tokenizer):
    model, _ = load_model("trained_reward")
    test = load_jsonl("preferences_test")
    acc = rm.pair_accuracy(model, tokenizer, test, "labels")
    assert abs(acc - info["rm_accuracy_labels"]) < 0.01, (
        f"data/rlhf/reward_model orders {acc:.3f} of the test pairs like the labels, build_info says "
        f"{info['rm_accuracy_labels']}: the checkpoint and its record disagree; rerun `make rlhf-models`"
    )
    assert acc > 0.6, "the shipped reward model should beat a coin clearly on held-out pairs"


def test_shipped_sft_policy_answers_in_the_chat_format(tokenizer):
    replies = generate(
        load_model("sft_policy")[0],
        tokenizer,
        ["What is 2 plus 3?", "Where does Ada Crane live?"],
        chat=True,
        max_new_tokens=12,
    )
    assert all(r and "<|" not in r for r in replies), (
        f"the SFT policy should reply with plain text, got {replies}"
    )


def test_build_runs_end_to_end(tmp_path):
    info = rlhf_models.build(tmp_path, sft_steps=2, rm_steps=2)
    assert (tmp_path / "sft_policy" / "config.json").exists() and (
        tmp_path / "reward_model" / "config.json"
    ).exists()
    assert info["rm_steps"] == 2 and len(info["rm_first_losses"]) == 2
    assert json.loads((tmp_path / "build_info.json").read_text()) == info
    assert isinstance(load_model("trained_reward", tmp_path / "reward_model")[0], torch.nn.Module)


def test_missing_checkpoint_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="make rlhf-models"):
        load_model("sft_policy", tmp_path)
    with pytest.raises(ValueError, match="chosen"):
        rlhf_models.chosen_as_chat([{"prompt": "x"}])


def test_reward_model_loop_reproduces_the_recorded_first_losses(info, tokenizer):
    model, _ = load_model("reward", models.RLHF_DIR / "sft_policy", seed=info["seed"])
    pairs = load_jsonl("preferences_train")
    losses = rm.train_reward_model(
        model, tokenizer, pairs, steps=8, lr=info["lr"], seed=info["seed"]
    )
    assert torch.allclose(torch.tensor(losses), torch.tensor(info["rm_first_losses"]), atol=2e-3), (
        f"the first 8 steps give {[round(x, 5) for x in losses]}, the build recorded "
        f"{info['rm_first_losses']}: the loop (data order, AdamW, clipping, schedule) has changed"
    )


def test_train_reward_model_learns_a_small_set(tokenizer):
    model, _ = load_model("reward")
    pairs = load_jsonl("preferences_train")[:16]
    losses = rm.train_reward_model(model, tokenizer, pairs, steps=25, lr=3e-3, batch_size=16)
    assert len(losses) == 25, "one loss per step"
    assert sum(losses[-5:]) / 5 < losses[0] - 0.2, (
        f"25 steps on the same 16 pairs should fit them (loss {losses[0]:.3f} -> "
        f"{losses[-1]:.3f}); sign flipped?"
    )
    with pytest.raises(ValueError, match="steps"):
        rm.train_reward_model(model, tokenizer, pairs, steps=0)


def test_chosen_as_chat_can_filter_demonstrations_by_gold():
    pairs = load_jsonl("preferences_train")
    every, kept = rlhf_models.chosen_as_chat(pairs), rlhf_models.chosen_as_chat(pairs, min_gold=0)
    assert len(every) == len(pairs) and 0 < len(kept) < len(every)
    good = {r["chosen"] for r in pairs if r["gold_chosen"] >= 0}
    assert all(rec["messages"][1]["content"] in good for rec in kept)
    with pytest.raises(ValueError, match="gold_chosen"):
        rlhf_models.chosen_as_chat([{"prompt": "a", "chosen": "b"}], min_gold=0)
