"""Supervised fine-tuning (instruction tuning): chat-formatted batches with the loss on the response,
packing, replay of general text, exact match per skill of the greedy chat replies
(`generation.generate(..., chat=True)`), and one SFT run (full or LoRA) at a given budget.

Taught in chapter 08 (instruction tuning); the masking itself is introduced in chapter 02 (`formats`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import torch

from course_lib.evaluation import exact_match
from course_lib.formats import IGNORE_INDEX, alpaca_to_messages, packed_attention, response_labels
from course_lib.generation import generate
from course_lib.training import EpochBatches


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
    return {
        "input_ids": torch.tensor([fill(e["input_ids"], pad_id) for e in examples]),
        "attention_mask": torch.tensor([fill([1] * len(e["input_ids"]), 0) for e in examples]),
        "labels": torch.tensor([fill(e["labels"], IGNORE_INDEX) for e in examples]),
    }


def sft_batches(
    tokenizer, records: Sequence[dict], batch_size: int, mask_prompt: bool = True, seed: int = 0
) -> Iterable[dict]:
    """Shuffled padded SFT batches, a new order each epoch (for `training.train`)."""
    if not records or not 1 <= batch_size <= len(records):
        raise ValueError(
            f"batch_size must be in [1, {len(records)}] (the number of records), got {batch_size}"
        )
    examples = [sft_example(tokenizer, r, mask_prompt) for r in records]
    return EpochBatches(
        len(examples),
        batch_size,
        seed,
        lambda rows: pad_examples([examples[j] for j in rows], tokenizer.pad_token_id),
    )


def mixed_batches(
    tokenizer,
    records: Sequence[dict],
    texts: Sequence[str],
    batch_size: int,
    max_length: int = 128,
    seed: int = 0,
) -> Iterable[dict]:
    """SFT batches with plain `texts` (e.g. corpus documents, loss on every token) shuffled in: replay."""
    if isinstance(texts, str) or not texts:
        raise ValueError(
            "texts must be a non-empty list of strings (the general documents to mix in)"
        )
    examples = [sft_example(tokenizer, r) for r in records]
    for t in texts:
        ids = tokenizer(t + tokenizer.eos_token, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        examples.append({"input_ids": ids, "labels": list(ids)})
    if not 1 <= batch_size <= len(examples):
        raise ValueError(
            f"batch_size must be in [1, {len(examples)}] (records + texts), got {batch_size}"
        )
    return EpochBatches(
        len(examples),
        batch_size,
        seed,
        lambda rows: pad_examples([examples[j] for j in rows], tokenizer.pad_token_id),
    )


def user_text(record: dict) -> str:
    """The user turn of an instruction record (instruction, then the input on a new line if any)."""
    return (record.get("messages") or alpaca_to_messages(record))[0]["content"]


def pack_examples(examples: Sequence[dict], max_length: int) -> list[dict[str, list[int]]]:
    """Pack {input_ids, labels} examples into rows of at most max_length tokens (first fit, longest first).

    Each row also gets `position_ids` that restart at 0 for every example and `lengths` (one per
    example), from which `formats.packed_attention` builds the block-diagonal mask.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    too_long = [len(e["input_ids"]) for e in examples if len(e["input_ids"]) > max_length]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples are longer than max_length={max_length} "
            f"(longest {max(too_long)}): raise max_length or truncate them first"
        )
    rows: list[dict[str, list[int]]] = []
    for e in sorted(examples, key=lambda e: -len(e["input_ids"])):
        n = len(e["input_ids"])
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": [], "lengths": []}
            rows.append(row)
        row["input_ids"] += e["input_ids"]
        row["labels"] += e["labels"]
        row["position_ids"] += list(range(n))
        row["lengths"].append(n)
    return rows


