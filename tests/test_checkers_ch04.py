"""The chapter 04 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch04
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_param_count():
    assert ch04.check_param_count(lambda shapes, r: sum(r * (o + i) for o, i in shapes))
    fails_with(
        ch04.check_param_count, lambda shapes, r: sum(r * o * i for o, i in shapes), "dense update"
    )


def test_forward():
    assert ch04.check_forward(lambda x, w, a, b, alpha, r: x @ w.T + alpha / r * (x @ a.T @ b.T))
    fails_with(
        ch04.check_forward, lambda x, w, a, b, alpha, r: x @ w.T + x @ a.T @ b.T, "not scaled"
    )
    fails_with(
        ch04.check_forward,
        lambda x, w, a, b, alpha, r: x @ w.T + alpha * (x @ a.T @ b.T),
        "instead of alpha / r",
    )


class GoodLoRA(torch.nn.Module):
    def __init__(self, base, r, alpha, zero_b=True, freeze=True, swap=False):
        super().__init__()
        self.base, self.scaling = base, alpha / r
        if freeze:
            base.requires_grad_(False)
        a_shape = (base.in_features, r) if swap else (r, base.in_features)
        b_shape = (r, base.out_features) if swap else (base.out_features, r)
        self.A = torch.nn.Parameter(torch.randn(a_shape) * 0.1)
        self.B = torch.nn.Parameter(torch.zeros(b_shape) if zero_b else torch.randn(b_shape))

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.A.T @ self.B.T)


def test_module():
    assert ch04.check_module(GoodLoRA)
    fails_with(
        ch04.check_module, lambda b, r, a: GoodLoRA(b, r, a, zero_b=False), "B must start at zero"
    )
    fails_with(ch04.check_module, lambda b, r, a: GoodLoRA(b, r, a, freeze=False), "freeze them")
    fails_with(ch04.check_module, lambda b, r, a: GoodLoRA(b, r, a, swap=True), "swapped")


def test_merge_and_energy():
    assert ch04.check_merge(lambda w, a, b, alpha, r: w + alpha / r * (b @ a))
    fails_with(ch04.check_merge, lambda w, a, b, alpha, r: w + b @ a, "not scaled")
    fails_with(ch04.check_merge, lambda w, a, b, alpha, r: w + alpha / r * (a.T @ b.T), "shape")

    def energy(m, k):
        s = torch.linalg.svdvals(m)
        return float((s[:k] ** 2).sum() / (s**2).sum())

    assert ch04.check_energy(energy)
    fails_with(
        ch04.check_energy,
        lambda m, k: float(torch.linalg.svdvals(m)[:k].sum() / torch.linalg.svdvals(m).sum()),
        "square the singular values",
    )
