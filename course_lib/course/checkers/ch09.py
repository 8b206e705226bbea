"""Checks for the chapter 09 exercises (RLHF: Bradley–Terry, DPO, KL-penalised rewards, GAE, PPO clip).

Each check runs the student's function on small tensors where the common mistakes give a
recognisably wrong answer, compares with `course_lib.reward_model`, `course_lib.dpo` and
`course_lib.ppo`, and names the mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib import dpo, ppo
from course_lib.course.checks import check, expect, expect_close


def _scalar(value, what: str):
    expect(
        isinstance(value, torch.Tensor) and value.dim() == 0,
        f"return {what} as a 0-d tensor (a mean over the batch), got "
        f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}",
    )
    return value


@check("09.1 Bradley–Terry loss")
def check_bradley_terry(student_fn) -> None:
    """The student's bt_loss(r_chosen, r_rejected) -> mean −log σ(r_chosen − r_rejected)."""
    rc = torch.tensor([2.0, 0.5, -1.0, 3.0, 0.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0, -2.0, 1.0, 0.0])
    out = _scalar(student_fn(rc, rr), "the loss")
    d = (rc - rr).detach()
    want = -F.logsigmoid(d).mean().item()
    expect_close(
        out.detach(),
        want,
        1e-5,
        "the Bradley–Terry loss",
        hints=[
            (
                -F.logsigmoid(-d).mean().item(),
                "chosen and rejected are swapped: the loss is −log σ(r_chosen − r_rejected); "
                "yours rewards preferring the rejected answer",
            ),
            (
                -torch.sigmoid(d).mean().item(),
                "you used sigmoid instead of logsigmoid: that is minus the mean "
                "PROBABILITY, not the negative log-likelihood",
            ),
            (
                (1 - torch.sigmoid(d)).mean().item(),
                "1 − σ is not a log-likelihood: take −log σ (F.logsigmoid)",
            ),
            (
                F.logsigmoid(d).mean().item(),
                "the minus sign is missing: minimising log σ would push chosen BELOW rejected",
            ),
            (
                -F.logsigmoid(d).sum().item(),
                "you summed over the pairs: take the mean, so the loss does not grow "
                "with the batch size",
            ),
        ],
    )
    expect(
        out.requires_grad,
        "the loss is detached from the rewards: don't call .item()/.detach() or rebuild "
        "tensors inside, the reward model must get gradients",
    )
    big = student_fn(torch.tensor([200.0]), torch.tensor([0.0]))
    expect(
        torch.isfinite(big).all() and abs(float(big)) < 1e-6,
        "a margin of 200 gives inf/nan or a nonzero loss: use F.logsigmoid(x), which is stable, instead of "
        "torch.log(torch.sigmoid(x))",
    )
    expect(
        torch.isfinite(student_fn(torch.tensor([0.0]), torch.tensor([200.0]))).all(),
        "a margin of −200 gives inf: torch.log(torch.sigmoid(−200)) underflows; use F.logsigmoid",
    )


