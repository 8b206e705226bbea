"""Evaluation helpers: cross-entropy and perplexity, candidate ranking, accuracy,
exact match, and text generation.

Taught in chapter 01 (loss, perplexity, the entropy floor) and chapter 10
(evaluation); used by every chapter to measure its experiments.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import torch


def _check_texts(texts, what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string (wrap it: [text])")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{what} must be a non-empty list of strings")
    return texts


@torch.no_grad()
def token_losses(
    model, tokenizer, texts: Sequence[str], batch_size: int = 32, add_eos: bool = True
) -> tuple[float, int]:
    """Summed next-token loss (nats) and token count over documents, each scored alone.

    Every document is <bos> text [<eos>]; every token after <bos> is predicted.
    """
    texts = _check_texts(texts)
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        chunk = [t + (tokenizer.eos_token if add_eos else "") for t in texts[i : i + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
        logits = model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        mask = enc["attention_mask"][:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        total += nll[mask].sum().item()
        count += int(mask.sum())
    return total, count


def cross_entropy(model, tokenizer, texts: Sequence[str], batch_size: int = 32) -> float:
    """Mean next-token cross-entropy in nats per token over documents."""
    total, count = token_losses(model, tokenizer, texts, batch_size)
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


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 40,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool = False,
) -> str:
    """Continue a prompt (greedy when temperature is 0); returns only the new text.

    With chat=True the prompt is sent as a user turn through the chat template.
    """
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    device = next(model.parameters()).device
    if chat:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    torch.manual_seed(seed)
    kwargs = (
        dict(do_sample=True, temperature=temperature, top_p=top_p)
        if temperature > 0
        else dict(do_sample=False)
    )
    out = model.generate(
        ids.to(device),
        attention_mask=torch.ones_like(ids).to(device),
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **kwargs,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
