"""Checks for the chapter 10 exercises (evaluation and deployment).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from course_lib.course.checks import call_unchanged, check, expect, expect_close, expect_equal

# --- 10.1 perplexity from token losses -----------------------------------------------------------


def _ppl_case():
    """Token losses of 3 sequences of different lengths, padded with a fake loss of 9.0 and mask 0."""
    losses = torch.tensor(
        [
            [0.5, 1.0, 1.5, 2.0, 9.0, 9.0],
            [3.0, 0.2, 9.0, 9.0, 9.0, 9.0],
            [0.1, 0.4, 0.3, 0.6, 0.8, 1.2],
        ]
    )
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    return losses, mask


@check("10.1 perplexity from token losses")
def check_perplexity(student_fn) -> None:
    """The student's corpus_perplexity(token_losses, mask) = exp(real losses' sum / real tokens)."""
    losses, mask = _ppl_case()
    m = mask.float()
    want = math.exp(float((losses * m).sum() / m.sum()))
    per_seq = [math.exp(float((l * k).sum() / k.sum())) for l, k in zip(losses, m)]
    got = call_unchanged(student_fn, losses.clone(), mask.clone(), names=("token_losses", "mask"))
    expect_close(
        float(got),
        want,
        1e-4 * want,
        "the corpus perplexity",
        hints=[
            (
                sum(per_seq) / len(per_seq),
                "you averaged per-sequence perplexities: average the token losses over the "
                "whole corpus first, then take exp once",
            ),
            (
                math.exp(float(losses.mean())),
                "padding tokens are counted: use the mask to keep only real tokens",
            ),
            (
                math.exp(float((losses * m).sum() / losses.numel())),
                "you divided by all positions, padding included: divide by mask.sum()",
            ),
            (
                float((losses * m).sum() / m.sum()),
                "that is the mean cross-entropy; perplexity is its exp",
            ),
            (
                float(torch.exp((losses * m).sum()).clamp(max=1e30)),
                "exp of the SUM of losses is 1/P(corpus), not a "
                "perplexity: divide by the token count before exp",
            ),
            (
                math.exp(float(((losses * m).sum(1) / m.sum(1)).mean())),
                "you averaged per-sequence mean losses, which "
                "weighs short sequences too much: pool all tokens",
            ),
        ],
    )


# --- 10.2 BLEU from scratch ----------------------------------------------------------------------


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _bleu(cands, refs, max_order=4, clip=True, bp_on=True, geometric=True):
    """Corpus BLEU with one reference per candidate; switches turn the common mistakes on."""
    matches, totals = [0] * max_order, [0] * max_order
    for c, r in zip(cands, refs):
        for n in range(1, max_order + 1):
            cc, rc = _ngrams(c, n), _ngrams(r, n)
            matches[n - 1] += sum(min(k, rc[g]) if clip else k * (rc[g] > 0) for g, k in cc.items())
            totals[n - 1] += sum(cc.values())
    p = [m / t for m, t in zip(matches, totals)]
    c_len, r_len = sum(map(len, cands)), sum(map(len, refs))
    bp = 1.0 if (c_len > r_len or not bp_on) else math.exp(1 - r_len / c_len)
    mean = math.exp(sum(math.log(x) for x in p) / max_order) if geometric else sum(p) / max_order
    return bp * mean


BLEU_CASE = (
    ["the cat the cat sat on the mat today".split(), "a dog ran in the park".split()],
    ["the cat sat on the mat today".split(), "the dog ran fast in the big park today".split()],
)


@check("10.2 BLEU from scratch")
def check_bleu(student_fn) -> None:
    """The student's bleu(candidates, references, max_order=4): corpus BLEU, one tokenised reference each."""
    cands, refs = BLEU_CASE
    want = _bleu(cands, refs)
    expect(want > 0, "internal: the test case must have a non-zero BLEU")
    got = student_fn([list(c) for c in cands], [list(r) for r in refs])
    expect_close(
        float(got),
        want,
        1e-6,
        "corpus BLEU of the test case",
        hints=[
            (
                _bleu(cands, refs, clip=False),
                "n-gram counts are not clipped: a candidate n-gram counts at most as "
                "often as it appears in the reference ('the the the' must not score 3/3)",
            ),
            (
                _bleu(cands, refs, bp_on=False),
                "the brevity penalty is missing: short candidates must pay "
                "exp(1 - r/c) when c <= r",
            ),
            (
                _bleu(cands, refs, geometric=False),
                "you took the arithmetic mean of the precisions; BLEU uses the "
                "geometric mean exp(mean(log p_n))",
            ),
            (
                _bleu(cands, refs, clip=False, bp_on=False),
                "unclipped counts AND no brevity penalty",
            ),
        ],
    )
    expect_close(
        float(student_fn([list(r) for r in refs], [list(r) for r in refs])),
        1.0,
        1e-9,
        "BLEU of the references against themselves",
    )
    short = [["the", "cat", "sat", "on"]]
    expect_close(
        float(student_fn(short, [refs[0]], max_order=2)),
        _bleu(short, [refs[0]], max_order=2),
        1e-6,
        "BLEU with max_order=2 of a short exact prefix",
        hints=[
            (1.0, "a short exact prefix scores 1 without the brevity penalty: apply exp(1 - r/c)")
        ],
    )


