"""Catastrophic forgetting, how to tell lost knowledge from a shifted prior, and two cures.

Taught in chapter 03 (full fine-tuning): a domain fine-tune raises the general-domain
perplexity; `fact_recall` asks whether the pretrained facts are still ranked first, raw and
after removing the answer prior (calibrated), to tell a shifted output prior from lost
knowledge; mixing general documents into the fine-tuning data (replay) or pulling the
weights back towards the pretrained ones where they matter (elastic weight consolidation,
Kirkpatrick et al. 2017) reduces the rise.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence

import torch

NEUTRAL_SUBJECT = "Someone"  # the content-free prompt of calibrated recall: no person named


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


def fact_recall(model: torch.nn.Module, tokenizer) -> dict[str, float]:
    """Share of the corpus's (person, attribute) facts whose true value the model ranks first.

    "raw": candidates ranked by log p(value | "<name> lives in"), as in
    `course_lib.build.base_model.corpus_fact_recall`. "calibrated": ranked by
    log p(value | prompt) − log p(value | the same prompt about "Someone"), which cancels a
    shift of the prior over answers (Zhao et al. 2021's contextual calibration). Raw recall that
    falls while calibrated recall holds means the prior moved, not the knowledge.
    """
    from course_lib.evaluation import continuation_logprobs
    from course_lib.world.documents import fact_statement
    from course_lib.world.entities import FACT_ATTRIBUTES, attribute_values, make_world

    if not hasattr(tokenizer, "__call__"):
        raise TypeError("tokenizer must be a Hugging Face tokenizer (the model's own)")
    world = make_world()
    facts = [(p, a) for p in world.people for a in FACT_ATTRIBUTES]
    cands = {a: attribute_values(a, world) for a in FACT_ATTRIBUTES}
    prompts = [fact_statement(p, a, 0)[0] for p, a in facts]
    neutral = {a: fact_statement(world.people[0], a, 0, NEUTRAL_SUBJECT)[0] for a in cands}
    flat_p = [q for q, (_, a) in zip(prompts, facts) for _ in cands[a]]
    flat_c = [" " + c for _, a in facts for c in cands[a]]
    scores = continuation_logprobs(model, tokenizer, flat_p, flat_c)
    prior_p = [neutral[a] for a in cands for _ in cands[a]]
    prior_c = [" " + c for a in cands for c in cands[a]]
    prior = dict(
        zip(zip(prior_p, prior_c), continuation_logprobs(model, tokenizer, prior_p, prior_c))
    )
    raw = calibrated = k = 0
    for p, a in facts:
        values = cands[a]
        s = scores[k : k + len(values)]
        k += len(values)
        cal = [x - prior[(neutral[a], " " + v)] for x, v in zip(s, values)]
        raw += values[max(range(len(values)), key=s.__getitem__)] == p.fact(a)
        calibrated += values[max(range(len(values)), key=cal.__getitem__)] == p.fact(a)
    return {"raw": raw / len(facts), "calibrated": calibrated / len(facts)}
