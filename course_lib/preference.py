"""The preference-optimisation family beyond DPO, from scratch: IPO, KTO (unpaired), ORPO (no
reference model) and SimPO (length-normalised, no reference), with the sequence statistics they need.

Taught in chapter 14. DPO itself is `course_lib.dpo.dpo_loss` (chapter 09). Every loss takes
sequence log-probabilities: sums over the answer's tokens (`sum_logps`) and, where the loss
normalises by length, the answers' token counts. The losses between the export markers are the
lesson's `#| export course_lib.preference` cells, copied verbatim by `make lib`; each equals TRL's
(DPOTrainer loss_type="ipo", KTOTrainer, trl.experimental ORPOTrainer and CPOTrainer with
loss_type="simpo").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from course_lib.dpo import dpo_loss, response_batch
from course_lib.formats import IGNORE_INDEX

LOSSES = ("dpo", "ipo", "kto", "orpo", "simpo")


def sequence_stats(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the answer tokens' log-probabilities, number of answer tokens) per row."""
    missing = {"input_ids", "attention_mask", "labels"} - set(batch)
    if missing:
        raise ValueError(f"the batch lacks {sorted(missing)}; build it with dpo.response_batch()")
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    labels = batch["labels"].to(device)[:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    keep = (labels != IGNORE_INDEX).float()
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * keep).sum(-1), keep.sum(-1)


def _same_shape(*tensors: torch.Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"the log-probability tensors must have one shape, got {sorted(shapes)}")


