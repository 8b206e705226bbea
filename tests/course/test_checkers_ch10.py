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
