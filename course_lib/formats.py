"""Training-data formats, chat templates, loss masking to the response, and packing.

Taught in chapter 02 (data preparation); chapter 08 (instruction tuning) trains with them.
"""

from __future__ import annotations

from typing import Sequence

import torch

IGNORE_INDEX = -100  # the label value torch's cross_entropy (and transformers) skip

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(record: dict) -> str:
    """The Stanford Alpaca prompt for an {instruction, input} record (the response follows it)."""
    _need(record, ("instruction", "input"))
    template = ALPACA_WITH_INPUT if record["input"] else ALPACA_NO_INPUT
    return template.format(instruction=record["instruction"], input=record["input"])


def alpaca_to_messages(record: dict) -> list[dict]:
    """An Alpaca record as chat messages: instruction and input in the user turn, output as the answer."""
    _need(record, ("instruction", "input", "output"))
    user = record["instruction"] + (f"\n{record['input']}" if record["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def preference_to_conversations(record: dict) -> dict:
    """A {prompt, chosen, rejected} pair in TRL's conversational preference format."""
    _need(record, ("prompt", "chosen", "rejected"))
    return {
        "prompt": [{"role": "user", "content": record["prompt"]}],
        "chosen": [{"role": "assistant", "content": record["chosen"]}],
        "rejected": [{"role": "assistant", "content": record["rejected"]}],
    }


def response_labels(tokenizer, messages: Sequence[dict]) -> dict[str, list[int]]:
    """Token ids of a rendered chat and labels equal to them on the assistant's reply, -100 elsewhere.

    The last message must be the assistant's. The prompt is rendered with
    add_generation_prompt=True, so the labels start at the reply's first token and include
    its end-of-turn token (the model must learn to stop).
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError(
            "messages must end with the assistant's reply, e.g. "
            "[{'role': 'user', ...}, {'role': 'assistant', ...}]"
        )
    prompt = tokenizer.apply_chat_template(
        list(messages[:-1]), tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template renders the prompt differently inside the full chat; "
            "response masking by prefix needs a template whose prompt is a prefix"
        )
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if f_ids[: len(p_ids)] != p_ids:
        raise ValueError(
            "the prompt's tokens are not a prefix of the full chat's tokens "
            "(a token merges across the boundary); tokenize the parts separately"
        )
    end = tokenizer.eos_token_id  # the end-of-turn token: <|end|> here, <|im_end|> in ChatML
    labels = [IGNORE_INDEX] * len(p_ids) + f_ids[len(p_ids) :]
    # Text the template adds after the reply's end-of-turn token (a newline) is not learnt.
    last_end = max((i for i, t in enumerate(f_ids) if t == end), default=len(f_ids) - 1)
    labels = [lab if i <= last_end else IGNORE_INDEX for i, lab in enumerate(labels)]
    return {"input_ids": f_ids, "labels": labels}


def padding_waste(lengths: Sequence[int], batch_size: int) -> float:
    """Share of a padded batch's positions that are padding, batches taken in the given order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lengths or min(lengths) < 1:
        raise ValueError("lengths must be a non-empty list of positive sequence lengths")
    padded = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size])
        for i in range(0, len(lengths), batch_size)
    )
    return 1 - sum(lengths) / padded


def packed_attention(doc_lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For documents packed into one row: position ids restarting at 0 per document, and a
    [1, 1, L, L] boolean mask that is causal within each document and blocks all others."""
    if not doc_lengths or min(doc_lengths) < 1:
        raise ValueError("doc_lengths must be a non-empty list of positive lengths")
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(doc_lengths)])
    positions = torch.cat([torch.arange(n) for n in doc_lengths])
    length = len(doc)
    mask = (doc[:, None] == doc[None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
    return positions[None], mask[None, None]


def _need(record: dict, fields: Sequence[str]) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"expected a record (dict), got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise ValueError(f"the record lacks {missing}; it has {sorted(record)}")
