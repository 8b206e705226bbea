"""course_lib.build.chat_model: the shipped chat model, its record and card, and the command that
builds it."""

import json

import pytest
import torch

from course_lib import models, sft
from course_lib.build import chat_model
from course_lib.data import load_jsonl
from course_lib.models import load_model
from course_lib.training import TrainConfig, train


@pytest.fixture(scope="module")
def info():
    return json.loads((models.CHAT_MODEL_DIR / "build_info.json").read_text())


def test_shipped_model_matches_its_build_record(info):
    model, tok = load_model("chat")
    scores = chat_model.skill_scores(model, tok, load_jsonl("instructions_test"))
    for skill, s in info["test"].items():
        assert abs(scores[skill]["em"] - s["em"]) <= 0.02, (
            f"data/chat_model scores EM {scores[skill]['em']:.3f} on {skill}, build_info.json says "
            f"{s['em']}: the checkpoint and its record disagree; rerun `make chat-model`"
        )


def test_shipped_model_is_worth_evaluating(info):
    """Issue 14: overall EM >= 0.5 on instructions_test, every skill clearly above zero."""
    test = info["test"]
    assert test["all"]["em"] >= 0.5, f"overall EM {test['all']['em']} < 0.5"
    low = {k: v["em"] for k, v in test.items() if v["em"] < 0.2}
    assert not low, f"skills below EM 0.2: {low}"
    assert all(v["lo"] <= v["em"] <= v["hi"] for v in test.values())


def test_model_card_quotes_the_record(info):
    card = (models.CHAT_MODEL_DIR / "README.md").read_text()
    assert card == chat_model.model_card(info), "README.md is stale: rerun `make chat-model`"
    assert f"{info['test']['all']['em']:.3f}" in card


class _Enough(Exception):
    pass


def test_first_steps_reproduce_the_recorded_losses(info):
    """The recipe (data order, packing, AdamW, schedule, clipping) is the one that built the model:
    its first steps, replayed with the full run's schedule, give the recorded losses."""
    torch.manual_seed(info["seed"])
    model, tok = load_model("causal")
    n, losses = len(info["first_losses"]), []

    def loss_fn(m, batch):
        loss = m(**batch).loss
        losses.append(loss.item())
        return loss

    def stop(m, step):
        if step == n:
            raise _Enough

    batches = sft.packed_batches(
        tok, chat_model.training_records(), rows_per_batch=info["rows_per_batch"], seed=info["seed"]
    )
    with pytest.raises(_Enough):
        train(
            model,
            batches,
            TrainConfig(lr=info["lr"], max_steps=info["steps"], progress=False),
            loss_fn=loss_fn,
            on_step=stop,
        )
    assert torch.allclose(torch.tensor(losses), torch.tensor(info["first_losses"]), atol=2e-3), (
        f"the first {n} steps give {[round(x, 5) for x in losses]}, the build recorded "
        f"{info['first_losses']}: the recipe (data, order, optimizer, schedule) has changed"
    )


def test_build_is_deterministic(tmp_path):
    """Two builds of the same recipe (2 steps) write byte-identical weights."""
    a = chat_model.build(tmp_path / "a", steps=2)
    b = chat_model.build(tmp_path / "b", steps=2)
    assert a["first_losses"] == b["first_losses"]
    bytes_a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert bytes_a == (tmp_path / "b" / "model.safetensors").read_bytes(), (
        "the same seed and recipe should rebuild the same weights"
    )
    assert (tmp_path / "a" / "README.md").read_text().startswith("# course chat model")
    assert isinstance(load_model("chat", tmp_path / "a")[0], torch.nn.Module)


def test_missing_checkpoint_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="make chat-model"):
        load_model("chat", tmp_path)
