"""Prompt builders and few-shot scoring: few-shot prompts (with label words or single-token
verbalizers, raw or contextually calibrated) and retrieval-style prompts with facts in the context.

Taught in chapter 01 (prompting vs retrieval vs fine-tuning); reused in chapter 08.
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

import torch

from course_lib.world.documents import LABELS

REVIEW_TEMPLATE = "Review: {text}\nSentiment:"
# One token each with their leading space in the course tokenizer and in SmolLM2's (chapter 01).
VERBALIZER = {"negative": "bad", "neutral": "fine", "positive": "good"}
# Inputs that carry no sentiment: what the prompt alone makes the model say (Zhao et al. 2021).
CONTENT_FREE = ("N/A", "[MASK]", "-")


def review_prompt(text: str) -> str:
    """The text-completion form of the review task: the label follows 'Sentiment:'."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("review_prompt needs a non-empty review text")
    return REVIEW_TEMPLATE.format(text=text)


def few_shot_prompt(
    examples: Sequence[dict], text: str, verbalizer: Mapping[str, str] | None = None
) -> str:
    """k solved examples ({'text', 'label'}), then the query review waiting for its label.

    With a `verbalizer` ({label: word}) the examples show the word instead of the label's name."""
    for ex in examples:
        if ex.get("label") not in LABELS:
            raise ValueError(f"example label must be one of {LABELS}, got {ex.get('label')!r}")
    if verbalizer is not None and set(verbalizer) != set(LABELS):
        raise ValueError(
            f"verbalizer must map exactly the labels {LABELS}, got {sorted(verbalizer)}"
        )
    word = (lambda lab: verbalizer[lab]) if verbalizer is not None else (lambda lab: lab)
    shots = "".join(review_prompt(ex["text"]) + f" {word(ex['label'])}\n\n" for ex in examples)
    return shots + review_prompt(text)


def retrieval_prompt(statements: Sequence[str], probe: str) -> str:
    """Facts pasted in front of the probe: "retrieval-augmented" prompting in its simplest form."""
    if isinstance(statements, str):
        raise TypeError("statements must be a list of sentences, not one string")
    return " ".join(statements) + " " + probe


def pick_shots(records: Sequence[dict], per_label: int, seed: int) -> list[dict]:
    """`per_label` solved examples of each label drawn with `seed`, in a shuffled order.

    The draw is a seed like any other: few-shot accuracy moves with the shots chosen, so a
    comparison of prompting methods runs several draws (chapter 01)."""
    if per_label < 1:
        raise ValueError(f"per_label must be >= 1, got {per_label}")
    rng = random.Random(seed)
    shots = []
    for label in LABELS:
        pool = [r for r in records if r.get("label") == label]
        if len(pool) < per_label:
            raise ValueError(f"only {len(pool)} records labelled {label!r}; need {per_label}")
        shots += rng.sample(pool, per_label)
    rng.shuffle(shots)
    return shots


def _single_tokens(tokenizer, words: Sequence[str]) -> list[int]:
    """The token id of " word" for each word, refusing words the tokenizer splits."""
    ids = []
    for word in words:
        pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(
                f"verbalizer {word!r} is {len(pieces)} tokens {tokenizer.convert_ids_to_tokens(pieces)}; "
                "pick words that are one token with their leading space (e.g. good / bad / fine)"
            )
        ids.append(pieces[0])
    return ids


@torch.no_grad()
def next_token_logprobs(
    model, tokenizer, prompts: Sequence[str], words: Sequence[str], batch_size: int = 32
) -> torch.Tensor:
    """[len(prompts), len(words)] log p(" word" | prompt) for single-token words: one forward
    pass per prompt scores every candidate at once, and no candidate is longer than another."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    ids = _single_tokens(tokenizer, words)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = tokenizer(list(prompts))["input_ids"]
    out = []
    model.eval()
    for i in range(0, len(enc), batch_size):
        chunk = enc[i : i + batch_size]
        x = torch.full((len(chunk), max(map(len, chunk))), pad, device=device)
        mask = torch.zeros_like(x)
        for row, seq in enumerate(chunk):  # right padding: the last real token predicts the label
            x[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
        logits = model(input_ids=x, attention_mask=mask).logits.float()
        last = logits[torch.arange(len(chunk)), torch.tensor([len(s) - 1 for s in chunk])]
        out.append(torch.log_softmax(last, -1)[:, ids].cpu())
    return torch.cat(out)


def calibrate(logprobs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021, *Calibrate Before Use*): renormalise the label
    probabilities, then divide by those the same prompt gives a content-free input ("N/A"), so a
    label the prompt favours whatever the review says loses its head start. Returns log-scores."""
    if logprobs.ndim != 2 or content_free.ndim != 2 or logprobs.shape[1] != content_free.shape[1]:
        raise ValueError(
            f"need [n, k] scores and [m, k] content-free scores, got {tuple(logprobs.shape)} "
            f"and {tuple(content_free.shape)}"
        )
    prior = torch.log_softmax(content_free, -1).exp().mean(0).log()
    return torch.log_softmax(logprobs, -1) - prior


def few_shot_predict(
    model,
    tokenizer,
    shots: Sequence[dict],
    texts: Sequence[str],
    verbalizer: Mapping[str, str] = VERBALIZER,
    calibrated: bool = True,
) -> list[str]:
    """Few-shot labels for `texts`: single-token verbalizers, optionally contextually calibrated."""
    words = [verbalizer[label] for label in LABELS]
    scores = next_token_logprobs(
        model, tokenizer, [few_shot_prompt(shots, t, verbalizer) for t in texts], words
    )
    if calibrated:
        cf = [few_shot_prompt(shots, t, verbalizer) for t in CONTENT_FREE]
        scores = calibrate(scores, next_token_logprobs(model, tokenizer, cf, words))
    return [LABELS[k] for k in scores.argmax(-1).tolist()]


def label_logprobs(model, tokenizer, prompts: Sequence[str], labels: Sequence[str] = LABELS):
    """Summed log-probabilities of each (multi-token) label after each prompt, and each label's
    token count: ([n, k] tensor, [k] tensor). Dividing the first by the second is length
    normalisation (the mean log-probability per token)."""
    from course_lib.evaluation import continuation_logprobs

    flat_p = [p for p in prompts for _ in labels]
    flat_c = [" " + lab for _ in prompts for lab in labels]
    sums = torch.tensor(continuation_logprobs(model, tokenizer, flat_p, flat_c))
    lengths = torch.tensor(
        [len(tokenizer(" " + lab, add_special_tokens=False)["input_ids"]) for lab in labels]
    )
    return sums.view(len(prompts), len(labels)), lengths
