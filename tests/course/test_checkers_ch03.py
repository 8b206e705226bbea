"""The chapter 03 checkers accept the reference solutions and name the common mistakes."""

from __future__ import annotations

import math

import pytest

from course_lib.course.checkers import ch03
from course_lib.course.checks import CheckFailed
from course_lib.full_finetuning import should_stop
from course_lib.training import warmup_cosine


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to say '{words}', got: {info.value}"


def test_warmup_cosine_check():
    assert ch03.check_warmup_cosine(warmup_cosine)
    assert ch03.check_warmup_cosine(
        lambda s, w, t, r: s / w if s < w else warmup_cosine(s, w, t, r)
    )
    fails_with(
        ch03.check_warmup_cosine,
        lambda s, w, t, r: 1.0 if s < w else warmup_cosine(s, w, t, r),
        "full learning rate",
    )
    fails_with(
        ch03.check_warmup_cosine, lambda s, w, t, r: warmup_cosine(s, w, t, 0.0), "decays to 0"
    )
    fails_with(
        ch03.check_warmup_cosine,
        lambda s, w, t, r: (
            warmup_cosine(s, w, t, r)
            if s < w
            else r + (1 - r) * 0.5 * (1 + math.cos(math.pi * s / t))
        ),
        "progress",
    )


def groups_ok(model, wd):
    ps = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in ps if p.ndim >= 2], "weight_decay": wd},
        {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0},
    ]


def test_param_groups_check():
    assert ch03.check_param_groups(groups_ok)
    fails_with(
        ch03.check_param_groups,
        lambda m, wd: [
            {"params": [p for p in m.parameters() if p.requires_grad], "weight_decay": wd},
            {"params": [], "weight_decay": 0.0},
        ],
        "biases or norm",
    )
    fails_with(
        ch03.check_param_groups,
        lambda m, wd: [
            {"params": [p for p in m.parameters() if p.ndim >= 2], "weight_decay": wd},
            {"params": [p for p in m.parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        "frozen",
    )


def run_ok(opt, sched, n_epochs, steps):
    out = []
    for _ in range(n_epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


def run_per_epoch(opt, sched, n_epochs, steps):
    out = []
    for _ in range(n_epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    return out


def test_schedule_check():
    assert ch03.check_schedule_loop(run_ok)
    fails_with(ch03.check_schedule_loop, run_per_epoch, "once per epoch")


def accumulate_ok(model, micro):
    model.zero_grad()
    total = 0.0
    for b in micro:
        loss = model(**b).loss / len(micro)
        loss.backward()
        total += loss.item()
    return total


def accumulate_undivided(model, micro):
    model.zero_grad()
    for b in micro:
        model(**b).loss.backward()


def accumulate_zero_inside(model, micro):
    for b in micro:
        model.zero_grad()
        (model(**b).loss / len(micro)).backward()


def test_accumulation_check():
    assert ch03.check_accumulation(accumulate_ok)
    fails_with(ch03.check_accumulation, accumulate_undivided, "divide each micro-batch loss")
    fails_with(ch03.check_accumulation, accumulate_zero_inside, "zero the gradients once")


def test_should_stop_check():
    assert ch03.check_should_stop(should_stop)

    def vs_previous(losses, patience, delta):
        return len(losses) > patience and all(
            b >= a for a, b in zip(losses[-patience - 1 :], losses[-patience:])
        )

    fails_with(ch03.check_should_stop, vs_previous, "BEST loss")


def accumulate_tokens_ok(model, micro):
    model.zero_grad()
    total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
    for b in micro:
        (model(**b).loss * int((b["labels"][:, 1:] != -100).sum()) / total).backward()


def test_token_accumulation_check():
    assert ch03.check_token_accumulation(accumulate_tokens_ok)
    fails_with(ch03.check_token_accumulation, accumulate_ok, "share of the predicted tokens")
