"""The chapter 09 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import dpo, ppo, reward_model
from course_lib.course.checkers import ch09
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_bradley_terry():
    assert ch09.check_bradley_terry(reward_model.bradley_terry_loss)
    fails_with(ch09.check_bradley_terry, lambda c, r: -F.logsigmoid(r - c).mean(), "swapped")
    fails_with(
        ch09.check_bradley_terry,
        lambda c, r: -torch.sigmoid(c - r).mean(),
        "sigmoid instead of logsigmoid",
    )
    fails_with(
        ch09.check_bradley_terry, lambda c, r: F.logsigmoid(c - r).mean(), "minus sign is missing"
    )
    fails_with(ch09.check_bradley_terry, lambda c, r: -F.logsigmoid(c - r).sum(), "take the mean")
    fails_with(
        ch09.check_bradley_terry, lambda c, r: -F.logsigmoid(c - r).detach().mean(), "detached"
    )
    fails_with(
        ch09.check_bradley_terry,
        lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(),
        "F.logsigmoid",
    )
    fails_with(ch09.check_bradley_terry, lambda c, r: -F.logsigmoid(c - r), "0-d tensor")


def test_dpo_loss():
    assert ch09.check_dpo_loss(lambda pc, pr, rc, rr, b: dpo.dpo_loss(pc, pr, rc, rr, beta=b).loss)
    fails_with(
        ch09.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(),
        "reference log-probabilities are missing",
    )
    fails_with(
        ch09.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -(b * F.logsigmoid((pc - rc) - (pr - rr))).mean(),
        "outside the sigmoid",
    )
    fails_with(
        ch09.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pr - rr) - (pc - rc))).mean(),
        "sign is swapped",
    )
    fails_with(
        ch09.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - rc) - (pr - rr)).mean(),
        "β is missing",
    )
    fails_with(
        ch09.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((rc - pc) - (rr - pr))).mean(),
        "sign is swapped",
    )


def kl_variant(sign=-1.0, where="last", mask_penalty=True, coef=True):
    def fn(scores, logp, ref_logp, mask, kl_coef):
        diff = logp - ref_logp
        rewards = sign * (kl_coef if coef else 1.0) * (diff * mask if mask_penalty else diff)
        pos = torch.arange(mask.shape[1]).expand_as(mask)
        if where == "last":
            idx = (mask * pos).argmax(-1)
        elif where == "first":
            idx = (mask * (mask.shape[1] - pos)).argmax(-1)
        elif where == "end":
            idx = torch.full((mask.shape[0],), mask.shape[1] - 1)
        if where != "none":
            rewards[torch.arange(len(scores)), idx] += scores
        return rewards

    return fn


def test_kl_rewards():
    assert ch09.check_kl_rewards(lambda *a: ppo.kl_penalized_rewards(*a)[0])
    assert ch09.check_kl_rewards(kl_variant())
    fails_with(ch09.check_kl_rewards, kl_variant(sign=1.0), "wrong sign")
    fails_with(ch09.check_kl_rewards, kl_variant(where="none"), "score was not added")
    fails_with(ch09.check_kl_rewards, kl_variant(where="first"), "FIRST response token")
    fails_with(ch09.check_kl_rewards, kl_variant(where="end"), "can be padding")
    fails_with(ch09.check_kl_rewards, kl_variant(mask_penalty=False), "applied to padding")
    fails_with(ch09.check_kl_rewards, kl_variant(coef=False), "kl_coef is missing")


def test_gae():
    assert ch09.check_gae(lambda r, v, m, g, l: ppo.gae(r, v, m, gamma=g, lam=l)[0])
    fails_with(ch09.check_gae, lambda r, v, m, g, l: ppo.gae(r, v, m, gamma=l, lam=g)[0], "swapped")
    fails_with(
        ch09.check_gae, lambda r, v, m, g, l: ppo.gae(r, v, m, gamma=g, lam=1.0)[0], "Monte Carlo"
    )
    fails_with(
        ch09.check_gae, lambda r, v, m, g, l: ppo.gae(r, v, m, gamma=g, lam=0.0)[0], "one-step TD"
    )
    fails_with(ch09.check_gae, lambda r, v, m, g, l: ch09._gae_no_mask(r, v, g, l), "no masking")
    fails_with(
        ch09.check_gae,
        lambda r, v, m, g, l: ch09._gae_no_mask(r, v * m, g, l),
        "running advantage is not masked",
    )


def masked(x, m):
    return (x * m).sum() / m.sum()


def test_clip_loss():
    assert ch09.check_clip_loss(lambda lp, old, a, m, e: ppo.policy_loss(lp, old, a, m, clip=e)[0])
    assert ch09.check_clip_loss(lambda lp, old, a, m, e: ppo.policy_loss(lp, old, a, m, clip=e))

    def variant(op=torch.maximum, clip_adv=False, clip=True, mask=True, ratio_fn=torch.exp):
        def fn(lp, old, a, m, e):
            rho = ratio_fn(lp - old)
            un = -a * rho
            cl = -a.clamp(-e, e) * rho if clip_adv else -a * rho.clamp(1 - e, 1 + e)
            x = op(un, cl) if clip else un
            return masked(x, m) if mask else x.mean()

        return fn

    fails_with(ch09.check_clip_loss, variant(op=torch.minimum), "min instead of max")
    fails_with(ch09.check_clip_loss, variant(clip_adv=True), "clipped the advantage")
    fails_with(ch09.check_clip_loss, variant(clip=False), "no clipping")
    fails_with(ch09.check_clip_loss, variant(mask=False), "masked (padding)")
    fails_with(ch09.check_clip_loss, variant(ratio_fn=lambda x: x), "exp(log π − log π_old)")
