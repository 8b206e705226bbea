"""The chapter 11 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch11
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_full_mixed_gb():
    assert ch11.check_full_mixed_gb(lambda n: 16 * n / 1e9)
    fails_with(ch11.check_full_mixed_gb, lambda n: 12 * n / 1e9, "master weights")
    fails_with(ch11.check_full_mixed_gb, lambda n: 8 * n / 1e9, "optimizer state is missing")
    fails_with(ch11.check_full_mixed_gb, lambda n: 16 * n / 1024**3, "GiB")
    fails_with(ch11.check_full_mixed_gb, lambda n: 16 * n, "bytes")


def _lora(shapes, layers, r, targets, f=lambda i, o, r: r * (i + o)):
    return layers * sum(f(*shapes[t], r) for t in targets)


def test_lora_trainable():
    assert ch11.check_lora_trainable(_lora)
    fails_with(
        ch11.check_lora_trainable,
        lambda s, l, r, t: _lora(s, l, r, t, lambda i, o, r: r * i),
        "r * d_in",
    )
    fails_with(
        ch11.check_lora_trainable,
        lambda s, l, r, t: _lora(s, l, r, t, lambda i, o, r: 2 * r * i),
        "square",
    )
    fails_with(
        ch11.check_lora_trainable, lambda s, l, r, t: _lora(s, l, r, t) // l, "number of layers"
    )


def _zero(psi, n, stage, divide=None):
    w, g, k = 2 * psi, 2 * psi, 12 * psi
    divide = (
        divide
        if divide is not None
        else {0: (), 1: ("k",), 2: ("k", "g"), 3: ("k", "g", "w")}[stage]
    )
    return (
        (w / n if "w" in divide else w)
        + (g / n if "g" in divide else g)
        + (k / n if "k" in divide else k)
    )


def test_zero_bytes():
    assert ch11.check_zero_bytes(_zero)
    # stage 2 that also divides the weights (= stage 3)
    fails_with(
        ch11.check_zero_bytes,
        lambda p, n, s: _zero(p, n, s, ("k", "g", "w") if s == 2 else None),
        "stage 3's formula",
    )
    # stage 1 that divides the bf16 weights and gradients instead of the optimizer state
    fails_with(
        ch11.check_zero_bytes,
        lambda p, n, s: _zero(p, n, s, ("w", "g") if s == 1 else None),
        "not the bf16 weights",
    )
    fails_with(ch11.check_zero_bytes, lambda p, n, s: _zero(p, n, s) / 1e9, "bytes, not GB")


def test_all_reduce_mean():
    assert ch11.check_all_reduce_mean(lambda gs: torch.stack(gs).mean(0))
    fails_with(ch11.check_all_reduce_mean, lambda gs: torch.stack(gs).sum(0), "SUM")
    fails_with(ch11.check_all_reduce_mean, lambda gs: gs[0], "rank 0")


def test_weighted_combine():
    def good(gs, counts):
        return sum(g * c for g, c in zip(gs, counts)) / sum(counts)

    assert ch11.check_weighted_combine(good)
    fails_with(ch11.check_weighted_combine, lambda gs, c: torch.stack(gs).mean(0), "equal shards")
    fails_with(
        ch11.check_weighted_combine, lambda gs, c: sum(g * n for g, n in zip(gs, c)), "total count"
    )
