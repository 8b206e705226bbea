"""Tests of course_lib.full_finetuning: accumulation equals the large batch, Trainer rows, early stopping."""

from __future__ import annotations

import pytest
import torch

from course_lib.full_finetuning import (
    accumulated_gradients,
    batch_gradients,
    decay_parameter_names,
    first_batches,
    max_abs_difference,
    predicted_tokens,
    rows_of,
    should_stop,
    split_batch,
)


def batch(size=8, length=10, seed=0, pad_lengths=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (size, length), generator=g)
    mask = torch.ones_like(ids)
    for row, n in enumerate(pad_lengths or []):
        mask[row, n:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def test_mean_accumulation_equals_large_batch_without_padding(tiny_llama):
    model, big = tiny_llama(vocab=30, pad_token_id=0), batch()
    diff = max_abs_difference(
        batch_gradients(model, big), accumulated_gradients(model, split_batch(big, 4))
    )
    assert diff < 1e-6, (
        f"with equal-length micro-batches, loss/k accumulation must equal the big batch (diff {diff})"
    )


def test_forgetting_to_divide_gives_k_times_the_gradient(tiny_llama):
    model, big = tiny_llama(vocab=30, pad_token_id=0), batch()
    right = batch_gradients(model, big)
    wrong = accumulated_gradients(model, split_batch(big, 4), "none")
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(wrong[name], 4 * right[name], atol=1e-6), (
        "no division must give 4x the gradient"
    )


def test_token_weighting_is_needed_with_padding(tiny_llama):
    model = tiny_llama(vocab=30, pad_token_id=0)
    big = batch(pad_lengths=[3, 10, 4, 10, 10, 5, 2, 10])
    right = batch_gradients(model, big)
    tokens = max_abs_difference(right, accumulated_gradients(model, split_batch(big, 4), "tokens"))
    mean = max_abs_difference(right, accumulated_gradients(model, split_batch(big, 4), "mean"))
    assert tokens < 1e-6, f"token-weighted accumulation must equal the big batch (diff {tokens})"
    assert mean > 100 * max(tokens, 1e-8), (
        f"with padding, loss/k should differ from the big batch (diff {mean})"
    )


def test_predicted_tokens_counts_after_the_shift():
    assert predicted_tokens(batch(size=2, length=5, pad_lengths=[3, 5])) == 2 + 4


def test_gradients_are_cleared_after_accumulation(tiny_llama):
    model = tiny_llama(vocab=30, pad_token_id=0)
    accumulated_gradients(model, split_batch(batch(), 2))
    assert all(p.grad is None for p in model.parameters()), (
        "the helper must leave no gradients behind"
    )


def test_first_batches_re_iterates_and_rows_rebuild_batches():
    data = [batch(size=2, seed=i) for i in range(3)]
    got = first_batches(data, 7)
    assert len(got) == 7 and got[3] is data[0], (
        "first_batches must start a new pass when one pass is used up"
    )
    rows = rows_of(got[:2])
    assert len(rows) == 4 and torch.equal(rows[2]["input_ids"], data[1]["input_ids"][0])


def test_should_stop_compares_with_the_best_loss():
    assert should_stop([3.0, 2.0, 2.5, 2.4], patience=2), (
        "two evaluations worse than the best: stop"
    )
    assert not should_stop([3.0, 2.0, 1.9, 1.95], patience=2), (
        "a new best 1.9 one evaluation ago: go on"
    )
    assert not should_stop([3.0, 2.0], patience=2), "too few evaluations to decide"
    assert should_stop([3.0, 2.0, 1.99, 1.98], patience=2, min_delta=0.05), (
        "tiny gains below min_delta do not count"
    )


def test_decay_names_are_matrices_only(tiny_llama):
    names = decay_parameter_names(tiny_llama(vocab=30, pad_token_id=0))
    assert names and all("norm" not in n and not n.endswith("bias") for n in names), names


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda lm: first_batches([], 2), ValueError),
        (lambda lm: first_batches([batch()], 0), ValueError),
        (lambda lm: split_batch(batch(size=6), 4), ValueError),
        (lambda lm: should_stop([1.0], 0), ValueError),
        (lambda lm: should_stop([1.0], 1, min_delta=-1), ValueError),
        (lambda lm: accumulated_gradients(lm, [batch()], "sum"), ValueError),
        (lambda lm: accumulated_gradients(lm, []), ValueError),
        (lambda lm: rows_of([[1, 2]]), TypeError),
        (lambda lm: predicted_tokens({"input_ids": torch.ones(1, 2)}), ValueError),
        (lambda lm: decay_parameter_names("model"), TypeError),
    ],
)
def test_bad_input_is_refused(call, error, tiny_llama):
    lm = tiny_llama(vocab=30, pad_token_id=0)  # the model the calls that need one get
    with pytest.raises(error):
        call(lm)
