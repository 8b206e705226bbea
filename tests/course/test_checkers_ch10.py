"""The chapter 10 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from course_lib.course.checkers import ch10
from course_lib.course.checks import CheckFailed


def fails_with(check, *fns, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(*fns)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


# --- 10.1 ---------------------------------------------------------------------------------------


def ppl(losses, mask):
    m = mask.float()
    return torch.exp((losses * m).sum() / m.sum())


def test_perplexity():
    assert ch10.check_perplexity(ppl)
    fails_with(
        ch10.check_perplexity,
        lambda l, m: torch.stack(
            [torch.exp((a * k).sum() / k.sum()) for a, k in zip(l, m.float())]
        ).mean(),
        words="per-sequence perplexities",
    )
    fails_with(
        ch10.check_perplexity, lambda l, m: torch.exp(l.mean()), words="padding tokens are counted"
    )
    fails_with(ch10.check_perplexity, lambda l, m: torch.exp((l * m).sum()), words="SUM of losses")
    fails_with(ch10.check_perplexity, lambda l, m: (l * m).sum() / m.sum(), words="its exp")
    fails_with(
        ch10.check_perplexity,
        lambda l, m: torch.exp(((l * m).sum(1) / m.sum(1)).mean()),
        words="per-sequence mean losses",
    )


# --- 10.2 ---------------------------------------------------------------------------------------


def make_bleu(clip=True, bp=True, geometric=True):
    def bleu(cands, refs, max_order=4):
        matches, totals = [0] * max_order, [0] * max_order
        for c, r in zip(cands, refs):
            for n in range(1, max_order + 1):
                cc = Counter(tuple(c[i : i + n]) for i in range(len(c) - n + 1))
                rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
                matches[n - 1] += sum(
                    min(k, rc[g]) if clip else (k if rc[g] else 0) for g, k in cc.items()
                )
                totals[n - 1] += sum(cc.values())
        p = [m / t for m, t in zip(matches, totals)]
        if min(p) == 0:
            return 0.0
        c_len, r_len = sum(map(len, cands)), sum(map(len, refs))
        penalty = 1.0 if c_len > r_len or not bp else math.exp(1 - r_len / c_len)
        mean = math.exp(sum(map(math.log, p)) / max_order) if geometric else sum(p) / max_order
        return penalty * mean

    return bleu


def test_bleu():
    assert ch10.check_bleu(make_bleu())
    fails_with(ch10.check_bleu, make_bleu(clip=False), words="not clipped")
    fails_with(ch10.check_bleu, make_bleu(bp=False), words="brevity penalty is missing")
    fails_with(ch10.check_bleu, make_bleu(geometric=False), words="geometric mean")


def test_bleu_matches_the_local_metric():
    from course_lib.evaluation import load_metric

    cands, refs = ch10.BLEU_CASE
    got = load_metric("bleu").compute(
        predictions=[" ".join(c) for c in cands], references=[" ".join(r) for r in refs]
    )
    assert abs(got["bleu"] - make_bleu()(cands, refs)) < 1e-9, (
        "the checker's case must agree with the course metric"
    )


# --- 10.3 ---------------------------------------------------------------------------------------


def test_merge():
    assert ch10.check_merge(lambda w, a, b, alpha, r: w + alpha / r * (b @ a))
    fails_with(
        ch10.check_merge, lambda w, a, b, alpha, r: w + alpha / r * (b @ a).T, words="transposed"
    )
    fails_with(
        ch10.check_merge, lambda w, a, b, alpha, r: w + b @ a, words="scaling alpha / r is missing"
    )
    fails_with(
        ch10.check_merge,
        lambda w, a, b, alpha, r: w + alpha * (b @ a),
        words="instead of alpha / r",
    )
    fails_with(
        ch10.check_merge, lambda w, a, b, alpha, r: w.add_(alpha / r * (b @ a)), words="in-place"
    )


# --- 10.4 ---------------------------------------------------------------------------------------


def quantize(w, dim=1, levels=127, rounding=torch.round):
    scale = w.abs().amax(dim=dim, keepdim=True) / levels
    return rounding(w / scale).clamp(-127, 127).to(torch.int8), scale


def dequantize(q, scale):
    return q.float() * scale


def test_int8():
    assert ch10.check_int8(quantize, dequantize)
    fails_with(
        ch10.check_int8,
        lambda w: (torch.round(w / (w.abs().max() / 127)).to(torch.int8), w.abs().max() / 127),
        dequantize,
        words="per-tensor",
    )
    fails_with(ch10.check_int8, lambda w: quantize(w, dim=0), dequantize, words="dim 1")
    fails_with(
        ch10.check_int8, lambda w: quantize(w, levels=128), dequantize, words="divided by 128"
    )
    fails_with(
        ch10.check_int8, lambda w: quantize(w, rounding=torch.trunc), dequantize, words="truncated"
    )
    fails_with(
        ch10.check_int8, quantize, lambda q, s: q.float() / s, words="multiplies by the scale"
    )
    fails_with(
        ch10.check_int8,
        lambda w: (torch.round(w / (w.abs().amax(1, keepdim=True) / 127)), w.abs().amax(1)),
        dequantize,
        words="torch.int8",
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_merge(mode: str):
    def fn(W, A, B, alpha, r):
        if mode == "in_place":
            W += alpha / r * (B @ A)
            return W
        if mode == "transposed":
            return W + alpha / r * (B @ A).T
        return W + r / alpha * (B @ A)

    return fn


def _h8_int8(mode: str):
    import torch

    def quantize(w):
        scale = w.abs().amax(1, keepdim=True) / (128 if mode == "128" else 127)
        if mode == "per_tensor":
            scale = w.abs().max() / 127 * torch.ones(w.shape[0], 1)
        if mode == "per_column":
            scale = w.abs().amax(0, keepdim=True) / 127
        q = (w / scale).round() if mode != "trunc" else (w / scale).trunc()
        return q.clamp(-127, 127).to(torch.int8), scale

    return quantize, lambda q, s: q.float() * s


def _h8_bleu(mode: str):
    import math
    from collections import Counter

    def ngrams(t, n):
        return Counter(tuple(t[i : i + n]) for i in range(len(t) - n + 1))

    def fn(cands, refs, max_order=4):
        match, total = [0] * max_order, [0] * max_order
        c_len = r_len = 0
        for c, r in zip(cands, refs):
            c_len, r_len = c_len + len(c), r_len + len(r)
            for n in range(1, max_order + 1):
                cn, rn = ngrams(c, n), ngrams(r, n)
                if mode == "unclipped":
                    match[n - 1] += sum(v for g, v in cn.items() if g in rn)
                else:
                    match[n - 1] += sum((cn & rn).values())
                total[n - 1] += max(len(c) - n + 1, 0)
        if min(match) == 0:
            return 0.0
        logp = sum(math.log(m / t) for m, t in zip(match, total)) / max_order
        bp = 1.0 if mode == "no_bp" or c_len > r_len else math.exp(1 - r_len / c_len)
        return bp * math.exp(logp)

    return fn


WRONG_ANSWERS = [
    Wrong(
        "per-sequence perplexities averaged",
        ch10.check_perplexity,
        [
            lambda loss, m: torch.stack(
                [torch.exp((l * k).sum() / k.sum()) for l, k in zip(loss, m.float())]
            ).mean()
        ],
        ("per-sequence perplexities",),
    ),
    Wrong(
        "padding counted",
        ch10.check_perplexity,
        [lambda loss, m: torch.exp(loss.mean())],
        ("padding",),
    ),
    Wrong(
        "per-sequence mean losses averaged",
        ch10.check_perplexity,
        [lambda loss, m: torch.exp(((loss * m).sum(1) / m.sum(1)).mean())],
        ("per-sequence mean losses",),
    ),
    Wrong(
        "mask zeroed the caller's losses",
        ch10.check_perplexity,
        [lambda loss, m: torch.exp(loss.mul_(m).sum() / m.sum())],
        ("in place",),
    ),
    Wrong("unclipped n-gram counts", ch10.check_bleu, [_h8_bleu("unclipped")], ("clip",)),
    Wrong("no brevity penalty", ch10.check_bleu, [_h8_bleu("no_bp")], ("brevity",)),
    Wrong(
        "W changed in place", ch10.check_merge, [_h8_merge("in_place")], ("in-place", "in place")
    ),
    Wrong("B A transposed", ch10.check_merge, [_h8_merge("transposed")], ("transposed",)),
    Wrong("r / alpha", ch10.check_merge, [_h8_merge("upside_down")], ("upside down",)),
    Wrong(
        "one scale per tensor",
        ch10.check_int8,
        list(_h8_int8("per_tensor")),
        ("per", "channel", "row"),
    ),
    Wrong(
        "scale per column",
        ch10.check_int8,
        list(_h8_int8("per_column")),
        ("column", "row", "channel"),
    ),
    Wrong("divided by 128", ch10.check_int8, list(_h8_int8("128")), ("127",)),
    Wrong("truncated, not rounded", ch10.check_int8, list(_h8_int8("trunc")), ("round",)),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
