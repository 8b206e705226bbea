"""The chapter 11 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch11
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_full_mixed_gb():
    assert ch11.check_full_mixed_gb(lambda n: 16 * n / 1e9)
    fails_with(ch11.check_full_mixed_gb, lambda n: 12 * n / 1e9, "master weights")
    fails_with(ch11.check_full_mixed_gb, lambda n: 8 * n / 1e9, "optimizer state is missing")
    fails_with(ch11.check_full_mixed_gb, lambda n: 16 * n / 1024**3, "GiB")
    fails_with(ch11.check_full_mixed_gb, lambda n: 16 * n, "bytes")


def _lora(shapes, layers, r, targets, f=lambda i, o, r: r * (i + o)):
    return layers * sum(f(*shapes[t], r) for t in targets)


def test_lora_trainable():
    assert ch11.check_lora_trainable(_lora)
    fails_with(
        ch11.check_lora_trainable,
        lambda s, l, r, t: _lora(s, l, r, t, lambda i, o, r: r * i),
        "r * d_in",
    )
    fails_with(
        ch11.check_lora_trainable,
        lambda s, l, r, t: _lora(s, l, r, t, lambda i, o, r: 2 * r * i),
        "square",
    )
    fails_with(
        ch11.check_lora_trainable, lambda s, l, r, t: _lora(s, l, r, t) // l, "number of layers"
    )


def _zero(psi, n, stage, divide=None):
    w, g, k = 2 * psi, 2 * psi, 12 * psi
    divide = (
        divide
        if divide is not None
        else {0: (), 1: ("k",), 2: ("k", "g"), 3: ("k", "g", "w")}[stage]
    )
    return (
        (w / n if "w" in divide else w)
        + (g / n if "g" in divide else g)
        + (k / n if "k" in divide else k)
    )


def test_zero_bytes():
    assert ch11.check_zero_bytes(_zero)
    # stage 2 that also divides the weights (= stage 3)
    fails_with(
        ch11.check_zero_bytes,
        lambda p, n, s: _zero(p, n, s, ("k", "g", "w") if s == 2 else None),
        "stage 3's formula",
    )
    # stage 1 that divides the bf16 weights and gradients instead of the optimizer state
    fails_with(
        ch11.check_zero_bytes,
        lambda p, n, s: _zero(p, n, s, ("w", "g") if s == 1 else None),
        "not the bf16 weights",
    )
    fails_with(ch11.check_zero_bytes, lambda p, n, s: _zero(p, n, s) / 1e9, "bytes, not GB")


def test_all_reduce_mean():
    assert ch11.check_all_reduce_mean(lambda gs: torch.stack(gs).mean(0))
    fails_with(ch11.check_all_reduce_mean, lambda gs: torch.stack(gs).sum(0), "SUM")
    fails_with(ch11.check_all_reduce_mean, lambda gs: gs[0], "rank 0")


def test_weighted_combine():
    def good(gs, counts):
        return sum(g * c for g, c in zip(gs, counts)) / sum(counts)

    assert ch11.check_weighted_combine(good)
    fails_with(ch11.check_weighted_combine, lambda gs, c: torch.stack(gs).mean(0), "equal shards")
    fails_with(
        ch11.check_weighted_combine, lambda gs, c: sum(g * n for g, n in zip(gs, c)), "total count"
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402

WRONG_ANSWERS = [
    Wrong(
        "master weights missing", ch11.check_full_mixed_gb, [lambda n: 12 * n / 1e9], ("master",)
    ),
    Wrong("GiB, not GB", ch11.check_full_mixed_gb, [lambda n: 16 * n / 2**30], ("GiB",)),
    Wrong("bytes", ch11.check_full_mixed_gb, [lambda n: 16 * n], ("bytes",)),
    Wrong(
        "optimizer states in bf16",
        ch11.check_full_mixed_gb,
        [lambda n: (2 + 2 + 4 + 2 + 2) * n / 1e9],
        ("fp32", "m and v"),
    ),
    Wrong(
        "square layers assumed",
        ch11.check_lora_trainable,
        [lambda shapes, layers, r, targets: layers * sum(2 * r * shapes[t][0] for t in targets)],
        ("square",),
    ),
    Wrong(
        "one block",
        ch11.check_lora_trainable,
        [lambda shapes, layers, r, targets: sum(r * sum(shapes[t]) for t in targets)],
        ("number of layers",),
    ),
    Wrong(
        "stage 1 shards weights and gradients",
        ch11.check_zero_bytes,
        [
            lambda psi, n, s: {
                0: 16 * psi,
                1: 4 * psi / n + 12 * psi,
                2: 2 * psi + 14 * psi / n,
                3: 16 * psi / n,
            }[s]
        ],
        ("stage 1 shards the optimizer state",),
    ),
    Wrong(
        "K = 8",
        ch11.check_zero_bytes,
        [
            lambda psi, n, s: {
                0: 12 * psi,
                1: 4 * psi + 8 * psi / n,
                2: 2 * psi + 10 * psi / n,
                3: 12 * psi / n,
            }[s]
        ],
        ("K = 12",),
    ),
    Wrong(
        "sum over ranks", ch11.check_all_reduce_mean, [lambda g: torch.stack(g).sum(0)], ("SUM",)
    ),
    Wrong(
        "plain mean of unequal shards",
        ch11.check_weighted_combine,
        [lambda g, c: torch.stack(g).mean(0)],
        ("weight each",),
    ),
    Wrong(
        "weighted sum not divided",
        ch11.check_weighted_combine,
        [lambda g, c: sum(t * n for t, n in zip(g, c))],
        ("divide", "total"),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