def packed_batches(
    tokenizer,
    records: Sequence[dict],
    rows_per_batch: int,
    max_length: int = 128,
    mask_prompt: bool = True,
    seed: int = 0,
    texts: Sequence[str] = (),
) -> Iterable[dict]:
    """Shuffled batches of packed rows (`pack_examples`) with reset positions and a block-diagonal mask.

    `texts` (e.g. pretraining documents) are packed in as well, with the loss on every token and
    truncated to max_length: replay of general text inside the SFT rows (chapter 08, §9).
    """
    if not records:
        raise ValueError("records must be a non-empty list of chat records")
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings (the general documents to replay)")
    examples = [sft_example(tokenizer, r, mask_prompt) for r in records]
    for t in texts:
        ids = tokenizer(t + tokenizer.eos_token, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        examples.append({"input_ids": ids, "labels": list(ids)})
    rows = pack_examples(examples, max_length)
    if not 1 <= rows_per_batch <= len(rows):
        raise ValueError(
            f"rows_per_batch must be in [1, {len(rows)}] (the packed rows), got {rows_per_batch}"
        )

    def make(indices: list[int]) -> dict:
        width = max(len(rows[i]["input_ids"]) for i in indices)
        out: dict[str, list] = {
            "input_ids": [],
            "labels": [],
            "position_ids": [],
            "attention_mask": [],
        }
        for i in indices:
            row, pad = rows[i], width - len(rows[i]["input_ids"])
            lengths = row["lengths"] + (
                [pad] if pad else []
            )  # padding as its own block: no attention row is empty
            positions, mask = packed_attention(lengths)
            out["input_ids"].append(torch.tensor(row["input_ids"] + [tokenizer.pad_token_id] * pad))
            out["labels"].append(torch.tensor(row["labels"] + [IGNORE_INDEX] * pad))
            out["position_ids"].append(positions[0])
            out["attention_mask"].append(mask[0])
        return {k: torch.stack(v) for k, v in out.items()}

    return EpochBatches(len(rows), rows_per_batch, seed, make)


def exact_match_by_skill(
    model, tokenizer, records: Sequence[dict], max_new_tokens: int = 32
) -> dict[str, float]:
    """Exact match of the model's greedy answers per skill, and over all records ('all')."""
    if not records or "skill" not in records[0]:
        raise ValueError(
            "records must be instruction records with a 'skill' field (instructions_*.jsonl)"
        )
    prompts = [user_text(r) for r in records]
    preds = generate(model, tokenizer, prompts, chat=True, max_new_tokens=max_new_tokens)
    by_skill: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_skill[r["skill"]].append(i)
    scores = {
        s: exact_match([preds[i] for i in idx], [records[i]["output"] for i in idx])
        for s, idx in sorted(by_skill.items())
    }
    scores["all"] = exact_match(preds, [r["output"] for r in records])
    return scores


SFT_METHODS = ("full", "lora")


def train_sft(
    base,
    tokenizer,
    records: Sequence[dict],
    *,
    method: str = "full",
    lr: float = 2e-3,
    steps: int = 120,
    rows_per_batch: int = 8,
    seed: int = 0,
    lora_rank: int = 16,
    texts: Sequence[str] = (),
):
    """SFT of a copy of `base` on chat `records`: all weights ("full") or a peft LoRA adapter on every
    linear layer ("lora", alpha = 2 * rank); response-only loss, packed rows of 128, the course loop.

    The same seed gives the same data order, the same LoRA initialisation and the same model, so two
    methods run with one seed see identical batches: a matched budget. `texts` are general
    documents replayed in the packed rows (`packed_batches`). Returns (model, history).
    """
    import copy

    from course_lib.training import TrainConfig, train

    if method not in SFT_METHODS:
        raise ValueError(f"method must be one of {SFT_METHODS}, got {method!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=lora_rank,
            lora_alpha=2 * lora_rank,
            target_modules="all-linear",
            lora_dropout=0.0,
        )
        model = get_peft_model(model, config)
    batches = packed_batches(
        tokenizer, records, rows_per_batch=rows_per_batch, seed=seed, texts=texts
    )
    hist = train(model, batches, TrainConfig(lr=lr, max_steps=steps, progress=False))
    return model.eval(), hist
