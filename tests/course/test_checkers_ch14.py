"""The chapter 14 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.course.checkers import ch14
from course_lib.course.checks import CheckFailed
from course_lib.grpo import group_advantages, grpo_loss


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def advantages(rewards, g, whole=False, std=True, unbiased=True, eps=1e-4, strided=False):
    """Group advantages with switchable mistakes (the right ones with the defaults)."""
    grouped = rewards.view(g, -1).T if strided else rewards.view(-1, g)
    if whole:
        grouped = rewards.view(1, -1)
    centred = grouped - grouped.mean(1, keepdim=True)
    out = centred / (grouped.std(1, unbiased=unbiased, keepdim=True) + eps) if std else centred
    return out.T.reshape(-1) if strided else out.reshape(-1)


def test_group_advantages():
    assert ch14.check_group_advantages(group_advantages)
    assert ch14.check_group_advantages(advantages)
    fails_with(
        ch14.check_group_advantages, lambda r, g: advantages(r, g, whole=True), "whole batch"
    )
    fails_with(ch14.check_group_advantages, lambda r, g: advantages(r, g, std=False), "Dr. GRPO")
    fails_with(ch14.check_group_advantages, lambda r, g: advantages(r, g, unbiased=False), "Bessel")
    fails_with(ch14.check_group_advantages, lambda r, g: advantages(r, g, eps=0.0), "eps")
    fails_with(
        ch14.check_group_advantages, lambda r, g: advantages(r, g, strided=True), "consecutive"
    )

    def in_place(r, g):
        r -= r.view(-1, g).mean(1).repeat_interleave(g)
        return group_advantages(r + 0.0, g)

    fails_with(ch14.check_group_advantages, in_place, "rewards")


def token_loss(logps, old, ref, adv, mask, beta, eps, **mistake):
    case = {"logps": logps, "old_logps": old, "ref_logps": ref, "advantages": adv, "mask": mask}
    return ch14._variant(case, beta, eps, **mistake)


def test_grpo_token_loss():
    def ref_fn(logps, old, ref, adv, mask, beta, eps):
        return grpo_loss(
            logps,
            old,
            ref,
            adv,
            mask,
            beta=beta,
            epsilon=eps,
            loss_type="grpo",
            kl_correction=False,
        )

    assert ch14.check_grpo_token_loss(ref_fn)
    assert ch14.check_grpo_token_loss(token_loss)
    check = ch14.check_grpo_token_loss
    fails_with(check, lambda *a: -token_loss(*a), "sign is flipped")
    fails_with(check, lambda *a: token_loss(*a, use_max=True), "max")
    fails_with(check, lambda *a: token_loss(*a, clip=False), "not clipped")
    fails_with(check, lambda *a: token_loss(*a, kl="k1"), "k1")
    fails_with(check, lambda *a: token_loss(*a, kl="reversed"), "reversed")
    fails_with(check, lambda *a: token_loss(*a, agg="tokens"), "all tokens of the batch")
    fails_with(check, lambda *a: token_loss(*a, mask_kl=False), "padding")
    fails_with(check, lambda *a: token_loss(*a).reshape(1), "0-d tensor")


def test_simpo():
    def ref_fn(c, cm, r, rm, beta, gamma):
        mc, mr = (c * cm).sum(-1) / cm.sum(-1), (r * rm).sum(-1) / rm.sum(-1)
        return -F.logsigmoid(beta * (mc - mr) - gamma).mean()

    assert ch14.check_simpo(ref_fn)
    check = ch14.check_simpo

    def wrong(**kw):
        return lambda c, cm, r, rm, b, g: ch14._simpo_ref(c, cm, r, rm, b, g, **kw)

    fails_with(check, wrong(norm=False), "length normalisation")
    fails_with(check, wrong(gamma_mode="none"), "γ is missing")
    fails_with(check, wrong(gamma_mode="inside"), "multiplied by β")
    fails_with(check, wrong(sign=-1.0), "swapped")
    fails_with(check, wrong(pad=False), "padding")
    fails_with(check, lambda c, cm, r, rm, b, g: float(ref_fn(c, cm, r, rm, b, g)), "0-d tensor")


def test_cases_are_not_degenerate():
    rewards, g = ch14.advantage_case()
    assert (rewards.view(-1, g).std(1) == 0).any() and (rewards.view(-1, g).std(1) > 0).any()
    case = ch14.loss_case()
    ratio = torch.exp(case["logps"] - case["old_logps"])[case["mask"].bool()]
    assert ((ratio > 1.2) | (ratio < 0.8)).any() and ((ratio < 1.2) & (ratio > 0.8)).any()
