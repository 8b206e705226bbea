"""Direct Preference Optimization: log-probabilities of whole responses and the DPO loss.

Taught in chapter 09 (RLHF). With π the policy, π_ref the frozen reference and β > 0:

    loss = −log σ( β [log π(y_w|x) − log π_ref(y_w|x)] − β [log π(y_l|x) − log π_ref(y_l|x)] )

where log π(y|x) sums the log-probabilities of the response's tokens only (not the prompt's).
`sequence_logprobs`, `DPOOutput` and `dpo_loss` (between the export markers) are the lesson's
`#| export course_lib.dpo` cells, copied verbatim by `make lib`.
"""

from __future__ import annotations

import copy
import random
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from course_lib.formats import IGNORE_INDEX, response_labels


def response_batch(
    tokenizer, prompts: Sequence[str], responses: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Chat-rendered (prompt, response) pairs, right-padded, with labels only on the response tokens."""
    if isinstance(prompts, str) or isinstance(responses, str):
        raise TypeError("prompts and responses must be lists of strings, not single strings")
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(
            f"need equally many prompts and responses, at least one "
            f"(got {len(prompts)} and {len(responses)})"
        )
    rows = [
        response_labels(
            tokenizer, [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
        )
        for p, r in zip(prompts, responses)
    ]
    width = max(len(r["input_ids"]) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in rows])
    mask = torch.tensor(
        [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
    )
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- begin export: notebooks/09_rlhf ---
def sequence_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(response | prompt) per row: the sum of the log-probabilities of the labelled tokens."""
    missing = {"input_ids", "attention_mask", "labels"} - set(batch)
    if missing:
        raise ValueError(f"the batch lacks {sorted(missing)}; build it with response_batch()")
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    labels = batch["labels"].to(device)[:, 1:]  # token t is predicted from positions < t
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    keep = labels != IGNORE_INDEX  # the answer's tokens
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * keep).sum(-1)


class DPOOutput(NamedTuple):
    """The mean DPO loss and the implicit rewards β·log(π/π_ref) of the chosen and rejected answers."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The DPO loss from the four sequence log-probabilities (Rafailov et al. 2023, eq. 7)."""
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise ValueError(
            f"the four log-probability tensors must have one shape, got {sorted(shapes)}"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (it scales the log-ratios; typical 0.1), got {beta}")
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DPOOutput(loss, chosen_rewards.detach(), rejected_rewards.detach())


def dpo_batch_loss(policy, ref, tok, batch: list[dict], beta: float):
    """DPO loss of one batch of preference rows (prompt, chosen, rejected), reference frozen."""
    prompts = [r["prompt"] for r in batch]
    b = [response_batch(tok, prompts, [r[side] for r in batch]) for side in ("chosen", "rejected")]
    with torch.no_grad():
        ref_lp = [sequence_logprobs(ref, x) for x in b]
    return dpo_loss(*[sequence_logprobs(policy, x) for x in b], *ref_lp, beta=beta)


def train_dpo(sft, tok, pairs, steps: int, batch_size=16, lr=1e-4, beta=0.1, seed=0):
    """DPO from a copy of `sft` (all weights, AdamW, clip 1.0) on shuffled pairs; logs per step
    the loss and the mean log π − log π_ref of chosen and rejected answers."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(sft).train(), copy.deepcopy(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng, order, log = random.Random(seed), [], {"loss": [], "chosen": [], "rejected": []}
    for _ in range(steps):
        if len(order) < batch_size:  # a new epoch: a new shuffle
            order = rng.sample(range(len(pairs)), len(pairs))
        batch, order = [pairs[j] for j in order[:batch_size]], order[batch_size:]
        out = dpo_batch_loss(policy, ref, tok, batch, beta)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        log["loss"].append(out.loss.item())
        log["chosen"].append(out.chosen_rewards.mean().item() / beta)
        log["rejected"].append(out.rejected_rewards.mean().item() / beta)
    return policy.eval(), log


# --- end export ---
