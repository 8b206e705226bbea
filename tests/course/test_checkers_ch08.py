"""The chapter 08 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch08
from course_lib.course.checks import CheckFailed
from course_lib.evaluation import exact_match
from course_lib.formats import response_labels
from course_lib.generation import sampling_probs
from course_lib.sft import pack_examples


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def labels_fn(shift=0, mask_prompt=True, pad_label=-100, end=True, newline=False):
    def fn(tok, messages, width):
        ex = response_labels(tok, messages)
        ids, labels = list(ex["input_ids"]), list(ex["labels"])
        learnt = [i for i, lab in enumerate(labels) if lab != -100]
        a, b = learnt[0] + shift, learnt[-1] + (1 if end else 0) + (1 if newline else 0)
        labels = [ids[i] if (a <= i < b or not mask_prompt) else -100 for i in range(len(ids))]
        pad = width - len(ids)
        return {"input_ids": ids + [tok.pad_token_id] * pad, "labels": labels + [pad_label] * pad}

    return fn


def test_labels():
    assert ch08.check_labels(labels_fn())
    fails_with(ch08.check_labels, labels_fn(mask_prompt=False), "prompt is not masked")
    fails_with(ch08.check_labels, labels_fn(pad_label=0), "padding is labelled with the pad id")
    fails_with(ch08.check_labels, labels_fn(shift=-1), "newline after <|assistant|> is labelled")
    fails_with(ch08.check_labels, labels_fn(shift=1), "first token is not labelled")
    fails_with(ch08.check_labels, labels_fn(end=False), "never learn to stop")
    fails_with(ch08.check_labels, labels_fn(newline=True), "newline after <|end|>")


def test_exact_match():
    assert ch08.check_exact_match(exact_match)
    fails_with(
        ch08.check_exact_match, lambda p, r: sum(a == b for a, b in zip(p, r)) / len(r), "case"
    )
    fails_with(
        ch08.check_exact_match,
        lambda p, r: sum(a.lower().strip() == b.lower().strip() for a, b in zip(p, r)) / len(r),
        "punctuation",
    )
    fails_with(ch08.check_exact_match, lambda p, r: exact_match(p, r) if p else 0.0, "should raise")


def test_nucleus():
    assert ch08.check_nucleus(sampling_probs)

    def inclusive(logits, t, p):
        z = logits / t
        probs, order = z.softmax(-1).sort(-1, descending=True)
        drop = probs.cumsum(-1) >= p
        return z.masked_fill(drop.scatter(-1, order, drop), float("-inf")).softmax(-1)

    def no_renorm(logits, t, p):
        probs = sampling_probs(logits, t, 1.0)
        return probs * (sampling_probs(logits, t, p) > 0)

    fails_with(ch08.check_nucleus, inclusive, "top token")
    fails_with(ch08.check_nucleus, no_renorm, "renormalised")
    fails_with(
        ch08.check_nucleus,
        lambda z, t, p: (sampling_probs(z, 1.0, p).log() / t).softmax(-1),
        "after top-p",
    )
    fails_with(ch08.check_nucleus, lambda z, t, p: sampling_probs(z * t * t, t, p), "multiplied")


def test_packing():
    strip = lambda rows: [{k: r[k] for k in ("input_ids", "labels", "position_ids")} for r in rows]  # noqa: E731
    assert ch08.check_packing(lambda ex, n: strip(pack_examples(ex, n)))

    def running(ex, n):
        rows = strip(pack_examples(ex, n))
        return [dict(r, position_ids=list(range(len(r["input_ids"])))) for r in rows]

    def one_per_row(ex, n):
        return [
            {
                "input_ids": e["input_ids"],
                "labels": e["labels"],
                "position_ids": list(range(len(e["input_ids"]))),
            }
            for e in ex
        ]

    def unmasked(ex, n):
        return strip(
            pack_examples(
                [{"input_ids": e["input_ids"], "labels": list(e["input_ids"])} for e in ex], n
            )
        )

    def dropped(ex, n):
        return strip(pack_examples(ex[:-1], n))

    fails_with(ch08.check_packing, running, "run on across")
    fails_with(ch08.check_packing, one_per_row, "several examples in a row")
    fails_with(ch08.check_packing, unmasked, "labels changed")
    fails_with(ch08.check_packing, dropped, "exactly once")


def test_per_example_loss():
    assert ch08.check_per_example_loss(ch08.reference_per_example_loss)
    token_mean = (
        lambda lg, lb: torch.nn.functional.cross_entropy(
            lg[:, :-1].reshape(-1, lg.shape[-1]),  # noqa: E731
            lb[:, 1:].reshape(-1),
        )
    )
    fails_with(ch08.check_per_example_loss, token_mean, "token mean")

    def no_shift(lg, lb):
        mask = lb != -100
        nll = -lg.log_softmax(-1).gather(-1, lb.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        return (nll.sum(1) / mask.sum(1)).mean()

    fails_with(ch08.check_per_example_loss, no_shift, "not shifted")