@check("09.2 DPO loss")
def check_dpo_loss(student_fn) -> None:
    """The student's dpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> mean loss."""
    pc = torch.tensor([-10.0, -12.0, -7.0, -20.0])
    pr = torch.tensor([-11.0, -9.0, -8.0, -15.0])
    rc = torch.tensor([-14.0, -12.5, -6.0, -22.0])
    rr = torch.tensor([-9.0, -10.0, -8.5, -16.0])
    beta = 0.5
    out = _scalar(student_fn(pc, pr, rc, rr, beta), "the loss")
    want = dpo.dpo_loss(pc, pr, rc, rr, beta=beta).loss.item()
    margin = (pc - rc) - (pr - rr)
    expect_close(
        out,
        want,
        1e-5,
        "the DPO loss (β = 0.5)",
        hints=[
            (
                -F.logsigmoid(beta * (pc - pr)).mean().item(),
                "the reference log-probabilities are missing: the "
                "implicit reward is β·(log π − log π_ref), not β·log π",
            ),
            (
                -(beta * F.logsigmoid(margin)).mean().item(),
                "β is applied outside the sigmoid: it must scale the "
                "log-ratio margin INSIDE σ(β·…)",
            ),
            (-F.logsigmoid(margin).mean().item(), "β is missing: σ(β·margin), β = 0.5 here"),
            (
                -F.logsigmoid(-beta * margin).mean().item(),
                "the sign is swapped: chosen minus rejected (and policy minus reference) inside σ",
            ),
            (F.logsigmoid(beta * margin).mean().item(), "the leading minus sign is missing"),
            (
                -F.logsigmoid(beta * ((rc - pc) - (rr - pr))).mean().item(),
                "policy and reference are swapped: the log-ratio is log π − log π_ref",
            ),
        ],
    )
    same = student_fn(pc, pr, pc, pr, 0.1)
    expect(
        abs(float(same) - 0.693147) < 1e-4,
        "with π = π_ref every log-ratio is 0 and the loss must be "
        f"log 2 = 0.6931, got {float(same):.4f}",
    )


def _kl_case():
    mask = torch.tensor(
        [
            [0.0, 0.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        ]
    )
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 6, generator=g) * 3
    ref_logp = -torch.rand(3, 6, generator=g) * 3
    scores = torch.tensor([1.5, -2.0, 0.75])
    return scores, logp, ref_logp, mask


@check("09.3 KL-penalised per-token rewards")
def check_kl_rewards(student_fn) -> None:
    """The student's kl_rewards(scores, logp, ref_logp, mask, kl_coef) -> rewards [B, T]."""
    scores, logp, ref_logp, mask = _kl_case()
    beta = 0.2
    out = student_fn(scores.clone(), logp.clone(), ref_logp.clone(), mask.clone(), beta)
    if isinstance(out, tuple):
        out = out[0]
    want, _ = ppo.kl_penalized_rewards(scores, logp, ref_logp, mask, beta)
    kl = (logp - ref_logp) * mask
    rows = torch.arange(3)
    last = torch.tensor([4, 2, 5])
    first = torch.tensor([2, 1, 3])

    def with_score(base, where):
        r = base.clone()
        r[rows, where] += scores
        return r

    expect_close(
        out,
        want,
        1e-5,
        "the per-token rewards",
        hints=[
            (
                with_score(beta * kl, last),
                "the KL term has the wrong sign: the reward is −β·(log π − log π_ref); "
                "yours pays the policy for moving away from the reference",
            ),
            (
                -beta * kl,
                "the sequence score was not added: put scores[i] on the LAST response token of row i",
            ),
            (
                with_score(-beta * kl, first),
                "the score went to the FIRST response token: it belongs on the last one "
                "(the reward arrives when the answer is complete)",
            ),
            (
                with_score(-beta * kl, torch.full((3,), 5)),
                "the score went to the last position of the row, which "
                "can be padding: use the last position where mask is 1",
            ),
            (
                with_score(-beta * (logp - ref_logp), last),
                "the KL penalty was applied to padding and prompt tokens too: multiply by the mask",
            ),
            (
                with_score(-kl, last),
                "kl_coef is missing: the penalty is kl_coef·(log π − log π_ref)",
            ),
        ],
    )


def _gae_case():
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(1)
    rewards = torch.randn(2, 7, generator=g) * mask
    values = torch.randn(2, 7, generator=g)  # garbage outside the mask on purpose
    return rewards, values, mask


def _gae_no_mask(rewards, values, gamma, lam):
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        running = rewards[:, t] + gamma * nxt - values[:, t] + gamma * lam * running
        adv[:, t] = running
    return adv


