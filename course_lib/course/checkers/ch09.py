"""Checks for the chapter 09 exercises (RLHF): variants of the lesson's losses it did not write out.

A Bradley–Terry loss with a margin (Llama 2), the IPO loss, the k3 KL estimator (GRPO's), RLOO
advantages and PPO's dual clip. Each check runs the student's function on small tensors where the
common mistakes give a recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.course.checks import call_unchanged, check, expect, expect_close
from course_lib.ppo import masked_mean
from course_lib.reward_model import bradley_terry_loss


def _scalar(value, what: str):
    expect(
        isinstance(value, torch.Tensor) and value.dim() == 0,
        f"return {what} as a 0-d tensor (a mean over the batch), got "
        f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}",
    )
    return value


def _margin_bt(rc, rr, margin):
    """Reference: −log σ(r_chosen − r_rejected − margin), averaged."""
    return -F.logsigmoid(rc - rr - margin).mean()


def _ipo(pc, pr, rc, rr, beta):
    """Reference: mean of (h − 1/(2β))², h = (log π_w − log π_ref,w) − (log π_l − log π_ref,l)."""
    h = (pc - rc) - (pr - rr)
    return ((h - 1 / (2 * beta)) ** 2).mean()


def _k3(logp, ref_logp, mask):
    """Reference: (r − 1) − log r with r = π_ref / π, per token, 0 outside the mask."""
    log_r = ref_logp - logp
    return (torch.exp(log_r) - 1 - log_r) * mask


def _rloo(rewards, k):
    """Reference: r_i minus the mean of the other k − 1 rewards of its prompt (consecutive groups)."""
    r = rewards.reshape(-1, k)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(-1)


def _dual_clip_terms(logp, old_logp, adv, clip, clip_c):
    ratio = torch.exp(logp - old_logp)
    standard = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    return standard, torch.where(adv < 0, torch.minimum(standard, -clip_c * adv), standard)


@check("09.1 Bradley–Terry loss with a margin")
def check_margin_bt(student_fn) -> None:
    """The student's bt_margin_loss(r_chosen, r_rejected, margin) -> mean −log σ(r_c − r_r − m)."""
    rc = torch.tensor([2.0, 0.5, -1.0, 3.0, 0.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0, -2.0, 1.0, 0.0])
    m = torch.tensor([1.0, 0.0, 3.0, 0.5, 2.0])
    out = _scalar(student_fn(rc, rr, m), "the loss")
    d = (rc - rr).detach()
    expect_close(
        out.detach(),
        _margin_bt(d, 0.0, m).item(),
        1e-5,
        "the loss with margins",
        hints=[
            (
                _margin_bt(d, 0.0, -m).item(),
                "the margin is added: subtract it, σ(r_chosen − r_rejected − m), so the chosen "
                "answer has to win BY m before the loss gets small",
            ),
            (bradley_terry_loss(d, torch.zeros(5)).item(), "the margin is missing"),
            (
                (bradley_terry_loss(d, torch.zeros(5)) + m.mean()).item(),
                "the margin went outside the log-sigmoid: it shifts the score difference INSIDE σ",
            ),
            (
                (bradley_terry_loss(d, torch.zeros(5)) - m.mean()).item(),
                "the margin went outside the log-sigmoid: it shifts the score difference INSIDE σ",
            ),
            (-F.logsigmoid(d - m).sum().item(), "take the mean over the pairs, not the sum"),
            (-F.logsigmoid(-(d - m)).mean().item(), "chosen and rejected are swapped"),
        ],
    )
    expect(out.requires_grad, "the loss is detached from the rewards: keep the gradient")
    same = student_fn(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.5]), torch.zeros(2))
    expect(
        abs(
            float(same)
            - float(bradley_terry_loss(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.5])))
        )
        < 1e-6,
        "with margin 0 the loss must equal the lesson's bradley_terry_loss",
    )
    big = student_fn(torch.tensor([0.0]), torch.tensor([200.0]), torch.tensor([1.0]))
    expect(
        bool(torch.isfinite(big).all()),
        "a margin of −200 gives inf: torch.log(torch.sigmoid(x)) underflows; use F.logsigmoid",
    )


