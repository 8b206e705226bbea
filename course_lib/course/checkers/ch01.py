"""Checks for the chapter 01 exercises (pretraining vs fine-tuning).

Each check runs the student's function on cases where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from course_lib.course.checks import call_unchanged, check, expect, expect_close


@lru_cache(maxsize=1)
def _base():
    from course_lib.models import load_model

    return load_model("causal")


def _loss_cases():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 7, 11, generator=g) * 2
    ids = torch.randint(0, 11, (2, 7), generator=g)
    return logits, ids


@check("01.1 next-token loss")
def check_next_token_loss(student_fn) -> None:
    """The student's next_token_loss(logits, input_ids) equals shifted mean cross-entropy."""
    logits, ids = _loss_cases()
    out = call_unchanged(student_fn, logits, ids, names=("logits", "input_ids"))
    expect(torch.is_tensor(out), f"return a tensor (the loss), not a {type(out).__name__}")
    expect(
        out.ndim == 0,
        f"return one number (a 0-d tensor), got shape {tuple(out.shape)}: "
        "average over all predicted positions",
    )
    right = F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    no_shift = F.cross_entropy(logits.reshape(-1, 11), ids.reshape(-1))
    wrong_shift = F.cross_entropy(logits[:, 1:].reshape(-1, 11), ids[:, :-1].reshape(-1))
    summed = F.cross_entropy(
        logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="sum"
    )
    expect_close(
        out.item(),
        right.item(),
        1e-4,
        "the loss",
        hints={
            no_shift.item(): "targets are not shifted: the logits at position t predict token t+1",
            wrong_shift.item(): "shifted the wrong way: drop the LAST logit and the FIRST token",
            -right.item(): "the sign is flipped: the loss is the NEGATIVE mean log-probability",
            right.item()
            / math.log(2): "that is in bits (log2); the course measures nats (natural log)",
            summed.item(): "you summed over positions; take the mean",
            summed.item() / ids.numel(): "you divided by all T positions of a row: only T - 1 "
            "are predicted (the last logit has no target), so average over the predicted positions",
        },
    )


@check("01.2 unigram cross-entropy")
def check_unigram(student_fn) -> None:
    """The student's unigram_ce(train_ids, eval_ids, vocab_size) with add-one smoothing."""
    train, evl, v = [[1, 1, 2], [1, 3]], [[1, 2, 4]], 5
    counts = {1: 3, 2: 1, 3: 1}
    total = 5
    right = -sum(math.log((counts.get(t, 0) + 1) / (total + v)) for t in evl[0]) / 3
    no_vocab = -sum(math.log((counts.get(t, 0) + 1) / total) for t in evl[0]) / 3
    seen_vocab = -sum(math.log((counts.get(t, 0) + 1) / (total + 3)) for t in evl[0]) / 3
    try:
        out = call_unchanged(student_fn, train, evl, v, names=("train_ids", "eval_ids"))
    except ValueError as error:  # math.log(0) of a token never seen in training
        expect(
            "math domain" not in str(error),
            "math.log(0) failed: a token never seen in training has probability 0 without "
            "smoothing; add one to every count (Laplace smoothing)",
        )
        raise
    expect(isinstance(out, (float, int)) or torch.is_tensor(out), "return a single number")
    expect(
        math.isfinite(float(out)),
        "the result is infinite: a token never seen in training has "
        "probability 0 without smoothing; add one to every count (Laplace smoothing)",
    )
    expect_close(
        float(out),
        right,
        1e-4,
        "the unigram cross-entropy",
        hints={
            no_vocab: "after adding 1 to every count, divide by total + vocab_size, not total",
            seen_vocab: "you added the number of DISTINCT tokens seen in training; add-one "
            "smoothing adds 1 for every token of the vocabulary: total + vocab_size",
            right * 3: "you summed the log-probabilities: take the mean over the evaluation tokens",
            -right: "the sign is flipped: cross-entropy is -mean log p",
            right / math.log(2): "that is in bits; use the natural log",
        },
    )


@check("01.3 greedy decoding")
def check_greedy(student_fn) -> None:
    """The student's greedy_generate(model, input_ids, n_new) equals model.generate(do_sample=False)."""
    model, tok = _base()
    ids = tok("On Monday morning,", return_tensors="pt")["input_ids"]
    out = student_fn(model, ids.clone(), 12)
    expect(torch.is_tensor(out), "return a tensor of token ids")
    expect(
        out.ndim == 2 and out.shape[0] == 1,
        f"return shape [1, prompt + new], got {tuple(out.shape)}",
    )
    ref = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        min_new_tokens=12,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    expect(
        out.shape[1] == ref.shape[1],
        f"expected {ref.shape[1]} tokens (prompt {ids.shape[1]} + 12 new), "
        f"got {out.shape[1]}: return the prompt followed by exactly n_new tokens",
    )
    expect(
        torch.equal(out[0, : ids.shape[1]], ids[0]), "the output must start with the prompt tokens"
    )
    if torch.equal(out, ref):
        return
    with torch.no_grad():
        first_pos = model(ids).logits[0, 0].argmax()
    expect(
        not bool((out[0, ids.shape[1] :] == first_pos).all()),
        "you took the argmax at the FIRST position; the next token comes from the LAST position's logits",
    )
    expect(
        False,
        f"your tokens differ from greedy decoding:\n  yours: {tok.decode(out[0])!r}\n"
        f"  greedy: {tok.decode(ref[0])!r}\n(take the argmax of logits[0, -1] and append it each step)",
    )


