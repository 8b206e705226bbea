"""Catastrophic forgetting and two cures: replay of general data and EWC.

Taught in chapter 03 (full fine-tuning): a domain fine-tune raises the general-domain
perplexity; mixing general documents into the fine-tuning data (replay) or pulling the
weights back towards the pretrained ones where they matter (elastic weight consolidation,
Kirkpatrick et al. 2017) reduces the rise.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence

import torch


def replay_mix(
    domain: Sequence[str], general: Sequence[str], replay_share: float, seed: int = 0
) -> list[str]:
    """All `domain` texts plus enough `general` texts to make up `replay_share` of the mix, shuffled."""
    if isinstance(domain, str) or isinstance(general, str):
        raise TypeError("domain and general must be lists of texts, not single strings")
    if not 0 <= replay_share < 1:
        raise ValueError(
            f"replay_share must be in [0, 1) (0.25 = a quarter general text), got {replay_share}"
        )
    if not domain:
        raise ValueError("domain must hold at least one text")
    n_general = round(len(domain) * replay_share / (1 - replay_share))
    if n_general > len(general):
        raise ValueError(
            f"a replay share of {replay_share} needs {n_general} general texts, got "
            f"{len(general)}: pass more general documents or a smaller share"
        )
    rng = random.Random(seed)
    mix = list(domain) + rng.sample(list(general), n_general)
    rng.shuffle(mix)
    return mix


def _loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The HF model's own loss for a batch on the model's device."""
    device = next(model.parameters()).device
    return model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}).loss


def fisher_diagonal(
    model: torch.nn.Module, batches: Iterable[dict], n_batches: int
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: the mean over batches of each trainable parameter's squared gradient.

    With batches of one example this is the textbook empirical Fisher; bigger batches give
    a cheaper approximation (squares of batch-mean gradients, smaller values).
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters to measure")
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training, seen = model.training, 0
    model.eval()  # no dropout: the gradients of the model itself
    for batch in batches:
        if seen == n_batches:
            break
        model.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
        seen += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if seen < n_batches:
        raise ValueError(f"batches yielded only {seen} batches, fewer than n_batches={n_batches}")
    return {n: f / seen for n, f in fisher.items()}


def ewc_penalty(
    model: torch.nn.Module,
    fisher: dict[str, torch.Tensor],
    anchor: dict[str, torch.Tensor],
    lam: float,
) -> torch.Tensor:
    """EWC penalty (lam / 2) * sum_i F_i (theta_i - theta*_i)^2 over the parameters in `fisher`."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    params = dict(model.named_parameters())
    missing = [n for n in fisher if n not in params or n not in anchor]
    if missing:
        raise ValueError(
            f"fisher/anchor name parameters the model lacks (or anchor misses): {missing[:3]}; "
            "compute both on this model (anchor = {n: p.detach().clone()})"
        )
    total = sum((fisher[n] * (params[n] - anchor[n]) ** 2).sum() for n in fisher)
    return 0.5 * lam * total


def ewc_loss(
    fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], lam: float
) -> Callable[[torch.nn.Module, dict], torch.Tensor]:
    """A `loss_fn` for course_lib.training.train: the model's loss plus the EWC penalty."""
    if not fisher:
        raise ValueError("fisher is empty: compute it with fisher_diagonal first")

    def loss_fn(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        return model(**batch).loss + ewc_penalty(model, fisher, anchor, lam)

    return loss_fn