@check("09.2 IPO loss")
def check_ipo(student_fn) -> None:
    """The student's ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)."""
    pc = torch.tensor([-10.0, -12.0, -7.0, -20.0])
    pr = torch.tensor([-11.0, -9.0, -8.0, -15.0])
    rc = torch.tensor([-14.0, -12.5, -6.0, -22.0])
    rr = torch.tensor([-9.0, -10.0, -8.5, -16.0])
    beta = 0.25
    out = _scalar(student_fn(pc, pr, rc, rr, beta), "the loss")
    h = (pc - rc) - (pr - rr)
    expect_close(
        out,
        _ipo(pc, pr, rc, rr, beta).item(),
        1e-4,
        "the IPO loss (β = 0.25, target 1/(2β) = 2)",
        hints=[
            (
                ((beta * h - 1 / (2 * beta)) ** 2).mean().item(),
                "β multiplies the margin: in IPO the log-ratio margin h has no β; β only sets the "
                "target 1/(2β)",
            ),
            (((h - 1 / beta) ** 2).mean().item(), "the target is 1/(2β), not 1/β"),
            (((h - beta / 2) ** 2).mean().item(), "the target is 1/(2β), not β/2"),
            (
                ((h + 1 / (2 * beta)) ** 2).mean().item(),
                "the sign is flipped: (h − 1/(2β))², with h = chosen log-ratio minus rejected "
                "log-ratio",
            ),
            (((h - 1 / (2 * beta)).abs()).mean().item(), "square the difference, don't take |·|"),
            (
                (((pc - pr) - 1 / (2 * beta)) ** 2).mean().item(),
                "the reference log-probabilities are missing: h uses log π − log π_ref",
            ),
            (
                ((h.mean() - 1 / (2 * beta)) ** 2).item(),
                "average the squared errors, not the margins before squaring",
            ),
        ],
    )
    at_target = student_fn(
        torch.tensor([2.0]), torch.tensor([0.0]), torch.zeros(1), torch.zeros(1), beta
    )
    expect(
        abs(float(at_target)) < 1e-6,
        "a margin h equal to the target 1/(2β) must cost 0: IPO pulls h TO the target, not beyond",
    )


def _kl_case():
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(2, 5, generator=g) * 3
    ref_logp = -torch.rand(2, 5, generator=g) * 3
    return logp, ref_logp, mask


@check("09.3 the k3 KL estimator")
def check_k3(student_fn) -> None:
    """The student's kl_k3(logp, ref_logp, mask) -> per-token k3 estimates [B, T]."""
    logp, ref_logp, mask = _kl_case()
    out = student_fn(logp.clone(), ref_logp.clone(), mask.clone())
    expect(torch.is_tensor(out), "return a tensor of per-token estimates")
    log_r = ref_logp - logp
    expect_close(
        out,
        _k3(logp, ref_logp, mask),
        1e-5,
        "the per-token k3 estimates",
        hints=[
            (
                (torch.exp(-log_r) - 1 + log_r) * mask,
                "the ratio is upside down: r = π_ref / π = exp(ref_logp − logp) for tokens "
                "sampled from π",
            ),
            ((torch.exp(log_r) - log_r) * mask, "the − 1 is missing: k3 = (r − 1) − log r"),
            (
                (torch.exp(log_r) - 1 + log_r) * mask,
                "the sign of log r is wrong: k3 = (r − 1) − log r",
            ),
            (
                (logp - ref_logp) * mask,
                "that is k1 = log π − log π_ref, the lesson's estimator: k3 = (r − 1) − log r, "
                "r = π_ref / π",
            ),
            (
                torch.exp(log_r) - 1 - log_r,
                "prompt and padding positions must get 0: multiply by the mask",
            ),
        ],
    )
    expect(bool((out >= -1e-7).all()), "k3 is never negative: (r − 1) − log r ≥ 0 for every r > 0")


