"""course_lib.models.load_model: one loader for every model of the course, (model, tokenizer) always."""

import pytest
import torch

from course_lib import models
from course_lib.models import load_model


@pytest.mark.parametrize(
    "kind, outputs",
    [
        ("causal", None),
        ("classifier", 3),
        ("reward", 1),
        ("sft_policy", None),
        ("trained_reward", 1),
    ],
)
def test_every_kind_gives_an_eval_model_and_the_base_tokenizer(kind, outputs, tokenizer):
    model, tok = load_model(kind)
    assert not model.training, f"load_model({kind!r}) should return the model in eval mode"
    assert tok.get_vocab() == tokenizer.get_vocab(), "every course model shares the base tokenizer"
    if outputs is not None:
        assert model.config.num_labels == outputs, f"{kind} should have {outputs} outputs"


def test_classifier_head_is_seeded_and_labelled():
    a, _ = load_model("classifier", seed=1)
    b, _ = load_model("classifier", seed=1)
    c, _ = load_model("classifier", seed=2)
    assert torch.equal(a.score.weight, b.score.weight), "the same seed must give the same head"
    assert not torch.equal(a.score.weight, c.score.weight), "the seed initialises the head"
    assert a.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert load_model("classifier", num_labels=2)[0].config.num_labels == 2


def test_trained_reward_model_is_not_a_fresh_head():
    trained, _ = load_model("trained_reward")
    fresh, _ = load_model("reward", models.RLHF_DIR / "sft_policy")
    assert not torch.equal(trained.score.weight, fresh.score.weight), "the shipped head is loaded"


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model kind 'gpt'.*causal"):
        load_model("gpt")
    with pytest.raises(TypeError, match="no option.*seed"):
        load_model("causal", seed=0)
    with pytest.raises(ValueError, match="num_labels"):
        load_model("classifier", num_labels=1)
    with pytest.raises(FileNotFoundError, match="config.json missing.*save a model there"):
        load_model("causal", tmp_path)
    with pytest.raises(FileNotFoundError, match="make rlhf-models"):
        load_model("sft_policy", tmp_path)
    with pytest.raises(ValueError, match="quant_type"):
        load_model("4bit", quant_type="int4")
    with pytest.raises(ValueError, match="compute_dtype"):
        models.bnb_config(compute_dtype=torch.int8)
