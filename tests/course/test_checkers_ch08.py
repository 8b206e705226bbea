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


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_labels(mode: str):
    from course_lib.formats import response_labels

    def fn(tok, messages, width):
        ex = response_labels(tok, messages)
        ids, labels = ex["input_ids"], ex["labels"]
        pad = width - len(ids)
        if mode == "pad_labelled":
            return {
                "input_ids": ids + [tok.pad_token_id] * pad,
                "labels": labels + [tok.pad_token_id] * pad,
            }
        if mode == "no_end":
            end = max(i for i, lab in enumerate(labels) if lab != -100)
            labels = labels[:end] + [-100] * (len(labels) - end)
        if mode == "left_pad":
            return {"input_ids": [tok.pad_token_id] * pad + ids, "labels": [-100] * pad + labels}
        return {"input_ids": ids + [tok.pad_token_id] * pad, "labels": labels + [-100] * pad}

    return fn


def _h8_em(mode: str):
    import string

    def norm(s):
        s = s.lower()
        if mode != "no_punct":
            s = s.strip(string.punctuation + " ")
        return " ".join(s.split()) if mode != "remove_spaces" else s.replace(" ", "")

    def fn(preds, refs):
        if mode != "no_validation" and (len(preds) != len(refs) or not preds):
            raise ValueError("lists must be non-empty and of equal length")
        hits = [norm(p) == norm(r) for p, r in zip(preds, refs)]
        if mode == "count":
            return sum(hits)
        return sum(hits) / max(len(hits), 1)

    return fn


def _h8_nucleus(mode: str):

    def fn(logits, t, p):
        if mode == "in_place":
            logits /= t  # divides the caller's logits
            z = logits
        else:
            z = logits / t
        probs, order = z.softmax(-1).sort(-1, descending=True)
        before = probs.cumsum(-1) - probs
        drop = (before >= p).scatter(-1, order, before >= p)
        kept = z.softmax(-1).masked_fill(drop, 0.0)
        return kept if mode == "unnormalised" else kept / kept.sum(-1, keepdim=True)

    return fn


def _h8_pack(mode: str):
    def fn(examples, max_length):
        rows, current = [], None
        for e in examples:
            n = len(e["input_ids"])
            if current is None or len(current["input_ids"]) + n > max_length:
                current = {"input_ids": [], "labels": [], "position_ids": []}
                rows.append(current)
            start = len(current["input_ids"])
            current["input_ids"] += e["input_ids"]
            current["labels"] += e["labels"]
            current["position_ids"] += (
                list(range(start, start + n)) if mode == "running" else list(range(n))
            )
            if mode == "mutates":
                e["labels"][0] = -100  # "mask the first token of each example" in the caller's data
        return rows

    return fn


def _h8_pel(mode: str):
    import torch.nn.functional as F

    def fn(logits, labels):
        x, y = logits[:, :-1], labels[:, 1:]
        if mode == "in_place":
            labels[labels == -100] = 0  # "so gather works", on the caller's labels
            y = labels[:, 1:]
            nll = F.cross_entropy(x.transpose(1, 2), y, reduction="none")
            m = y != 0
            return ((nll * m).sum(1) / m.sum(1)).mean()
        nll = F.cross_entropy(x.transpose(1, 2), y, reduction="none", ignore_index=-100)
        m = y != -100
        if mode == "token_mean":
            return nll[m].mean()
        return ((nll * m).sum(1) / y.shape[1]).mean()

    return fn


WRONG_ANSWERS = [
    Wrong(
        "padding labelled with the pad id",
        ch08.check_labels,
        [_h8_labels("pad_labelled")],
        ("pad id",),
    ),
    Wrong("<|end|> not labelled", ch08.check_labels, [_h8_labels("no_end")], ("stop",)),
    Wrong(
        "padded on the left", ch08.check_labels, [_h8_labels("left_pad")], ("right-padded", "left")
    ),
    Wrong(
        "punctuation not stripped", ch08.check_exact_match, [_h8_em("no_punct")], ("punctuation",)
    ),
    Wrong(
        "spaces deleted",
        ch08.check_exact_match,
        [_h8_em("remove_spaces")],
        ("do not delete spaces",),
    ),
    Wrong("count, not share", ch08.check_exact_match, [_h8_em("count")], ("share",)),
    Wrong("no length check", ch08.check_exact_match, [_h8_em("no_validation")], ("ValueError",)),
    Wrong("not renormalised", ch08.check_nucleus, [_h8_nucleus("unnormalised")], ("renormalised",)),
    Wrong("logits divided in place", ch08.check_nucleus, [_h8_nucleus("in_place")], ("in place",)),
    Wrong("positions run on", ch08.check_packing, [_h8_pack("running")], ("restart",)),
    Wrong("caller's labels changed", ch08.check_packing, [_h8_pack("mutates")], ("in place",)),
    Wrong("token mean", ch08.check_per_example_loss, [_h8_pel("token_mean")], ("token mean",)),
    Wrong(
        "divided by sequence length",
        ch08.check_per_example_loss,
        [_h8_pel("seq_len")],
        ("number of labelled tokens",),
    ),
    Wrong(
        "labels overwritten in place",
        ch08.check_per_example_loss,
        [_h8_pel("in_place")],
        ("in place",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