@check("01.4 scoring candidate answers")
def check_pick(student_fn) -> None:
    """The student's answer_logprob(model, tok, prompt, answer) = summed log p of all answer tokens."""
    from course_lib.evaluation import continuation_logprob

    model, tok = _base()
    # A candidate the model doubts at both tokens (log p ≈ -8 for ' plum', ≈ -10 for ' stew'), so
    # every typical mistake lands far from the right sum. The true ' carrot cake' is almost certain
    # (log p ≈ -0.004): there, scoring one token or averaging would look almost right.
    prompt, answer = "Yara Marsh loves", "plum stew"
    right = continuation_logprob(model, tok, prompt, " " + answer)
    no_space = continuation_logprob(model, tok, prompt, answer)
    first_only = continuation_logprob(model, tok, prompt, " " + answer.split()[0])
    n = len(tok(" " + answer, add_special_tokens=False)["input_ids"])
    out = float(student_fn(model, tok, prompt, answer))
    expect_close(
        out,
        right,
        1e-3,
        f"log p(' {answer}' | prompt)",
        hints={
            no_space: f"the answer needs its leading space: in running text it is ' {answer}', "
            "a different token",
            first_only: "you scored only the first token of the answer; sum over all its tokens",
            right / n: "you averaged over the answer's tokens; the probability of the whole answer "
            "is the SUM of log-probs",
            math.exp(right): "return the log-probability, not the probability",
        },
    )


@check("01.5 the entropy floor of the clinic notes")
def check_floor(value: float) -> None:
    """The generator entropy of clinic_val in nats per predicted token (eos included)."""
    from course_lib.data import load_jsonl

    _, tok = _base()
    notes = load_jsonl("clinic_val")
    nats = -sum(r["logp"] for r in notes)
    lens = [len(tok(r["text"], add_special_tokens=False)["input_ids"]) for r in notes]
    right = nats / (sum(lens) + len(notes))
    expect_close(
        float(value),
        right,
        1e-3,
        "the floor in nats/token",
        hints={
            nats
            / sum(lens): "count the <|end|> token of every note: the model must predict it too",
            nats
            / (sum(lens) + 2 * len(notes)): "do not count <|bos|>: it is given, never predicted",
            right / math.log(2): "that is in bits; stay in nats to compare with the loss",
            -right: "the sign: entropy is -mean log p, a positive number",
        },
    )


def _fact_values_in(text: str, facts: list[dict]) -> list[tuple[dict, str]]:
    """(fact, value) for every candidate value of a fact of the person named in `text`."""
    import re

    found = []
    for f in facts:
        if f["person"] not in text:
            continue
        for value in f["candidates"]:
            if re.search(rf"\b{re.escape(value)}\b", text):
                found.append((f, value))
    return found


@check("01.6 paraphrase augmentation of facts")
def check_augment_facts(student_fn) -> None:
    """augment_facts(facts, per_person, seed): the original statements plus `per_person` new
    texts per person that restate only true facts, name the person, keep out of the held-out
    paraphrase, and depend on the seed alone."""
    from course_lib.data import load_jsonl

    facts = load_jsonl("new_facts")
    statements = [s for f in facts for s in f["statements"]]
    people = list(dict.fromkeys(f["person"] for f in facts))
    out = call_unchanged(student_fn, facts, 3, 0, names=("facts",))
    expect(
        isinstance(out, list) and all(isinstance(t, str) for t in out),
        f"return a list of strings (training texts), got {type(out).__name__}",
    )
    missing = [s for s in statements if s not in out]
    expect(
        not missing,
        f"{len(missing)} original statements are missing (e.g. {missing[:1]}): keep them and add "
        "the new texts; augmentation adds data, it does not replace it",
    )
    new = [t for t in out if t not in set(statements)]
    expect(
        len(new) >= 3 * len(people),
        f"only {len(new)} new texts for {len(people)} people with per_person=3: that is no "
        f"augmentation; write per_person new texts for every person",
    )
    nameless = [t for t in new if not any(p in t for p in people)]
    expect(
        not nameless,
        f"{len(nameless)} new texts name nobody (e.g. {nameless[0][:80]!r}): a fact learnt "
        "from 'She lives in ...' is not tied to any person; name the person in each text"
        if nameless
        else "",
    )
    for f in facts:
        leaked = [t for t in out if f["probe_paraphrase"] in t]
        expect(
            not leaked,
            f"a text contains the held-out paraphrase {f['probe_paraphrase']!r}: that is the "
            f"test probe's phrasing, so the paraphrase score would measure memory, not "
            f"generalisation. Use only the forms of the training statements",
        )
    for t in new:
        for f, value in _fact_values_in(t, facts):
            expect(
                value == f["answer"],
                f"label-changing augmentation: {t[:90]!r} gives {f['person']} the "
                f"{f['attribute']} {value!r}, but the fact is {f['answer']!r}. An augmentation "
                "must keep every fact true",
            )
    again = call_unchanged(student_fn, facts, 3, 0, names=("facts",))
    expect(again == out, "the same seed gave different texts: draw from random.Random(seed)")
    other = call_unchanged(student_fn, facts, 3, 1, names=("facts",))
    expect(other != out, "seed 1 gave the same texts as seed 0: use the seed for every draw")
