"""Checks for the chapter 14 exercises (RLVR and the preference family): GRPO's group advantages,
its per-token loss with the k3 KL term, and SimPO from per-token log-probabilities.

Each check runs the student's function on small tensors where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.course.checks import call_unchanged, check, expect, expect_close
from course_lib.grpo import group_advantages, grpo_loss


def _scalar(value, what: str):
    expect(
        isinstance(value, torch.Tensor) and value.dim() == 0,
        f"return {what} as a 0-d tensor, got "
        f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}",
    )
    return value


# --- 14.1: group-relative advantages --------------------------------------------------------------


def advantage_case() -> tuple[torch.Tensor, int]:
    """Three groups of four rewards (the middle one all equal) in GRPO's order: group by group."""
    return torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 2.0, 0.0, 1.5]), 4


@check("14.1 group-relative advantages")
def check_group_advantages(student_fn) -> None:
    """The student's advantages(rewards [N·G], group_size) -> [N·G], standardised per group."""
    rewards, g = advantage_case()
    out = call_unchanged(student_fn, rewards.clone(), g, names=("rewards", None))
    expect(torch.is_tensor(out), "return a tensor with one advantage per answer")
    expect(
        tuple(out.shape) == tuple(rewards.shape),
        f"one advantage per answer: shape {tuple(rewards.shape)}, got {tuple(out.shape)}",
    )
    expect(
        bool(torch.isfinite(out).all()),
        "a group whose rewards are all equal has std 0: add eps = 1e-4 to the std (its "
        "advantages must be 0, not NaN or inf)",
    )
    grouped = rewards.view(-1, g)
    centred = grouped - grouped.mean(1, keepdim=True)
    expect_close(
        out,
        group_advantages(rewards, g),
        1e-4,
        "the advantages",
        hints=[
            (
                (rewards - rewards.mean()) / (rewards.std() + 1e-4),
                "you standardised over the whole "
                "batch: the mean and std are per group of group_size answers to one prompt",
            ),
            (
                centred.view(-1),
                "the advantages are not divided by the group's std (that is Dr. "
                "GRPO's choice; here divide by std + 1e-4)",
            ),
            (
                (centred / (grouped.std(1, unbiased=False, keepdim=True) + 1e-4)).view(-1),
                "that std has no Bessel correction: use the sample std (unbiased, divide by G − 1), "
                "as torch.std and TRL do",
            ),
            (
                group_advantages(rewards.view(g, -1).T.reshape(-1), g).view(-1, g).T.reshape(-1),
                "the groups are taken across the batch: answers to one prompt are consecutive, "
                "view(-1, group_size)",
            ),
        ],
    )


# --- 14.2: GRPO's per-token loss with the k3 KL term ----------------------------------------------


def loss_case() -> dict[str, torch.Tensor]:
    """Two answers of unequal length (padding after), ratios inside and outside the clip range."""
    g = torch.Generator().manual_seed(14)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    logps = -torch.rand(2, 6, generator=g) * 2 - 0.1
    old = logps + torch.tensor([[0.5, -0.5, 0.05, 0.4, -0.3, 0.0], [-0.6, 0.3, 9.0, 9.0, 9.0, 9.0]])
    ref = logps + torch.randn(2, 6, generator=g) * 0.5
    return {
        "logps": logps,
        "old_logps": old,
        "ref_logps": ref,
        "advantages": torch.tensor([1.2, -0.8]),
        "mask": mask,
    }


def _variant(case, beta, eps, *, clip=True, use_max=False, kl="k3", agg="grpo", mask_kl=True):
    """GRPO's loss with one switchable mistake (the right one with the defaults)."""
    logps, old, ref, adv, mask = (
        case[k] for k in ("logps", "old_logps", "ref_logps", "advantages", "mask")
    )
    ratio = torch.exp(logps - old)
    clipped = ratio.clamp(1 - eps, 1 + eps) if clip else ratio
    a = adv.unsqueeze(1)
    pick = torch.max if use_max else torch.min
    per_token = -pick(ratio * a, clipped * a)
    d = ref - logps
    kls = {"k3": torch.exp(d) - d - 1, "k1": -d, "reversed": torch.exp(-d) + d - 1}
    per_token = per_token + beta * kls[kl]
    m = mask if mask_kl else torch.ones_like(mask)
    if agg == "tokens":
        return (per_token * m).sum() / m.sum()
    return ((per_token * m).sum(-1) / m.sum(-1)).mean()