def _positive(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


# --- begin export: notebooks/14_rlvr_preference ---
def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """IPO (Azar et al. 2023): squared distance of the per-token log-ratio margin from 1/(2β)."""
    _same_shape(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    _positive(beta)
    chosen = (policy_chosen - ref_chosen) / chosen_tokens.clamp(min=1)
    rejected = (policy_rejected - ref_rejected) / rejected_tokens.clamp(min=1)
    return ((chosen - rejected - 1 / (2 * beta)) ** 2).mean()


def kto_loss(
    policy: torch.Tensor,
    ref: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024) on unpaired answers, each labelled desirable or not.

    Each answer's log-ratio is compared with a reference point `kl` (an estimate of KL(π‖π_ref),
    detached): desirable answers are pushed above it, undesirable ones below.
    """
    _same_shape(policy, ref, desirable)
    _positive(beta)
    logratio = policy - ref
    good = desirable.bool()
    losses = torch.cat(
        [
            desirable_weight * (1 - torch.sigmoid(beta * (logratio[good] - kl))),
            undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratio[~good]))),
        ]
    )
    return losses.mean()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, computed stably on both sides of −ln 2."""
    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def orpo_loss(
    mean_chosen: torch.Tensor,
    mean_rejected: torch.Tensor,
    nll_chosen: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """ORPO (Hong et al. 2024): SFT loss on the chosen answer − β · log σ(log odds ratio).

    Uses per-token mean log-probabilities p̄; odds(y) = p̄/(1 − p̄) in log space; no reference model.
    """
    _same_shape(mean_chosen, mean_rejected)
    _positive(beta)
    log_odds = (mean_chosen - mean_rejected) - (log1mexp(mean_chosen) - log1mexp(mean_rejected))
    return nll_chosen - beta * F.logsigmoid(log_odds).mean()


def simpo_loss(
    mean_chosen: torch.Tensor,
    mean_rejected: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> torch.Tensor:
    """SimPO (Meng et al. 2024): −log σ(β·(p̄_w − p̄_l) − γ) on per-token mean log-probabilities;
    no reference model, a target margin γ."""
    _same_shape(mean_chosen, mean_rejected)
    _positive(beta)
    return -F.logsigmoid(beta * (mean_chosen - mean_rejected) - gamma).mean()


# --- end export ---


def pair_batches(tokenizer, records: Sequence[dict]) -> tuple[dict, dict]:
    """Chosen and rejected answers of preference records as two `response_batch`es."""
    if not records or "chosen" not in records[0]:
        raise ValueError("need preference records with prompt, chosen and rejected")
    prompts = [r["prompt"] for r in records]
    return (
        response_batch(tokenizer, prompts, [r["chosen"] for r in records]),
        response_batch(tokenizer, prompts, [r["rejected"] for r in records]),
    )


def preference_step_loss(
    name: str,
    policy,
    chosen: dict,
    rejected: dict,
    ref: tuple[torch.Tensor, ...] | None,
    beta: float,
    gamma: float = 0.5,
    kto_kl: torch.Tensor | None = None,
) -> torch.Tensor:
    """The named loss of the family on one batch of pairs (ref = (chosen sums, rejected sums) of π_ref).

    KTO here sees each pair as two unpaired answers (chosen desirable, rejected undesirable), with the
    reference point `kto_kl` (0 if None).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown preference loss {name!r}; use one of {LOSSES}")
    if name in ("dpo", "ipo", "kto") and ref is None:
        raise ValueError(f"{name} needs the reference model's log-probabilities (ref)")
    lp_c, n_c = sequence_stats(policy, chosen)
    lp_r, n_r = sequence_stats(policy, rejected)
    if name == "dpo":
        return dpo_loss(lp_c, lp_r, ref[0], ref[1], beta=beta).loss
    if name == "ipo":
        return ipo_loss(lp_c, lp_r, ref[0], ref[1], n_c, n_r, beta=beta)
    if name == "kto":
        kl = torch.zeros(()) if kto_kl is None else kto_kl
        flags = torch.cat([torch.ones_like(lp_c), torch.zeros_like(lp_r)])
        return kto_loss(torch.cat([lp_c, lp_r]), torch.cat([ref[0], ref[1]]), flags, kl, beta=beta)
    if name == "orpo":
        nll = -(lp_c.sum() / n_c.sum())
        return orpo_loss(lp_c / n_c, lp_r / n_r, nll, beta=beta)
    return simpo_loss(lp_c / n_c, lp_r / n_r, beta=beta, gamma=gamma)


DEFAULT_BETA = {"dpo": 0.1, "ipo": 0.1, "kto": 0.1, "orpo": 0.1, "simpo": 2.0}


@torch.no_grad()
def reference_sums(ref, chosen: dict, rejected: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """π_ref's summed log-probabilities of the chosen and rejected answers (computed once)."""
    return sequence_stats(ref, chosen)[0], sequence_stats(ref, rejected)[0]


def train_preference(
    name: str,
    policy,
    ref,
    tokenizer,
    pairs: Sequence[dict],
    probe: Sequence[dict],
    *,
    steps: int = 60,
    batch_size: int = 16,
    lr: float = 1e-4,
    beta: float | None = None,
    seed: int = 0,
    log_every: int = 10,
) -> dict[str, list[float]]:
    """Train `policy` in place with one loss of the family (AdamW, constant lr); every `log_every`
    steps record the mean summed log-probability of the probe pairs' chosen and rejected answers.

    The same pairs, order, steps and learning rate for every loss: only the loss changes. KTO's
    reference point is the batch's mean log-ratio on mismatched answers (as TRL's), clamped at 0.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown preference loss {name!r}; use one of {LOSSES}")
    if len(pairs) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} pairs, got {len(pairs)}")
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError("the policy has no trainable parameter: call policy.requires_grad_(True)")
    beta = DEFAULT_BETA[name] if beta is None else beta
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    probe_c, probe_r = pair_batches(tokenizer, probe)
    history: dict[str, list[float]] = {"step": [], "chosen": [], "rejected": []}

    def log(step: int) -> None:
        with torch.no_grad():
            policy.eval()
            history["step"].append(step)
            history["chosen"].append(sequence_stats(policy, probe_c)[0].mean().item())
            history["rejected"].append(sequence_stats(policy, probe_r)[0].mean().item())

    log(0)
    for step in range(1, steps + 1):
        idx = torch.randperm(len(pairs), generator=gen)[:batch_size].tolist()
        chosen, rejected = pair_batches(tokenizer, [pairs[i] for i in idx])
        ref_sums = reference_sums(ref, chosen, rejected) if name in ("dpo", "ipo", "kto") else None
        kto_kl = None
        if name == "kto":  # reference point: answers paired with the wrong prompts
            shifted = [
                dict(pairs[i], prompt=pairs[j]["prompt"]) for i, j in zip(idx, idx[1:] + idx[:1])
            ]
            mis, _ = pair_batches(tokenizer, shifted)
            with torch.no_grad():
                kto_kl = (
                    (sequence_stats(policy, mis)[0] - sequence_stats(ref, mis)[0])
                    .mean()
                    .clamp(min=0)
                )
        policy.train()
        loss = preference_step_loss(name, policy, chosen, rejected, ref_sums, beta, kto_kl=kto_kl)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if step % log_every == 0 or step == steps:
            log(step)
    policy.eval()
    return history