@check("09.4 RLOO advantages")
def check_rloo(student_fn) -> None:
    """The student's rloo_advantages(rewards, k) -> r_i minus the mean of the other k − 1 samples."""
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, -1.0, -1.0, 0.0, 3.0, 0.2, 0.4, 0.6, 0.8])
    k = 4
    out = student_fn(rewards.clone(), k)
    expect(torch.is_tensor(out), "return a tensor with one advantage per sample")
    r, rk = rewards.reshape(-1, k), rewards.reshape(k, -1)  # rk: strided groups
    expect_close(
        out.reshape(-1),
        _rloo(rewards, k),
        1e-5,
        "the RLOO advantages (3 prompts × 4 samples)",
        hints=[
            (
                (r - r.mean(dim=1, keepdim=True)).reshape(-1),
                "the baseline includes the sample itself: leave it out, the mean of the OTHER "
                "k − 1 rewards of the prompt (yours is (k − 1)/k of the RLOO advantage)",
            ),
            (
                ((r - r.mean(dim=1, keepdim=True)) / r.std(dim=1, keepdim=True)).reshape(-1),
                "that is GRPO's normalised advantage: RLOO subtracts the leave-one-out mean and "
                "does not divide by a standard deviation",
            ),
            (
                (rk - (rk.sum(dim=0) - rk) / (k - 1)).reshape(-1),
                "the k samples of a prompt are CONSECUTIVE: group with rewards.reshape(-1, k)",
            ),
            (
                rewards - (rewards.sum() - rewards) / (len(rewards) - 1),
                "the baseline is per prompt: leave-one-out among the k samples of the SAME prompt, "
                "not the whole batch",
            ),
        ],
    )


@check("09.5 dual-clip PPO loss")
def check_dual_clip(student_fn) -> None:
    """The student's dual_clip_loss(logp, old_logp, advantages, mask, clip, clip_c) -> scalar."""
    logp = torch.tensor([[-1.0, 0.5, -2.0, -0.1], [-1.2, -3.0, -0.5, -0.7]], requires_grad=True)
    old = torch.tensor([[-1.5, -1.5, -1.0, -0.9], [-1.0, -2.0, -1.0, -0.7]])
    adv = torch.tensor([[1.0, -2.0, 0.5, -1.0], [2.0, 1.0, -1.5, 0.3]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    eps, c = 0.2, 3.0
    names = ("logp", "old_logp", "advantages", "mask")
    out = call_unchanged(student_fn, logp, old, adv, mask, eps, c, names=names)
    out = _scalar(out[0] if isinstance(out, tuple) else out, "the loss")
    standard, dual = _dual_clip_terms(logp.detach(), old, adv, eps, c)
    m = lambda x: masked_mean(x, mask).item()  # noqa: E731
    expect_close(
        out.detach(),
        m(dual),
        1e-5,
        "the dual-clip loss (ε = 0.2, c = 3)",
        hints=[
            (
                m(standard),
                "no dual clip: that is the lesson's policy_loss; where A < 0, also cap the loss "
                "at −c·A (min with it)",
            ),
            (
                m(torch.minimum(standard, -c * adv)),
                "the dual clip applies only where A < 0: for A > 0, −c·A is negative and would "
                "replace the ordinary clipped loss",
            ),
            (
                m(torch.where(adv < 0, torch.maximum(standard, -c * adv), standard)),
                "max instead of min: the dual clip is an UPPER bound on the loss, min(L, −c·A)",
            ),
            (
                m(torch.where(adv < 0, torch.minimum(standard, c * adv), standard)),
                "the bound is −c·A (positive where A < 0), not c·A",
            ),
            (
                dual.mean().item(),
                "the mean includes the masked (padding) positions: average over mask == 1 only",
            ),
        ],
    )
    expect(out.requires_grad, "the loss is detached from logp: the policy must get gradients")
