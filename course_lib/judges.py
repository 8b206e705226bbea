"""LLM judges measured against the world's gold reward: pairwise and pointwise verdicts, position,
verbosity and politeness bias, swap-and-average debiasing.

Taught in chapter 16 (LLM judges and a real retriever). A judge here is SmolLM2-135M-Instruct
(chapter 13) asked in its ChatML template, read off as the log-odds of its next token ("A" vs "B",
or "yes" vs "no"), or chapter 09's reward model, whose scalar scores compare two answers.
"""

from __future__ import annotations

from typing import Sequence

import torch

from course_lib.world.entities import Chooser, make_world
from course_lib.world.instructions import fact_question, solve
from course_lib.world.preferences import gold_reward, styled_response, wrong_answer

JUDGE_SYSTEM = "You are a strict grader of answers."
CRITERIA = "An answer is better when it is correct, polite and short."
BIAS_KINDS = ("verbosity", "politeness")
PADDING = (
    " I have considered the question with care, and this reply follows from what I have read"
    " about the matter, so you can rely on it for your purposes today."
)


def pairwise_prompt(tokenizer, question: str, first: str, second: str) -> str:
    """The chat prompt asking which of two answers is better, ending at the assistant's turn."""
    user = (
        f"{CRITERIA}\nQuestion: {question}\nAnswer A: {first}\nAnswer B: {second}\n"
        "Which answer is better? Reply with one letter, A or B."
    )
    messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def pointwise_prompt(tokenizer, question: str, answer: str, reference: str | None = None) -> str:
    """The chat prompt asking whether one answer is good (optionally given the right answer)."""
    ref = "" if reference is None else f"The correct answer is {reference}.\n"
    user = (
        f"{CRITERIA}\n{ref}Question: {question}\nAnswer: {answer}\n"
        "Is this a good answer? Reply with one word, yes or no."
    )
    messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _token_id(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens for this tokenizer; a verdict needs one")
    return ids[0]


@torch.no_grad()
def verdict_logodds(
    model, tokenizer, prompts: Sequence[str], options: tuple[str, str], batch_size: int = 16
) -> torch.Tensor:
    """log p(options[0]) − log p(options[1]) for the next token after each prompt (chapter 16)."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("pass a non-empty list of prompts, e.g. from pairwise_prompt")
    a, b = (_token_id(tokenizer, w) for w in options)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(
            list(prompts[i : i + batch_size]),
            add_special_tokens=False,
            return_tensors="pt",
            padding=True,
            padding_side="right",
        ).to(device)
        logits = model(**enc).logits.float()
        last = enc["attention_mask"].sum(1) - 1  # the last real token of each row
        logp = torch.log_softmax(logits[torch.arange(len(last)), last], -1)
        out.append((logp[:, a] - logp[:, b]).cpu())
    return torch.cat(out)


def pairwise_logodds(model, tokenizer, questions, firsts, seconds) -> torch.Tensor:
    """Log-odds that the judge prefers the first-shown answer (> 0: "A")."""
    if not len(questions) == len(firsts) == len(seconds):
        raise ValueError("questions, firsts and seconds must have the same length")
    prompts = [pairwise_prompt(tokenizer, *t) for t in zip(questions, firsts, seconds)]
    return verdict_logodds(model, tokenizer, prompts, ("A", "B"))


def swap_and_average(ab: torch.Tensor, ba: torch.Tensor) -> torch.Tensor:
    """Debiased preference for x over y from both orders: (s(x, y) − s(y, x)) / 2 (chapter 16).

    `ab` is the judge's log-odds for "first wins" with x shown first, `ba` with y shown first; a
    constant pull towards the first position cancels."""
    if ab.shape != ba.shape:
        raise ValueError(f"both orders must score the same pairs: shapes {ab.shape} and {ba.shape}")
    return (ab - ba) / 2


def position_bias(ab: torch.Tensor, ba: torch.Tensor) -> dict[str, float]:
    """P(first shown wins) over both orders, and the share of pairs whose winner flips with the
    order (the same position wins both times)."""
    first = torch.cat([ab > 0, ba > 0]).float().mean().item()
    flips = ((ab > 0) == (ba > 0)).float().mean().item()
    return {"p_first": first, "flip_rate": flips}


def gold_pairs(records: Sequence[dict]) -> list[dict]:
    """Preference records as (question, x, y, x_better by the gold reward), x the annotators'
    choice; pairs the gold reward ties are dropped."""
    out = []
    for r in records:
        if r["gold_chosen"] == r["gold_rejected"]:
            continue
        out.append(
            {
                "question": r["prompt"],
                "x": r["chosen"],
                "y": r["rejected"],
                "x_better": r["gold_chosen"] > r["gold_rejected"],
            }
        )
    return out


def bias_pairs(kind: str, n: int, seed: int = 0) -> list[dict]:
    """Constructed pairs whose gold-better answer is y: 'verbosity' (x = y's right answer padded
    with 25 neutral words) or 'politeness' (x polite but wrong, y plain and right)."""
    if kind not in BIAS_KINDS:
        raise ValueError(f"kind must be one of {BIAS_KINDS}, got {kind!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    w, ch = make_world(), Chooser(f"bias-{kind}-{seed}")
    pairs = [(p, a) for p in w.people for a in ("town", "profession", "pet", "food")]
    out = []
    while len(out) < n:
        if ch.chance(0.5):
            question, right = fact_question(ch, pairs)
        else:
            a, b = ch.randint(2, 40), ch.randint(1, 12)
            question = f"What is {a} {ch.choice(['plus', 'minus'])} {b}?"
            right = solve(question, w)
        plain = styled_response(ch, right, "plain")
        if kind == "verbosity":
            x = plain + PADDING
        else:
            x = styled_response(ch, wrong_answer(ch, question, w), "polite")
        g = gold_reward(question, x, w), gold_reward(question, plain, w)
        if g[0] < g[1]:
            out.append({"question": question, "x": x, "y": plain, "x_better": False})
    return out


def agreement(prefers_x: Sequence[bool], pairs: Sequence[dict]) -> list[int]:
    """1/0 per pair: does the judge's choice match the gold reward's?"""
    if len(prefers_x) != len(pairs):
        raise ValueError(f"got {len(prefers_x)} verdicts for {len(pairs)} pairs")
    return [int(bool(p) == q["x_better"]) for p, q in zip(prefers_x, pairs)]
