"""The chapter 09 checkers pass correct answers and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import ppo, reward_model
from course_lib.course.checkers import ch09
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_margin_bradley_terry():
    assert ch09.check_margin_bt(lambda c, r, m: -F.logsigmoid(c - r - m).mean())
    assert ch09.check_margin_bt(lambda c, r, m: reward_model.bradley_terry_loss(c - m, r))
    fails_with(ch09.check_margin_bt, lambda c, r, m: -F.logsigmoid(c - r + m).mean(), "added")
    fails_with(
        ch09.check_margin_bt, lambda c, r, m: reward_model.bradley_terry_loss(c, r), "missing"
    )
    fails_with(
        ch09.check_margin_bt,
        lambda c, r, m: reward_model.bradley_terry_loss(c, r) + m.mean(),
        "outside the log-sigmoid",
    )
    fails_with(ch09.check_margin_bt, lambda c, r, m: -F.logsigmoid(c - r - m).sum(), "not the sum")
    fails_with(
        ch09.check_margin_bt,
        lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean(),
        "F.logsigmoid",
    )
    fails_with(
        ch09.check_margin_bt, lambda c, r, m: -F.logsigmoid(c - r - m).detach().mean(), "detached"
    )


def ipo(beta_inside=False, target=lambda b: 1 / (2 * b), sign=-1.0, ref=True):
    def fn(pc, pr, rc, rr, b):
        h = ((pc - rc) - (pr - rr)) if ref else (pc - pr)
        h = b * h if beta_inside else h
        return ((h + sign * target(b)) ** 2).mean()

    return fn


def test_ipo():
    assert ch09.check_ipo(ipo())
    fails_with(ch09.check_ipo, ipo(beta_inside=True), "β multiplies the margin")
    fails_with(ch09.check_ipo, ipo(target=lambda b: 1 / b), "not 1/β")
    fails_with(ch09.check_ipo, ipo(sign=1.0), "sign is flipped")
    fails_with(ch09.check_ipo, ipo(ref=False), "reference log-probabilities are missing")
    fails_with(
        ch09.check_ipo,
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).mean(),
        "IPO loss",
    )


def test_k3():
    assert ch09.check_k3(lambda lp, rl, m: (torch.exp(rl - lp) - 1 - (rl - lp)) * m)
    fails_with(
        ch09.check_k3, lambda lp, rl, m: (torch.exp(lp - rl) - 1 - (lp - rl)) * m, "upside down"
    )
    fails_with(ch09.check_k3, lambda lp, rl, m: (torch.exp(rl - lp) - (rl - lp)) * m, "− 1")
    fails_with(ch09.check_k3, lambda lp, rl, m: (lp - rl) * m, "k1")
    fails_with(ch09.check_k3, lambda lp, rl, m: torch.exp(rl - lp) - 1 - (rl - lp), "mask")


def test_rloo():
    def rloo(r, k):
        g = r.reshape(-1, k)
        return (g - (g.sum(1, keepdim=True) - g) / (k - 1)).reshape(-1)

    def rloo_loop(r, k):  # an independent, slower formulation
        out = []
        for i in range(len(r)):
            start = i // k * k
            others = [r[j] for j in range(start, start + k) if j != i]
            out.append(r[i] - sum(others) / len(others))
        return torch.stack(out)

    assert ch09.check_rloo(rloo)
    assert ch09.check_rloo(rloo_loop)

    def with_self(r, k):
        g = r.reshape(-1, k)
        return (g - g.mean(1, keepdim=True)).reshape(-1)

    def grpo(r, k):
        g = r.reshape(-1, k)
        return ((g - g.mean(1, keepdim=True)) / g.std(1, keepdim=True)).reshape(-1)

    def strided(r, k):
        g = r.reshape(k, -1)
        return (g - (g.sum(0) - g) / (k - 1)).reshape(-1)

    fails_with(ch09.check_rloo, with_self, "includes the sample itself")
    fails_with(ch09.check_rloo, grpo, "GRPO")
    fails_with(ch09.check_rloo, strided, "CONSECUTIVE")
    fails_with(ch09.check_rloo, lambda r, k: r - (r.sum() - r) / (len(r) - 1), "per prompt")


def dual(bound_all=False, op=torch.minimum, sign=-1.0, masked=True, dual_clip=True):
    def fn(lp, old, a, m, e, c):
        rho = torch.exp(lp - old)
        standard = torch.maximum(-a * rho, -a * rho.clamp(1 - e, 1 + e))
        capped = op(standard, sign * c * a)
        loss = capped if bound_all else torch.where(a < 0, capped, standard)
        loss = loss if dual_clip else standard
        return ppo.masked_mean(loss, m) if masked else loss.mean()

    return fn


def test_dual_clip():
    assert ch09.check_dual_clip(dual())
    fails_with(ch09.check_dual_clip, dual(dual_clip=False), "no dual clip")
    fails_with(ch09.check_dual_clip, dual(bound_all=True), "only where A < 0")
    fails_with(ch09.check_dual_clip, dual(op=torch.maximum), "max instead of min")
    fails_with(ch09.check_dual_clip, dual(sign=1.0), "not c·A")
    fails_with(ch09.check_dual_clip, dual(masked=False), "masked (padding)")
    fails_with(
        ch09.check_dual_clip,
        lambda lp, old, a, m, e, c: ppo.policy_loss(lp, old, a, m, clip=e)[0].detach(),
        "no dual clip",
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_dual(mode: str):
    import torch

    def fn(logp, old, adv, mask, eps, c):
        if mode == "normalised_in_place":
            adv -= adv.mean()  # "normalise the advantages", on the caller's tensor
        ratio = torch.exp(logp - old)
        std = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))
        if mode == "everywhere":
            loss = torch.minimum(std, -c * adv)
        elif mode == "max":
            loss = torch.where(adv < 0, torch.maximum(std, -c * adv), std)
        else:
            loss = torch.where(adv < 0, torch.minimum(std, -c * adv), std)
        return (loss * mask).sum() / mask.sum()

    return fn


WRONG_ANSWERS = [
    Wrong(
        "margin added",
        ch09.check_margin_bt,
        [lambda rc, rr, m: -F.logsigmoid(rc - rr + m).mean()],
        ("subtract",),
    ),
    Wrong(
        "margin missing",
        ch09.check_margin_bt,
        [lambda rc, rr, m: -F.logsigmoid(rc - rr).mean()],
        ("margin is missing",),
    ),
    Wrong(
        "sum over pairs",
        ch09.check_margin_bt,
        [lambda rc, rr, m: -F.logsigmoid(rc - rr - m).sum()],
        ("mean",),
    ),
    Wrong(
        "log(sigmoid) underflows",
        ch09.check_margin_bt,
        [lambda rc, rr, m: -torch.log(torch.sigmoid(rc - rr - m)).mean()],
        ("logsigmoid",),
    ),
    Wrong(
        "β multiplies the margin",
        ch09.check_ipo,
        [lambda pc, pr, rc, rr, b: ((b * ((pc - rc) - (pr - rr)) - 1 / (2 * b)) ** 2).mean()],
        ("β multiplies",),
    ),
    Wrong(
        "target 1/β",
        ch09.check_ipo,
        [lambda pc, pr, rc, rr, b: (((pc - rc) - (pr - rr) - 1 / b) ** 2).mean()],
        ("1/(2β)",),
    ),
    Wrong(
        "no reference model",
        ch09.check_ipo,
        [lambda pc, pr, rc, rr, b: ((pc - pr - 1 / (2 * b)) ** 2).mean()],
        ("reference",),
    ),
    Wrong(
        "k1 instead of k3",
        ch09.check_k3,
        [lambda lp, ref, m: (lp - ref) * m],
        ("k1", "k3"),
    ),
    Wrong(
        "ratio upside down",
        ch09.check_k3,
        [lambda lp, ref, m: (torch.exp(lp - ref) - 1 - (lp - ref)) * m],
        ("π_ref / π", "upside", "ratio"),
    ),
    Wrong(
        "mask ignored",
        ch09.check_k3,
        [lambda lp, ref, m: torch.exp(ref - lp) - 1 - (ref - lp)],
        ("mask",),
    ),
    Wrong(
        "baseline includes the sample",
        ch09.check_rloo,
        [lambda r, k: (r.reshape(-1, k) - r.reshape(-1, k).mean(1, keepdim=True)).reshape(-1)],
        ("OTHER",),
    ),
    Wrong(
        "GRPO normalisation",
        ch09.check_rloo,
        [
            lambda r, k: (
                (r.reshape(-1, k) - r.reshape(-1, k).mean(1, keepdim=True))
                / r.reshape(-1, k).std(1, keepdim=True)
            ).reshape(-1)
        ],
        ("GRPO",),
    ),
    Wrong(
        "dual clip everywhere",
        ch09.check_dual_clip,
        [_h8_dual("everywhere")],
        ("only where A < 0",),
    ),
    Wrong("max instead of min", ch09.check_dual_clip, [_h8_dual("max")], ("max instead of min",)),
    Wrong(
        "advantages normalised in place",
        ch09.check_dual_clip,
        [_h8_dual("normalised_in_place")],
        ("in place",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
