"""Synthetic data: sample several answers per prompt, keep the ones a verifier accepts (rejection
sampling / best-of-n), fine-tune on them (STaR, rejection-sampling fine-tuning), and keep the
evaluation set out of the training data (decontamination by n-gram overlap).

Taught in chapter 17 (synthetic data, distillation and merging). The verifier is the world's
`preferences.is_correct` (arithmetic and fact questions); the gold reward ranks best-of-n.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from course_lib.world.instructions import OPS, make_record


def all_arithmetic_prompts() -> list[tuple[str, str]]:
    """Every arithmetic question the world's generator can ask, with its answer (about a thousand)."""
    out = []
    for op, fn in OPS.items():
        for a in range(2, 10 if op == "times" else 41):
            for b in range(1, 13):
                out.append((f"What is {a} {op} {b}?", str(fn(a, b))))
    return out


def normalize(text: str) -> str:
    """Lower case, words and numbers only, single spaces: what overlap checks compare."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of the normalized text (the whole text if it is shorter than n words)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    words = normalize(text).split()
    if len(words) <= n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def contaminated(texts: Sequence[str], eval_texts: Sequence[str], n: int = 8) -> list[bool]:
    """For each text: does it share a word n-gram with any evaluation text? (GPT-3 used n = 13,
    the Llama reports 8; short prompts count as one n-gram of their whole text.)"""
    if isinstance(texts, str) or isinstance(eval_texts, str):
        raise TypeError("texts and eval_texts must be lists of strings")
    seen = set().union(*(ngrams(t, n) for t in eval_texts)) if eval_texts else set()
    return [bool(ngrams(t, n) & seen) for t in texts]


def decontaminate(
    records: Sequence[dict], eval_texts: Sequence[str], n: int = 8, key: Callable = None
) -> tuple[list[dict], int]:
    """The records whose prompt (`key(record)`, default the user turn) shares no word n-gram with
    the evaluation texts, and how many were removed."""
    from course_lib.sft import user_text

    key = key or user_text
    flags = contaminated([key(r) for r in records], eval_texts, n)
    kept = [r for r, bad in zip(records, flags) if not bad]
    return kept, len(records) - len(kept)


@dataclass
class Sampled:
    """n samples per prompt and the verifier's verdict on each."""

    prompts: list[str]
    samples: list[list[str]]
    correct: list[list[bool]]

    @property
    def sample_accuracy(self) -> float:
        """Share of all samples the verifier accepts (≈ pass@1 at this temperature)."""
        flat = [c for row in self.correct for c in row]
        return sum(flat) / len(flat)

    @property
    def pass_at_n(self) -> float:
        """Share of prompts with at least one accepted sample."""
        return sum(any(row) for row in self.correct) / len(self.correct)

    def accepted(self, skill: str = "arithmetic") -> list[dict]:
        """One chat record per prompt that has an accepted sample (its first), for SFT."""
        return [
            make_record(skill, p, "", row[row_ok.index(True)])
            for p, row, row_ok in zip(self.prompts, self.samples, self.correct)
            if any(row_ok)
        ]

    def unfiltered(self, k: int, seed: int = 0, skill: str = "arithmetic") -> list[dict]:
        """k records of the first sample of k random prompts, right or wrong (no verifier)."""
        rng = random.Random(seed)
        idx = rng.sample(range(len(self.prompts)), k)
        return [make_record(skill, self.prompts[i], "", self.samples[i][0]) for i in idx]


def rejection_sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    verifier: Callable[[str, str], bool] | None = None,
    max_new_tokens: int = 24,
) -> Sampled:
    """Sample n chat replies per prompt and judge each with the verifier (default: the world's
    `is_correct`)."""
    from course_lib.generation import generate
    from course_lib.world.preferences import is_correct

    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of questions")
    if n < 1:
        raise ValueError(f"n (samples per prompt) must be >= 1, got {n}")
    verifier = verifier or is_correct
    flat = generate(
        model,
        tokenizer,
        [p for p in prompts for _ in range(n)],
        chat=True,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=256,
    )
    samples = [flat[i * n : (i + 1) * n] for i in range(len(prompts))]
    correct = [[verifier(p, s) for s in row] for p, row in zip(prompts, samples)]
    return Sampled(list(prompts), samples, correct)


def best_of_n(
    prompts: Sequence[str], samples: Sequence[Sequence[str]], score: Callable
) -> list[str]:
    """For each prompt, the sample with the highest score(prompt, sample) (first one on ties)."""
    if len(prompts) != len(samples):
        raise ValueError(f"{len(prompts)} prompts but {len(samples)} rows of samples")
    return [max(row, key=lambda s: score(p, s)) for p, row in zip(prompts, samples)]


def verified_accuracy(
    model, tokenizer, prompts: Sequence[str], verifier=None, max_new_tokens: int = 24
) -> float:
    """Share of prompts whose greedy chat reply the verifier accepts."""
    from course_lib.generation import generate
    from course_lib.world.preferences import is_correct

    verifier = verifier or is_correct
    replies = generate(model, tokenizer, list(prompts), chat=True, max_new_tokens=max_new_tokens)
    return sum(verifier(p, r) for p, r in zip(prompts, replies)) / len(prompts)
