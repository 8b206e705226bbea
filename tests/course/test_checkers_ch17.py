"""The chapter 17 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import merging
from course_lib.course.checkers import ch17
from course_lib.course.checks import CheckFailed
from course_lib.distillation import kd_loss
from course_lib.synthetic import contaminated


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def kl(s, t, T, t_s=None, t_t=None, factor=None, reverse=False, reduce="mean"):
    """A temperature KL with switchable mistakes (the right one with the defaults)."""
    log_s = F.log_softmax(s / (t_s or T), -1)
    log_t = F.log_softmax(t / (t_t or T), -1)
    if reverse:
        log_s, log_t = log_t, log_s
    per = (log_t.exp() * (log_t - log_s)).sum(-1)
    value = per.mean() if reduce == "mean" else per.sum()
    return value * (T**2 if factor is None else factor(T))


def test_temperature_kl():
    assert ch17.check_temperature_kl(lambda s, t, T: kd_loss(s, t, None, T))
    fails_with(ch17.check_temperature_kl, lambda s, t, T: kl(s, t, T, factor=lambda T: 1), "T²")
    fails_with(ch17.check_temperature_kl, lambda s, t, T: kl(s, t, T, reverse=True), "KL(student")
    fails_with(ch17.check_temperature_kl, lambda s, t, T: kl(s, t, T, t_s=1.0), "student's logits")
    fails_with(ch17.check_temperature_kl, lambda s, t, T: kl(s, t, T, factor=lambda T: T), "not T")
    fails_with(ch17.check_temperature_kl, lambda s, t, T: kl(s, t, T, reduce="sum"), "do not sum")


def ties_wrong(tensors, weights, density, mistake):
    w = torch.tensor(weights).view(-1, 1, 1)
    trimmed = torch.stack([merging.trim(t, density) for t in tensors])
    if mistake == "sum":
        return (trimmed * w).sum(0)
    if mistake == "no mean":
        return (trimmed * w * merging.elect_sign(trimmed)).sum(0)
    if mistake == "weighted vote":
        return merging.disjoint_merge(trimmed * w, merging.elect_sign(trimmed * w))
    raw = torch.stack(tensors)
    return merging.disjoint_merge(raw * w, merging.elect_sign(raw))


def test_ties_merge():
    assert ch17.check_ties_merge(lambda ts, w, d: merging.ties(ts, w, d))
    for mistake, words in (
        ("sum", "disjoint merge"),
        ("no mean", "divide by how many"),
        ("weighted vote", "before weighting"),
        ("no trim", "trim first"),
    ):
        fails_with(
            ch17.check_ties_merge, lambda ts, w, d, m=mistake: ties_wrong(ts, w, d, m), words
        )


def test_contaminated():
    assert ch17.check_contaminated(contaminated)

    def raw_split(texts, evals, n):
        return ch17._flags(texts, evals, n, str.split)

    def no_short(texts, evals, n):
        from course_lib.synthetic import normalize

        return ch17._flags(texts, evals, n, lambda t: normalize(t).split(), short_rule=False)

    fails_with(ch17.check_contaminated, raw_split, "normalize first")
    fails_with(ch17.check_contaminated, no_short, "shorter than n")
    fails_with(ch17.check_contaminated, lambda t, e, n: [True] * len(t), "whole n-gram")