@check("14.2 GRPO's per-token loss with the k3 KL term")
def check_grpo_token_loss(student_fn) -> None:
    """The student's grpo_token_loss(logps, old_logps, ref_logps, advantages, mask, beta, epsilon)."""
    case = loss_case()
    args = [case[k].clone() for k in ("logps", "old_logps", "ref_logps", "advantages", "mask")]
    out = _scalar(
        call_unchanged(
            student_fn,
            *args,
            0.1,
            0.2,
            names=("logps", "old_logps", "ref_logps", "advantages", "mask"),
        ),
        "the loss",
    )
    want = grpo_loss(
        *[case[k] for k in ("logps", "old_logps", "ref_logps", "advantages", "mask")],
        beta=0.1,
        epsilon=0.2,
        loss_type="grpo",
        kl_correction=False,
    )
    expect_close(
        out,
        want,
        1e-5,
        "the loss",
        hints=[
            (-want, "the sign is flipped: the loss is MINUS the clipped objective (plus β·KL)"),
            (
                _variant(case, 0.1, 0.2, use_max=True),
                "you took the max of the two terms: PPO/GRPO "
                "take the min (the pessimistic one), so a clipped ratio stops the gradient",
            ),
            (_variant(case, 0.1, 0.2, clip=False), "the ratio is not clipped to [1 − ε, 1 + ε]"),
            (
                _variant(case, 0.1, 0.2, kl="k1"),
                "that KL term is k1 = log π − log π_ref: use k3 = "
                "e^d − d − 1 with d = log π_ref − log π",
            ),
            (
                _variant(case, 0.1, 0.2, kl="reversed"),
                "k3's d is reversed: d = log π_ref − log π "
                "(the ratio π_ref/π for tokens sampled from π)",
            ),
            (
                _variant(case, 0.1, 0.2, agg="tokens"),
                "you averaged over all tokens of the batch "
                "(DAPO/BNPO): GRPO averages each answer over its own tokens, then over answers",
            ),
            (
                _variant(case, 0.1, 0.2, mask_kl=False),
                "the padding positions count: multiply by the "
                "mask and divide by each answer's own number of tokens",
            ),
        ],
    )


# --- 14.3: SimPO from per-token log-probabilities -------------------------------------------------


def simpo_case() -> dict[str, torch.Tensor]:
    """Chosen answers shorter than the rejected ones, so that length normalisation matters."""
    g = torch.Generator().manual_seed(41)
    chosen_mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    rejected_mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    chosen = -torch.rand(2, 6, generator=g) * 2 - 0.5
    rejected = -torch.rand(2, 6, generator=g) * 1.5 - 0.2
    return {
        "chosen": chosen,
        "chosen_mask": chosen_mask,
        "rejected": rejected,
        "rejected_mask": rejected_mask,
    }


def _simpo_ref(c, cm, r, rm, beta, gamma, *, norm=True, gamma_mode="minus", sign=1.0, pad=True):
    if pad:
        c, r = c * cm, r * rm
    if norm:
        mc = c.sum(-1) / (cm.sum(-1) if pad else c.size(1))
        mr = r.sum(-1) / (rm.sum(-1) if pad else r.size(1))
    else:
        mc, mr = c.sum(-1), r.sum(-1)
    margin = {
        "minus": beta * (mc - mr) - gamma,
        "none": beta * (mc - mr),
        "inside": beta * (mc - mr - gamma),
    }[gamma_mode]
    return -F.logsigmoid(sign * margin).mean()


@check("14.3 SimPO from per-token log-probabilities")
def check_simpo(student_fn) -> None:
    """The student's simpo(chosen, chosen_mask, rejected, rejected_mask, beta, gamma) -> loss."""
    case = simpo_case()
    args = [case[k].clone() for k in ("chosen", "chosen_mask", "rejected", "rejected_mask")]
    out = _scalar(
        call_unchanged(
            student_fn,
            *args,
            2.0,
            0.5,
            names=("chosen", "chosen_mask", "rejected", "rejected_mask"),
        ),
        "the loss",
    )
    c, cm, r, rm = (case[k] for k in ("chosen", "chosen_mask", "rejected", "rejected_mask"))
    expect_close(
        out,
        _simpo_ref(c, cm, r, rm, 2.0, 0.5),
        1e-5,
        "the SimPO loss",
        hints=[
            (
                _simpo_ref(c, cm, r, rm, 2.0, 0.5, norm=False),
                "you summed the log-probabilities: "
                "SimPO divides each answer's sum by its number of tokens (length normalisation)",
            ),
            (
                _simpo_ref(c, cm, r, rm, 2.0, 0.5, gamma_mode="none"),
                "the target margin γ is missing: −log σ(β·(mean_w − mean_l) − γ)",
            ),
            (
                _simpo_ref(c, cm, r, rm, 2.0, 0.5, gamma_mode="inside"),
                "γ is multiplied by β: it is subtracted after the scaling, β·(mean_w − mean_l) − γ",
            ),
            (
                _simpo_ref(c, cm, r, rm, 2.0, 0.5, sign=-1.0),
                "chosen and rejected are swapped (or the "
                "sign is): the loss must fall as the chosen answer gains",
            ),
            (
                _simpo_ref(c, cm, r, rm, 2.0, 0.5, pad=False),
                "the padding counts: sum only the masked "
                "tokens and divide by each answer's own length",
            ),
        ],
    )