# --- 10.3 merge a LoRA delta ---------------------------------------------------------------------


def _merge_case():
    g = torch.Generator().manual_seed(10)
    w = torch.randn(6, 6, generator=g)
    a, b = torch.randn(2, 6, generator=g), torch.randn(6, 2, generator=g)
    return w, a, b, 16.0, 2


@check("10.3 merge a LoRA adapter")
def check_merge(student_fn) -> None:
    """The student's merge_lora_weight(W, A, B, alpha, r) = W + (alpha / r) B A, leaving W untouched."""
    w, a, b, alpha, r = _merge_case()
    w_before = w.clone()
    got = student_fn(w, a, b, alpha, r)
    expect(
        torch.equal(w, w_before),
        "merge must return a new tensor and leave W unchanged (no in-place +=): "
        "the caller may still need the base weight",
    )
    expect(
        isinstance(got, torch.Tensor) and got.shape == w.shape,
        f"the merged weight must have W's shape {tuple(w.shape)}",
    )
    want = w + alpha / r * (b @ a)
    expect_close(
        got,
        want,
        1e-4,
        "the merged weight",
        hints=[
            (
                w + alpha / r * (b @ a).T,
                "B A is transposed: W is [out, in] and B A = [out, r] @ [r, in] already has "
                "that shape (A^T B^T is the transpose, which only fits square weights)",
            ),
            (w + alpha / r * (a.T @ b.T), "A^T B^T is (B A)^T: use B @ A"),
            (w + b @ a, "the scaling alpha / r is missing"),
            (w + alpha * (b @ a), "scaled by alpha instead of alpha / r"),
            (w + r / alpha * (b @ a), "the scaling is upside down: alpha / r, not r / alpha"),
            (alpha / r * (b @ a), "the base weight W is missing: merged = W + (alpha / r) B A"),
        ],
    )
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    expect_close(
        x @ got.T,
        x @ w.T + alpha / r * (x @ a.T @ b.T),
        1e-4,
        "a forward pass through the merged weight versus the unmerged LoRA layer",
    )


# --- 10.4 per-channel int8 -----------------------------------------------------------------------


def _quant_case():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(5, 16, generator=g) * 0.02
    w[2] *= 50  # one row with large weights (outlier channel)
    return w


@check("10.4 per-channel int8")
def check_int8(quantize_fn, dequantize_fn) -> None:
    """The student's quantize(w) -> (q int8, scale [out, 1]) and dequantize(q, scale) -> float weights."""
    w = _quant_case()
    q, scale = quantize_fn(w.clone())
    expect(
        isinstance(q, torch.Tensor) and q.dtype == torch.int8,
        f"q must be a torch.int8 tensor, got {getattr(q, 'dtype', type(q))}: round, clamp to [-127, 127], "
        f".to(torch.int8)",
    )
    scale = torch.as_tensor(scale, dtype=torch.float32)
    expect(
        scale.numel() != 1,
        "one scale for the whole tensor is per-tensor quantization: compute one scale per "
        "output channel (row), w.abs().amax(dim=1, keepdim=True) / 127",
    )
    expect(
        scale.numel() == 5,
        f"expected 5 scales (one per output row) but got {scale.numel()}: the max must be "
        "taken over dim 1 (the inputs of each row), w.abs().amax(dim=1, keepdim=True)",
    )
    want_scale = w.abs().amax(dim=1, keepdim=True) / 127
    expect_close(
        scale.reshape(5, 1),
        want_scale,
        1e-7,
        "the per-row scales",
        hints=[
            (
                w.abs().amax(dim=1, keepdim=True) / 255,
                "divided by 255: symmetric int8 uses 127 levels on each side",
            ),
            (
                w.abs().amax(dim=1, keepdim=True) / 128,
                "divided by 128: +128 does not fit in int8, use 127",
            ),
            (
                w.abs().mean(dim=1, keepdim=True) / 127,
                "the scale uses the mean |w|; absmax uses the max, so that no weight is clipped",
            ),
        ],
    )
    want_q = torch.round(w / want_scale).clamp(-127, 127).to(torch.int8)
    expect_equal(
        q.tolist(),
        want_q.tolist(),
        "the int8 codes",
        hints=[
            (
                torch.trunc(w / want_scale).to(torch.int8).tolist(),
                "values are truncated: round to the nearest code "
                "(torch.round) before casting to int8",
            ),
        ],
    )
    back = dequantize_fn(q, scale.reshape(5, 1))
    expect_close(
        back,
        want_q.float() * want_scale,
        1e-6,
        "the dequantized weights",
        hints=[
            (want_q.float() / want_scale, "dequantize multiplies by the scale, it does not divide"),
        ],
    )
    expect(
        bool(((back - w).abs() <= want_scale / 2 + 1e-7).all()),
        "the round-trip error must be at most half a step of each row",
    )
