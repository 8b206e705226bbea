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


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Fresh, Wrong, assert_caught_and_named  # noqa: E402


def _h8_loss(shift: str = "right", reduce: str = "mean", inplace: bool = False, rows=False):
    import torch.nn.functional as F

    def fn(logits, ids):
        if inplace:
            logits -= logits.max(-1, keepdim=True).values  # "for stability", on the caller's tensor
        x, y = logits[:, :-1], ids[:, 1:]
        if shift == "none":
            x, y = logits, ids
        elif shift == "reverse":
            x, y = logits[:, 1:], ids[:, :-1]
        nll = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1), reduction="none")
        if rows:
            return nll.reshape(ids.shape[0], -1).mean(1)
        return nll.sum() / ids.numel() if reduce == "all_positions" else nll.mean()

    return fn


def _h8_unigram(mode: str):
    import math
    from collections import Counter

    def fn(train, evl, v):
        counts = Counter(t for row in train for t in row)
        total = sum(counts.values())
        toks = [t for row in evl for t in row]
        if mode == "seen_vocab":
            return -sum(math.log((counts[t] + 1) / (total + len(counts))) for t in toks) / len(toks)
        if mode == "no_smoothing":
            return -sum(math.log(counts[t] / total) for t in toks) / len(toks)  # log(0)
        if mode == "bits":
            return -sum(math.log2((counts[t] + 1) / (total + v)) for t in toks) / len(toks)
        return -sum(math.log((counts[t] + 1) / (total + v)) for t in toks)  # summed

    return fn


def _h8_greedy(mode: str):
    import torch

    def fn(model, ids, n_new):
        out = ids
        with torch.no_grad():
            for _ in range(n_new - (mode == "one_short")):
                logits = model(out).logits
                pos = 0 if mode == "first_pos" else -1
                out = torch.cat([out, logits[:, pos].argmax(-1, keepdim=True)], 1)
        return out[:, ids.shape[1] :] if mode == "new_only" else out

    return fn


def _h8_pick(mode: str):
    import math

    from course_lib.evaluation import continuation_logprob

    def fn(model, tok, prompt, answer):
        if mode == "no_space":
            return continuation_logprob(model, tok, prompt, answer)
        lp = continuation_logprob(model, tok, prompt, " " + answer)
        if mode == "mean":
            return lp / len(tok(" " + answer, add_special_tokens=False)["input_ids"])
        return math.exp(lp)

    return fn


def _h8_floor(mode: str):
    """The entropy floor computed with a typical mistake (lazily: it reads the data)."""
    from course_lib.data import load_jsonl
    from course_lib.models import load_model

    def value():
        _, tok = load_model("causal")
        notes = load_jsonl("clinic_val")
        nats = -sum(r["logp"] for r in notes)
        tokens = sum(len(tok(r["text"], add_special_tokens=False)["input_ids"]) for r in notes)
        if mode == "no_eos":
            return nats / tokens
        return nats / (tokens + len(notes)) / math.log(2)  # bits

    return Fresh(value)


WRONG_ANSWERS = [
    Wrong("loss without the shift", ch01.check_next_token_loss, [_h8_loss("none")], ("shift",)),
    Wrong(
        "shifted the wrong way", ch01.check_next_token_loss, [_h8_loss("reverse")], ("wrong way",)
    ),
    Wrong(
        "divided by all T positions, not T-1",
        ch01.check_next_token_loss,
        [_h8_loss(reduce="all_positions")],
        ("predicted positions", "T - 1"),
    ),
    Wrong(
        "per-row losses returned",
        ch01.check_next_token_loss,
        [_h8_loss(rows=True)],
        ("one number",),
    ),
    Wrong(
        "logits changed in place",
        ch01.check_next_token_loss,
        [_h8_loss(inplace=True)],
        ("in place",),
    ),
    Wrong("no smoothing", ch01.check_unigram, [_h8_unigram("no_smoothing")], ("smoothing",)),
    Wrong(
        "vocabulary of seen tokens only",
        ch01.check_unigram,
        [_h8_unigram("seen_vocab")],
        ("vocab_size",),
    ),
    Wrong("bits instead of nats", ch01.check_unigram, [_h8_unigram("bits")], ("bits",)),
    Wrong("summed, not averaged", ch01.check_unigram, [_h8_unigram("summed")], ("mean", "average")),
    Wrong("argmax at the first position", ch01.check_greedy, [_h8_greedy("first_pos")], ("FIRST",)),
    Wrong("only the new tokens returned", ch01.check_greedy, [_h8_greedy("new_only")], ("prompt",)),
    Wrong("one token short", ch01.check_greedy, [_h8_greedy("one_short")], ("exactly n_new",)),
    Wrong(
        "answer without its leading space",
        ch01.check_pick,
        [_h8_pick("no_space")],
        ("leading space",),
    ),
    Wrong("log-probs averaged", ch01.check_pick, [_h8_pick("mean")], ("averaged",)),
    Wrong("floor without the <|end|> token", ch01.check_floor, [_h8_floor("no_eos")], ("<|end|>",)),
    Wrong("floor in bits", ch01.check_floor, [_h8_floor("bits")], ("bits",)),
    Wrong(
        "probability, not log-probability",
        ch01.check_pick,
        [_h8_pick("prob")],
        ("log-probability",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)


# --- 01.6: paraphrase augmentation of facts -------------------------------------------------------

import random  # noqa: E402


def augment_facts(
    facts, per_person, seed, *, name=True, keep=True, lie=False, leak=False, rng=None
):
    """The reference solution; the keyword switches make the realistic wrong answers."""
    rng = rng if rng is not None else random.Random(seed)
    by_person = {}
    for f in facts:
        by_person.setdefault(f["person"], []).append(f)
    texts = [s for f in facts for s in f["statements"]] if keep else []
    for person, fs in by_person.items():
        for _ in range(per_person):
            sentences = []
            for f in fs:
                s = rng.choice(f["statements"])
                if lie:  # "augment" by swapping in another value of the attribute
                    s = s.replace(f["answer"], rng.choice(f["candidates"]))
                sentences.append(s if name else s.replace(person, "They"))
            rng.shuffle(sentences)
            texts.append(" ".join(sentences))
    if leak:
        texts += [f"{f['probe_paraphrase']} {f['answer']}." for f in facts]
    return texts


def test_augment_facts_check():
    assert ch01.check_augment_facts(augment_facts)
    fails_with(
        ch01.check_augment_facts, lambda f, k, s: augment_facts(f, k, s, leak=True), "held-out"
    )
    fails_with(
        ch01.check_augment_facts, lambda f, k, s: augment_facts(f, k, s, lie=True), "label-changing"
    )
    fails_with(ch01.check_augment_facts, lambda f, k, s: augment_facts(f, 0, s), "no augmentation")
    fails_with(
        ch01.check_augment_facts, lambda f, k, s: augment_facts(f, k, s, keep=False), "are missing"
    )
    fails_with(
        ch01.check_augment_facts, lambda f, k, s: augment_facts(f, k, s, name=False), "name nobody"
    )
    shared = random.Random(0)
    fails_with(
        ch01.check_augment_facts,
        lambda f, k, s: augment_facts(f, k, s, rng=shared),
        "same seed gave different",
    )
    fails_with(
        ch01.check_augment_facts, lambda f, k, s: augment_facts(f, k, 0), "seed 1 gave the same"
    )
