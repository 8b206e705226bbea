"""Evaluation helpers: cross-entropy and perplexity (masked to the texts' own tokens), candidate
ranking, accuracy, exact match, and the course's local `evaluate` metrics (`load_metric`).

Taught in chapter 01 (loss, perplexity, the entropy floor) and chapter 10
(evaluation); used by every chapter to measure its experiments.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    import evaluate


def _check_texts(texts, what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string (wrap it: [text])")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{what} must be a non-empty list of strings")
    return texts


@torch.no_grad()
def token_losses(
    model,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 32,
    add_eos: bool = True,
    context: str = "",
) -> tuple[float, int]:
    """Summed next-token loss (nats) and the number of tokens predicted, over the texts' own tokens.

    Each text is scored alone as <bos> context text [<eos>]; the loss counts every token of the text
    (and its <eos>), never the context's (context="" : the plain loss; a few example documents: the
    few-shot loss). Only the last positions' logits are read, so a model that adds positions in
    front (a soft prompt, chapter 07) is scored on exactly the same tokens.
    """
    texts = _check_texts(texts)
    if not isinstance(context, str):
        raise TypeError(f'context must be a string ("" for none), got {type(context).__name__}')
    prefix = tokenizer(context)["input_ids"]  # <bos> and the context's tokens: never predicted
    suffix = tokenizer.eos_token if add_eos else ""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        rows = [
            prefix + tokenizer(t + suffix, add_special_tokens=False)["input_ids"]
            for t in texts[i : i + batch_size]
        ]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        attention = torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(row)], attention[r, : len(row)] = torch.tensor(row), 1
        ids, attention = ids.to(device), attention.to(device)
        scored = attention.clone()  # right padding: each text's tokens follow the prefix
        scored[:, : len(prefix)] = 0  # so this keeps the text's tokens only
        logits = model(input_ids=ids, attention_mask=attention).logits
        logits = logits[:, -width:][:, :-1].float()  # position t predicts token t + 1
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), ids[:, 1:], reduction="none"
        )
        mask = scored[:, 1:].bool()
        total += nll[mask].sum().item()
        count += int(mask.sum())
    return total, count


def cross_entropy(
    model, tokenizer, texts: Sequence[str], batch_size: int = 32, context: str = ""
) -> float:
    """Mean next-token cross-entropy in nats per token over documents (after `context`, if given)."""
    total, count = token_losses(model, tokenizer, texts, batch_size, context=context)
    return total / count


def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 32) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(cross_entropy(model, tokenizer, texts, batch_size))


def unigram_cross_entropy(
    train_ids: Sequence[Sequence[int]], eval_ids: Sequence[Sequence[int]], vocab_size: int
) -> float:
    """Cross-entropy (nats/token) of an add-one-smoothed unigram model: the no-context baseline."""
    counts = Counter(t for ids in train_ids for t in ids)
    total = sum(counts.values()) + vocab_size
    toks = [t for ids in eval_ids for t in ids]
    if not toks:
        raise ValueError("eval_ids holds no tokens")
    return -sum(math.log((counts[t] + 1) / total) for t in toks) / len(toks)


@torch.no_grad()
def continuation_logprobs(
    model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 64
) -> list[float]:
    """log p(continuation | prompt) for many pairs at once, summed over the continuation's tokens.

    The prompt is tokenized with <bos>, the continuation without: a candidate
    answer usually needs its leading space (" Brookmere"), as in running text.
    """
    prompts, continuations = (
        _check_texts(prompts, "prompts"),
        _check_texts(continuations, "continuations"),
    )
    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
    device = next(model.parameters()).device
    p_ids = tokenizer(prompts)["input_ids"]
    c_ids = tokenizer(continuations, add_special_tokens=False)["input_ids"]
    if any(len(c) == 0 for c in c_ids):
        raise ValueError("a continuation is empty")
    scores: list[float] = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        seqs = [p + c for p, c in zip(p_ids[i : i + batch_size], c_ids[i : i + batch_size])]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, device=device)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for row, (p, c) in enumerate(zip(p_ids[i : i + batch_size], c_ids[i : i + batch_size])):
            pos = torch.arange(len(p) - 1, len(p) + len(c) - 1, device=device)
            scores.append(logp[row, pos, torch.tensor(c, device=device)].sum().item())
    return scores


def continuation_logprob(model, tokenizer, prompt: str, continuation: str) -> float:
    """log p(continuation | prompt) under the model, summed over its tokens."""
    return continuation_logprobs(model, tokenizer, [prompt], [continuation])[0]


def rank_candidates(model, tokenizer, prompt: str, candidates: Sequence[str]) -> list[float]:
    """The log-probability of each candidate (with a leading space) after the prompt."""
    candidates = _check_texts(candidates, "candidates")
    return continuation_logprobs(
        model, tokenizer, [prompt] * len(candidates), [" " + c for c in candidates]
    )


def choose(model, tokenizer, prompt: str, candidates: Sequence[str]) -> str:
    """The candidate the model finds most likely after the prompt."""
    return choose_many(model, tokenizer, [prompt], [candidates])[0]


def choose_many(
    model, tokenizer, prompts: Sequence[str], candidate_lists: Sequence[Sequence[str]]
) -> list[str]:
    """For each prompt, the most likely of its candidates (all scored in batches)."""
    if len(prompts) != len(candidate_lists):
        raise ValueError(f"got {len(prompts)} prompts but {len(candidate_lists)} candidate lists")
    flat_p = [p for p, cands in zip(prompts, candidate_lists) for _ in cands]
    flat_c = [" " + c for cands in candidate_lists for c in cands]
    scores = continuation_logprobs(model, tokenizer, flat_p, flat_c)
    out, k = [], 0
    for cands in candidate_lists:
        best = max(range(len(cands)), key=lambda j: scores[k + j])
        out.append(list(cands)[best])
        k += len(cands)
    return out


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation at the ends and collapse spaces (for exact match)."""
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .!?\"'")


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after normalize_answer."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError(
            "exact_match takes lists of strings, not single strings (wrap them: [text])"
        )
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references) or not predictions:
        raise ValueError(
            f"exact_match needs equally many predictions and references "
            f"(got {len(predictions)} and {len(references)}), at least one"
        )
    return sum(
        normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)
    ) / len(predictions)


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    """Share of predictions equal to their label."""
    if isinstance(predictions, str) or isinstance(labels, str):
        raise TypeError("accuracy takes lists of labels, not single strings (wrap them: [label])")
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels) or not labels:
        raise ValueError(
            f"accuracy needs equally many predictions and labels "
            f"(got {len(predictions)} and {len(labels)}), at least one"
        )
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % at z = 1.96) for a share of `successes` out of `n` trials.

    Unlike p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at 0/n or n/n.
    Used from chapter 13 on (shares of answers judged right, wrong or abstaining)."""
    if not isinstance(n, int) or n < 1 or not isinstance(successes, int):
        raise ValueError(f"need whole numbers with n >= 1, got successes={successes!r}, n={n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def available_metrics() -> list[str]:
    """Names of the metrics shipped in course_lib/metrics/, sorted."""
    return sorted(d.name for d in METRICS_DIR.iterdir() if (d / f"{d.name}.py").is_file())


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a course-local metric by name with evaluate.load (never the Hugging Face Hub)."""
    import evaluate  # imported here: it is slow to import and only the metric modules need it

    available = available_metrics()
    if name not in available:
        raise ValueError(
            f"unknown metric {name!r}; the course ships these local metrics: "
            f"{', '.join(available)} (the Hugging Face Hub is not used)"
        )
    return evaluate.load(str(METRICS_DIR / name))
