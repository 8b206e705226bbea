"""Decoding settings from scratch: temperature, nucleus (top-p) filtering, and how varied answers are.

Taught in chapter 08 (instruction tuning). `transformers` does the same in `TemperatureLogitsWarper`
and `TopPLogitsWarper`; the lesson checks that ours equal them.
"""

from __future__ import annotations

from typing import Sequence

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits with -inf outside the nucleus: the most likely tokens whose mass before them is < top_p."""
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
        raise TypeError("logits must be a tensor [..., vocab]")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p}")
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    mass_before = probs.cumsum(-1) - probs  # the top token always has 0 before it: never dropped
    drop_sorted = mass_before >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0
) -> torch.Tensor:
    """The distribution a sampler draws from: divide by the temperature, then keep the nucleus, renormalised."""
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 (use argmax for greedy decoding), got {temperature}"
        )
    return top_p_filter(logits / temperature, top_p).softmax(-1)


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of distributions along the last axis (0 · log 0 counts as 0)."""
    if not isinstance(probs, torch.Tensor):
        raise TypeError("probs must be a tensor of probabilities")
    logs = torch.where(probs > 0, probs.log2(), torch.zeros_like(probs))
    return -(probs * logs).sum(-1)


def distinct_share(samples: Sequence[Sequence[str]]) -> float:
    """Mean share of distinct answers among the samples drawn for each prompt (1/n = always the same)."""
    if not samples or any(isinstance(s, str) or not s for s in samples):
        raise ValueError(
            "samples must be a non-empty list with one non-empty list of answers per prompt"
        )
    return sum(len(set(s)) / len(s) for s in samples) / len(samples)
