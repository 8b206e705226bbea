"""The chapter 01 checkers accept the reference solutions and name the common mistakes."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from course_lib.course.checkers import ch01
from course_lib.course.checks import CheckFailed
from course_lib.data import load_jsonl


def fails_with(check, arg, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(arg)
    assert words in str(info.value), f"expected the message to say '{words}', got: {info.value}"


# --- the reference solutions (solutions/01_pretraining_solutions.ipynb) ---------------------------


def next_token_loss(logits, input_ids):
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))


def unigram_ce(train_ids, eval_ids, vocab_size, smoothing=1, extra=None):
    counts = Counter(t for ids in train_ids for t in ids)
    total = sum(counts.values()) + (vocab_size if extra is None else extra)
    tokens = [t for ids in eval_ids for t in ids]
    probs = [(counts[t] + smoothing) / total for t in tokens]
    if min(probs) == 0:
        return float("inf")
    return -sum(math.log(p) for p in probs) / len(tokens)


@torch.no_grad()
def greedy_generate(model, input_ids, n_new, position=-1):
    ids = input_ids
    for _ in range(n_new):
        next_id = model(ids).logits[:, position].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    return ids


@torch.no_grad()
def token_logprobs(model, tok, prompt, answer, space=" "):
    p = tok(prompt)["input_ids"]
    a = tok(space + answer, add_special_tokens=False)["input_ids"]
    logp = torch.log_softmax(model(torch.tensor([p + a])).logits[0], dim=-1)
    return [logp[len(p) - 1 + i, t].item() for i, t in enumerate(a)]


def answer_logprob(model, tok, prompt, answer):
    return sum(token_logprobs(model, tok, prompt, answer))


# --- 01.1 and 01.2: losses -------------------------------------------------------------------------


def test_next_token_loss_check():
    assert ch01.check_next_token_loss(next_token_loss)
    fails_with(
        ch01.check_next_token_loss,
        lambda lg, ids: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), ids.reshape(-1)),
        "not shifted",
    )
    fails_with(
        ch01.check_next_token_loss,
        lambda lg, ids: F.cross_entropy(
            lg[:, 1:].reshape(-1, lg.shape[-1]), ids[:, :-1].reshape(-1)
        ),
        "wrong way",
    )
    fails_with(ch01.check_next_token_loss, lambda lg, ids: -next_token_loss(lg, ids), "sign")
    fails_with(
        ch01.check_next_token_loss, lambda lg, ids: next_token_loss(lg, ids) / math.log(2), "bits"
    )
    fails_with(
        ch01.check_next_token_loss,
        lambda lg, ids: next_token_loss(lg, ids) * lg[:, :-1].shape[:2].numel(),
        "summed",
    )
    fails_with(
        ch01.check_next_token_loss,
        lambda lg, ids: next_token_loss(lg, ids).item(),
        "return a tensor",
    )
    fails_with(
        ch01.check_next_token_loss,
        lambda lg, ids: F.cross_entropy(lg[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"),
        "one number",
    )


def test_unigram_check():
    assert ch01.check_unigram(unigram_ce)
    fails_with(ch01.check_unigram, lambda tr, ev, v: unigram_ce(tr, ev, v, smoothing=0), "add one")
    fails_with(
        ch01.check_unigram, lambda tr, ev, v: unigram_ce(tr, ev, v, extra=0), "total + vocab"
    )
    fails_with(ch01.check_unigram, lambda tr, ev, v: -unigram_ce(tr, ev, v), "sign")
    fails_with(ch01.check_unigram, lambda tr, ev, v: unigram_ce(tr, ev, v) / math.log(2), "bits")


# --- 01.3 to 01.5: on the base model ---------------------------------------------------------------


def test_greedy_check():
    assert ch01.check_greedy(greedy_generate)
    fails_with(
        ch01.check_greedy,
        lambda m, ids, n: greedy_generate(m, ids, n, position=0),
        "FIRST position",
    )
    fails_with(
        ch01.check_greedy, lambda m, ids, n: greedy_generate(m, ids, n)[:, ids.shape[1] :], "prompt"
    )
    fails_with(ch01.check_greedy, lambda m, ids, n: greedy_generate(m, ids, n + 1), "exactly n_new")
    fails_with(ch01.check_greedy, lambda m, ids, n: greedy_generate(m, ids, n)[0], "shape [1,")

    def sampled(model, ids, n):
        torch.manual_seed(0)
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=True,
            temperature=5.0,
        )

    fails_with(ch01.check_greedy, sampled, "differ from greedy")


def test_answer_logprob_check():
    assert ch01.check_pick(answer_logprob)
    fails_with(
        ch01.check_pick,
        lambda m, t, p, a: sum(token_logprobs(m, t, p, a, space="")),
        "leading space",
    )
    fails_with(
        ch01.check_pick, lambda m, t, p, a: token_logprobs(m, t, p, a)[0], "only the first token"
    )
    fails_with(
        ch01.check_pick,
        lambda m, t, p, a: sum(token_logprobs(m, t, p, a)) / len(token_logprobs(m, t, p, a)),
        "averaged",
    )
    fails_with(
        ch01.check_pick,
        lambda m, t, p, a: math.exp(answer_logprob(m, t, p, a)),
        "not the probability",
    )


def test_floor_check(tokenizer):
    notes = load_jsonl("clinic_val")
    nats = -sum(r["logp"] for r in notes)
    text_tokens = sum(
        len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in notes
    )
    floor = nats / (text_tokens + len(notes))  # each note's text and its <|end|>
    assert ch01.check_floor(floor)
    fails_with(ch01.check_floor, nats / text_tokens, "<|end|>")
    fails_with(ch01.check_floor, nats / (text_tokens + 2 * len(notes)), "<|bos|>")
    fails_with(ch01.check_floor, floor / math.log(2), "bits")
    fails_with(ch01.check_floor, -floor, "sign")
    fails_with(ch01.check_floor, 2 * floor, "nats/token")
