"""Tests of course_lib.forgetting: replay mixing, the diagonal Fisher and the EWC penalty."""

from __future__ import annotations

import pytest
import torch

from course_lib.forgetting import ewc_loss, ewc_penalty, fisher_diagonal, replay_mix


def batches(n: int, size: int = 2, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(0, 40, (size, 6), generator=g)
        out.append({"input_ids": x, "labels": x.clone()})
    return out


# --- replay_mix ---------------------------------------------------------------------------------


def test_replay_mix_keeps_all_domain_texts_and_hits_the_share():
    domain = [f"d{i}" for i in range(30)]
    general = [f"g{i}" for i in range(100)]
    mix = replay_mix(domain, general, 0.25, seed=1)
    assert sorted(t for t in mix if t.startswith("d")) == sorted(domain), (
        "every domain text must stay"
    )
    share = sum(t.startswith("g") for t in mix) / len(mix)
    assert share == pytest.approx(0.25, abs=0.02), f"general share should be 0.25, got {share:.3f}"
    assert len(set(mix)) == len(mix), "general texts must be drawn without replacement"
    assert mix != domain + sorted(set(mix) - set(domain)), "the mix must be shuffled"


def test_replay_mix_is_deterministic_and_zero_share_is_the_domain():
    d, g = ["a", "b", "c"], ["x", "y", "z", "w"]
    assert replay_mix(d, g, 0.5, seed=3) == replay_mix(d, g, 0.5, seed=3), "same seed, same mix"
    assert sorted(replay_mix(d, g, 0.0)) == d, "share 0 must add no general text"


def test_replay_mix_bad_inputs():
    with pytest.raises(ValueError, match="replay_share must be in"):
        replay_mix(["a"], ["b"], 1.0)
    with pytest.raises(ValueError, match="needs 9 general texts"):
        replay_mix(["a", "b", "c"], ["x"], 0.75)
    with pytest.raises(TypeError, match="lists of texts"):
        replay_mix("abc", ["x"], 0.5)
    with pytest.raises(ValueError, match="at least one"):
        replay_mix([], ["x"], 0.5)


# --- fisher_diagonal ----------------------------------------------------------------------------


def test_fisher_is_the_mean_of_squared_gradients(tiny_llama):
    model, data = tiny_llama(layers=1), batches(3)
    fisher = fisher_diagonal(model, data, 3)
    assert all(p.grad is None for p in model.parameters()), (
        "fisher_diagonal must leave no gradients behind"
    )
    squares = []
    for b in data:
        model.zero_grad()
        model(**b).loss.backward()
        squares.append(model.model.layers[0].mlp.up_proj.weight.grad ** 2)
    want = sum(squares) / 3
    got = fisher["model.layers.0.mlp.up_proj.weight"]
    assert torch.allclose(got, want, atol=1e-10), (
        "Fisher must be the mean of squared batch gradients"
    )
    assert all((f >= 0).all() for f in fisher.values()), "a diagonal Fisher is never negative"


def test_fisher_skips_frozen_parameters_and_checks_counts(tiny_llama):
    model = tiny_llama(layers=1)
    model.model.embed_tokens.weight.requires_grad_(False)
    fisher = fisher_diagonal(model, batches(2), 2)
    assert "model.embed_tokens.weight" not in fisher, "frozen parameters have no Fisher entry"
    with pytest.raises(ValueError, match="only 2 batches"):
        fisher_diagonal(model, batches(2), 5)
    with pytest.raises(ValueError, match="n_batches must be"):
        fisher_diagonal(model, batches(2), 0)


# --- ewc_penalty / ewc_loss ---------------------------------------------------------------------


def test_ewc_penalty_matches_the_formula_and_is_zero_at_the_anchor(tiny_llama):
    model = tiny_llama(layers=1)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    assert ewc_penalty(model, fisher, anchor, 10.0).item() == 0.0, "no penalty at the anchor"
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.1)  # one tensor moves by 0.1
    want = 0.5 * 10.0 * (fisher["model.layers.0.mlp.up_proj.weight"] * 0.01).sum()
    got = ewc_penalty(model, fisher, anchor, 10.0)
    assert torch.allclose(got, want, rtol=1e-5), (
        f"expected lam/2 * sum F d^2 = {want.item():.5f}, got {got.item():.5f}"
    )


def test_ewc_penalty_has_a_gradient_pulling_back_to_the_anchor(tiny_llama):
    model = tiny_llama(layers=1)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    w = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w.add_(1.0)
    ewc_penalty(model, fisher, anchor, 2.0).backward()
    assert torch.allclose(w.grad, torch.full_like(w, 2.0)), "d/dtheta of lam/2 F d^2 is lam F d"


def test_ewc_loss_adds_the_penalty_to_the_model_loss(tiny_llama):
    model, b = tiny_llama(layers=1), batches(1)[0]
    anchor = {n: p.detach().clone() + 0.01 for n, p in model.named_parameters()}
    fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    loss_fn = ewc_loss(fisher, anchor, 3.0)
    want = model(**b).loss + ewc_penalty(model, fisher, anchor, 3.0)
    assert torch.allclose(loss_fn(model, b), want), "ewc_loss must return model loss + penalty"


def test_ewc_bad_inputs(tiny_llama):
    model = tiny_llama(layers=1)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="lam must be"):
        ewc_penalty(model, {}, anchor, -1.0)
    with pytest.raises(ValueError, match="the model lacks"):
        ewc_penalty(model, {"nope": torch.zeros(1)}, anchor, 1.0)
    with pytest.raises(ValueError, match="fisher is empty"):
        ewc_loss({}, anchor, 1.0)
