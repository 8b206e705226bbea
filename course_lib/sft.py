"""Supervised fine-tuning (instruction tuning): chat-formatted batches with the loss on the response,
batched greedy answers, and exact match per skill.

Taught in chapter 08 (instruction tuning); the masking itself is introduced in chapter 02 (`formats`).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import torch

from .evaluation import exact_match
from .formats import IGNORE_INDEX, alpaca_to_messages, response_labels
from .training import EpochBatches


def sft_example(tokenizer, record: dict, mask_prompt: bool = True) -> dict[str, list[int]]:
    """One record as chat tokens; labels on the response only (mask_prompt=True) or on every token."""
    messages = record.get("messages") or alpaca_to_messages(record)
    ex = response_labels(tokenizer, messages)
    if not mask_prompt:
        ex = {"input_ids": ex["input_ids"], "labels": list(ex["input_ids"])}
    return ex


def pad_examples(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad {input_ids, labels} examples into a batch with an attention mask (labels −100 on padding)."""
    width = max(len(e["input_ids"]) for e in examples)
    fill = lambda seq, value: list(seq) + [value] * (width - len(seq))  # noqa: E731
    return {"input_ids": torch.tensor([fill(e["input_ids"], pad_id) for e in examples]),
            "attention_mask": torch.tensor([fill([1] * len(e["input_ids"]), 0) for e in examples]),
            "labels": torch.tensor([fill(e["labels"], IGNORE_INDEX) for e in examples])}


def sft_batches(tokenizer, records: Sequence[dict], batch_size: int, mask_prompt: bool = True,
                seed: int = 0) -> Iterable[dict]:
    """Shuffled padded SFT batches, a new order each epoch (for `training.train`)."""
    if not records or not 1 <= batch_size <= len(records):
        raise ValueError(f"batch_size must be in [1, {len(records)}] (the number of records), got {batch_size}")
    examples = [sft_example(tokenizer, r, mask_prompt) for r in records]
    return EpochBatches(len(examples), batch_size, seed,
                        lambda rows: pad_examples([examples[j] for j in rows], tokenizer.pad_token_id))


def user_text(record: dict) -> str:
    """The user turn of an instruction record (instruction, then the input on a new line if any)."""
    return (record.get("messages") or alpaca_to_messages(record))[0]["content"]


@torch.no_grad()
def answer(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 64,
           context: Sequence[str] | None = None) -> list[str]:
    """Greedy replies to user prompts through the chat template (batched, left padding).

    `context`, if given, is one text per prompt placed before it in the user turn (retrieval-style).
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    if context is not None and len(context) != len(prompts):
        raise ValueError(f"context needs one text per prompt ({len(prompts)}), got {len(context)}")
    users = [f"{c}\n{p}" for c, p in zip(context, prompts)] if context is not None else list(prompts)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": u}], tokenize=False,
                                           add_generation_prompt=True) for u in users]
    model.eval()
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    replies = []
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], add_special_tokens=False, return_tensors="pt",
                            padding=True).to(device)
            out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            replies += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return replies


def exact_match_by_skill(model, tokenizer, records: Sequence[dict], max_new_tokens: int = 32) -> dict[str, float]:
    """Exact match of the model's greedy answers per skill, and over all records ('all')."""
    if not records or "skill" not in records[0]:
        raise ValueError("records must be instruction records with a 'skill' field (instructions_*.jsonl)")
    preds = answer(model, tokenizer, [user_text(r) for r in records], max_new_tokens)
    by_skill: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_skill[r["skill"]].append(i)
    scores = {s: exact_match([preds[i] for i in idx], [records[i]["output"] for i in idx])
              for s, idx in sorted(by_skill.items())}
    scores["all"] = exact_match(preds, [r["output"] for r in records])
    return scores
