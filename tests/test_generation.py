"""course_lib.generation: top-p filtering and temperature equal transformers' warpers; entropy; distinct share."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from course_lib import generation


def test_top_p_equals_transformers():
    g = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9, 0.99, 1.0):
        logits = torch.randn(4, 60, generator=g) * 2
        ours = generation.top_p_filter(logits, p)
        theirs = TopPLogitsWarper(p)(None, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), (
            f"different nucleus at top_p={p}"
        )


def test_top_token_always_kept():
    logits = torch.tensor([[9.0, 0.0, 0.0]])
    kept = generation.top_p_filter(logits, 0.5)
    assert torch.isfinite(kept[0, 0]) and torch.isinf(kept[0, 1:]).all(), (
        "only the dominant top token stays"
    )


def test_sampling_probs_temperature_first():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 40, generator=g)
    hf = TopPLogitsWarper(0.8)(None, TemperatureLogitsWarper(0.6)(None, logits.clone())).softmax(-1)
    ours = generation.sampling_probs(logits, 0.6, 0.8)
    assert torch.allclose(ours, hf, atol=1e-6), "temperature, then top-p, then softmax"
    assert torch.allclose(ours.sum(-1), torch.ones(2)), "probabilities must sum to one"


def test_entropy_and_distinct():
    assert generation.entropy_bits(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(1.0)
    assert generation.entropy_bits(torch.tensor([1.0, 0.0])).item() == 0.0
    assert generation.distinct_share([["a", "a"], ["a", "b"]]) == pytest.approx(0.75)


def test_bad_input():
    with pytest.raises(ValueError, match="top_p"):
        generation.top_p_filter(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        generation.sampling_probs(torch.zeros(3), 0.0)
    with pytest.raises(TypeError):
        generation.top_p_filter([1.0, 2.0], 0.5)
    with pytest.raises(ValueError):
        generation.distinct_share(["abc"])
