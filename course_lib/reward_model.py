"""Reward models: a scalar head on the base model, trained on preference pairs with the Bradley–Terry loss.

Taught in chapter 09 (RLHF); the model itself is `models.load_model("reward")`. The learned
reward is compared with the programmatic gold reward (`course_lib.world.preferences.gold_reward`),
which is what the course's preference labels came from.
`bradley_terry_loss` and `pair_loss` (between the export markers) are the lesson's
`#| export course_lib.reward_model` cells, copied verbatim by `make lib`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from course_lib.training import EpochBatches, TrainConfig, train


def chat_texts(tokenizer, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
    """Each (prompt, response) rendered by the chat template as a user turn and an assistant turn."""
    if isinstance(prompts, str) or isinstance(responses, str):
        raise TypeError("prompts and responses must be lists of strings, not single strings")
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(
            f"need equally many prompts and responses, at least one "
            f"(got {len(prompts)} and {len(responses)})"
        )
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
        )
        for p, r in zip(prompts, responses)
    ]


def pair_batches(
    tokenizer, records: Sequence[dict], batch_size: int, seed: int = 0
) -> Iterable[dict]:
    """Shuffled batches {chosen: encoding, rejected: encoding} from {prompt, chosen, rejected} records."""
    if not records or not 1 <= batch_size <= len(records):
        raise ValueError(
            f"batch_size must be in [1, {len(records)}] (the number of pairs), got {batch_size}"
        )
    missing = {"prompt", "chosen", "rejected"} - set(records[0])
    if missing:
        raise ValueError(
            f"preference records need prompt, chosen and rejected; missing {sorted(missing)}"
        )

    def make(rows: list[int]) -> dict:
        chunk = [records[j] for j in rows]
        prompts = [r["prompt"] for r in chunk]
        return {
            side: dict(
                tokenizer(
                    chat_texts(tokenizer, prompts, [r[side] for r in chunk]),
                    add_special_tokens=False,
                    return_tensors="pt",
                    padding=True,
                )
            )
            for side in ("chosen", "rejected")
        }

    return EpochBatches(len(records), batch_size, seed, make)


# --- begin export: notebooks/09_rlhf ---
def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(r_chosen − r_rejected), averaged: the negative log-likelihood of the choices."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"chosen and rejected rewards must have the same shape, got "
            f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}"
        )
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_loss(model, batch: dict) -> torch.Tensor:
    """The Bradley–Terry loss of a reward model on one batch from `pair_batches`."""
    device = next(model.parameters()).device
    r = {
        side: model(**{k: v.to(device) for k, v in batch[side].items()}).logits.squeeze(-1)
        for side in ("chosen", "rejected")
    }  # one score per answer: the head read at its last token
    return bradley_terry_loss(r["chosen"], r["rejected"])


# --- end export ---


@torch.no_grad()
def score(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64
) -> torch.Tensor:
    """The reward model's scalar score of each (prompt, response), as a CPU tensor."""
    texts = chat_texts(tokenizer, prompts, responses)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size], add_special_tokens=False, return_tensors="pt", padding=True
        )
        out.append(model(**enc.to(device)).logits.squeeze(-1).float().cpu())
    return torch.cat(out)


def pair_accuracy(model, tokenizer, records: Sequence[dict], against: str = "labels") -> float:
    """Share of pairs the reward model orders like the annotators (`against="labels"`) or like the gold reward
    (`against="gold"`, using the records' gold_chosen/gold_rejected)."""
    if against not in ("labels", "gold"):
        raise ValueError(f"against must be 'labels' or 'gold', got {against!r}")
    prompts = [r["prompt"] for r in records]
    chosen = score(model, tokenizer, prompts, [r["chosen"] for r in records])
    rejected = score(model, tokenizer, prompts, [r["rejected"] for r in records])
    agree = chosen > rejected
    if against == "gold":
        gold_order = torch.tensor([r["gold_chosen"] > r["gold_rejected"] for r in records])
        agree = agree == gold_order
    return agree.float().mean().item()


def train_reward_model(
    model,
    tokenizer,
    records: Sequence[dict],
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> list[float]:
    """Train a reward model on preference pairs with `training.train` and the Bradley–Terry `pair_loss`
    (AdamW without weight decay, gradient clip 1.0, constant learning rate); returns the loss per step."""
    if steps < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    config = TrainConfig(
        lr=lr,
        max_steps=steps,
        warmup_steps=0,
        min_lr_ratio=1.0,  # with no warm-up: the learning rate stays at lr
        weight_decay=0.0,
        max_grad_norm=1.0,
        progress=False,
    )
    batches = pair_batches(tokenizer, records, batch_size, seed=seed)  # pass e: seed + e
    return train(model, batches, config, loss_fn=pair_loss).loss