@check("09.4 generalised advantage estimation")
def check_gae(student_fn) -> None:
    """The student's gae(rewards, values, mask, gamma, lam) -> advantages [B, T]."""
    rewards, values, mask = _gae_case()
    gamma, lam = 0.9, 0.5
    out = student_fn(rewards.clone(), values.clone(), mask.clone(), gamma, lam)
    if isinstance(out, tuple):
        out = out[0]
    want, _ = ppo.gae(rewards, values, mask, gamma=gamma, lam=lam)
    expect_close(
        out,
        want,
        1e-5,
        "the advantages (γ = 0.9, λ = 0.5)",
        hints=[
            (
                ppo.gae(rewards, values, mask, gamma=lam, lam=gamma)[0],
                "γ and λ are swapped: δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γ·λ·A_{t+1}",
            ),
            (
                ppo.gae(rewards, values, mask, gamma=gamma, lam=1.0)[0],
                "that is λ = 1 (Monte Carlo returns minus V): decay the running sum by γ·λ",
            ),
            (
                ppo.gae(rewards, values, mask, gamma=gamma, lam=0.0)[0],
                "that is λ = 0 (one-step TD errors only): add γ·λ·A_{t+1}",
            ),
            (
                ppo.gae(rewards, values, mask, gamma=1.0, lam=lam)[0],
                "γ is missing in δ_t = r_t + γ·V_{t+1} − V_t",
            ),
            (
                _gae_no_mask(rewards, values, gamma, lam),
                "no masking: values of padding and prompt positions leak "
                "into the advantages; zero the values outside the mask and "
                "multiply the running advantage by mask[:, t]",
            ),
            (
                _gae_no_mask(rewards, values * mask, gamma, lam),
                "the running advantage is not masked: padding and "
                "prompt positions must get advantage 0",
            ),
        ],
    )


@check("09.5 PPO clipped policy loss")
def check_clip_loss(student_fn) -> None:
    """The student's clip_loss(logp, old_logp, advantages, mask, clip) -> scalar loss to minimise."""
    logp = torch.tensor([[-1.0, -0.5, -2.0, -0.1], [-1.2, -3.0, -0.2, -0.7]], requires_grad=True)
    old = torch.tensor([[-1.5, -0.4, -1.0, -0.9], [-1.0, -2.0, -0.9, -0.7]])
    adv = torch.tensor([[1.0, -2.0, 0.5, -1.0], [2.0, 1.0, -1.5, 0.3]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    eps = 0.2
    out = student_fn(logp, old, adv, mask, eps)
    if isinstance(out, tuple):
        out = out[0]
    out = _scalar(out, "the loss")
    want = ppo.policy_loss(logp.detach(), old, adv, mask, clip=eps)[0].item()
    ratio = torch.exp(logp.detach() - old)
    un, cl = -adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps)
    m = lambda x: ((x * mask).sum() / mask.sum()).item()  # noqa: E731
    expect_close(
        out.detach(),
        want,
        1e-5,
        "the clipped surrogate loss (ε = 0.2)",
        hints=[
            (
                m(torch.minimum(un, cl)),
                "min instead of max: with a loss (−A·ρ) the pessimistic bound is the MAX; "
                "min would be the optimistic one and removes the brake",
            ),
            (
                -m(torch.minimum(adv * ratio, adv * ratio.clamp(1 - eps, 1 + eps))) * -1,
                "the sign is flipped: return −min(A·ρ, A·clip(ρ)) averaged, a loss to MINIMISE",
            ),
            (
                m(torch.maximum(-adv.clamp(-eps, eps) * ratio, un)),
                "you clipped the advantage: clip the RATIO ρ to [1 − ε, 1 + ε]",
            ),
            (m(un), "no clipping at all: that is the plain policy-gradient surrogate"),
            (
                torch.maximum(un, cl).mean().item(),
                "the mean includes the masked (padding) positions: average over mask == 1 only",
            ),
            (
                m(
                    torch.maximum(
                        -adv * (logp.detach() - old),
                        -adv * (logp.detach() - old).clamp(1 - eps, 1 + eps),
                    )
                ),
                "the ratio is exp(log π − log π_old), not the difference of log-probabilities",
            ),
        ],
    )
    expect(
        out.requires_grad, "the loss is detached from logp: the policy must get gradients through ρ"
    )
