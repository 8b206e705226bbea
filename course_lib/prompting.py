"""Prompt builders: few-shot prompts and retrieval-style prompts with facts in the context.

Taught in chapter 01 (prompting vs retrieval vs fine-tuning); reused in chapter 08.
"""

from __future__ import annotations

from typing import Sequence

from course_lib.world.documents import LABELS

REVIEW_TEMPLATE = "Review: {text}\nSentiment:"


def review_prompt(text: str) -> str:
    """The text-completion form of the review task: the label follows 'Sentiment:'."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("review_prompt needs a non-empty review text")
    return REVIEW_TEMPLATE.format(text=text)


def few_shot_prompt(examples: Sequence[dict], text: str) -> str:
    """k solved examples ({'text', 'label'}), then the query review waiting for its label."""
    for ex in examples:
        if ex.get("label") not in LABELS:
            raise ValueError(f"example label must be one of {LABELS}, got {ex.get('label')!r}")
    shots = "".join(review_prompt(ex["text"]) + f" {ex['label']}\n\n" for ex in examples)
    return shots + review_prompt(text)


def retrieval_prompt(statements: Sequence[str], probe: str) -> str:
    """Facts pasted in front of the probe: "retrieval-augmented" prompting in its simplest form."""
    if isinstance(statements, str):
        raise TypeError("statements must be a list of sentences, not one string")
    return " ".join(statements) + " " + probe
