"""The chapter 03 checkers accept the reference solutions and name the common mistakes."""

from __future__ import annotations

import math

import pytest
import torch

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


def amp_variant(
    divide=True,
    scaled=True,
    zero_inside=False,
    sched_inside=False,
    clip_first=False,
    clip=True,
    unscale_twice=False,
    direct_step=False,
    update=True,
    zero_end=True,
    autocast=True,
):
    """An fp16 accumulation step with one switchable mistake (all defaults: the right step)."""

    def step(model, micro, opt, scaler, sched, max_norm):
        k = len(micro)
        for batch in micro:
            if zero_inside:
                opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
                loss = model(**batch).loss / (k if divide else 1)
            (scaler.scale(loss) if scaled else loss).backward()
            if sched_inside:
                sched.step()
            if unscale_twice:
                scaler.unscale_(opt)
        if clip_first and clip:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if not unscale_twice:
            scaler.unscale_(opt)
        if not clip_first and clip:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if not clip:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        if direct_step:
            opt.step()
        else:
            scaler.step(opt)
        if update:
            scaler.update()
        if not sched_inside:
            sched.step()
        if zero_end:
            opt.zero_grad()
        return float(norm)

    return step


def test_amp_step_check():
    from course_lib.full_finetuning import amp_accumulation_step

    assert ch03.check_amp_step(amp_accumulation_step)
    assert ch03.check_amp_step(amp_variant())
    wrong = {
        "clip_grad_norm_ runs before scaler.unscale_": dict(clip_first=True),
        "zero_grad is called inside the micro-batch loop": dict(zero_inside=True),
        "once per micro-batch": dict(sched_inside=True),
        "not divided by the number of micro-batches": dict(divide=False),
        "unscale_ was called twice": dict(unscale_twice=True),
        "scaler.scale(loss).backward() once per micro-batch": dict(scaled=False),
        "not clipped": dict(clip=False),
        "use scaler.step(optimizer)": dict(direct_step=True),
        "scaler.update()": dict(update=False),
        "gradients are left in .grad": dict(zero_end=False),
        "does not run in fp16": dict(autocast=False),
    }
    for words, mistake in wrong.items():
        fails_with(ch03.check_amp_step, amp_variant(**mistake), words)


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_lr(mode: str):
    import math

    def fn(step, warmup, total, ratio):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / (total - warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return ratio + cosine if mode == "no_rescale" else max(ratio, cosine)

    return fn


def _h8_groups(mode: str):
    def fn(model, wd):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if mode == "bias_by_name":  # norms still decayed
            decay = [p for n, p in named if not n.endswith("bias")]
            plain = [p for n, p in named if n.endswith("bias")]
        else:  # frozen parameters included
            decay = [p for p in model.parameters() if p.ndim >= 2]
            plain = [p for p in model.parameters() if p.ndim < 2]
        return [{"params": decay, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]

    return fn


def _h8_schedule(mode: str):
    def fn(optimizer, scheduler, n_epochs, steps):
        lrs = []
        for _ in range(n_epochs):
            for _ in range(steps):
                lrs.append(optimizer.param_groups[0]["lr"])
                if mode == "scheduler_first":
                    scheduler.step()
                    optimizer.step()
                elif mode == "no_optimizer_step":
                    scheduler.step()
                else:
                    optimizer.step()
            if mode == "per_epoch":
                scheduler.step()
        return lrs

    return fn


def _h8_accumulate(mode: str):
    def fn(model, micro):
        if mode != "no_zero":
            model.zero_grad()
        total = 0.0
        for b in micro:
            loss = model(**b).loss
            if mode == "inside":
                model.zero_grad()
            (loss if mode == "undivided" else loss / len(micro)).backward()
            total += loss.item() / len(micro)
        return total

    return fn


def _h8_tokens(mode: str):
    def fn(model, micro):
        if mode != "no_zero":
            model.zero_grad()
        counts = [int((b["labels"][:, 1:] != -100).sum()) for b in micro]
        if mode == "mask_count":
            counts = [int((b["labels"] != -100).sum()) for b in micro]
        for b, n in zip(micro, counts):
            (model(**b).loss * n / sum(counts)).backward()

    return fn


WRONG_ANSWERS = [
    Wrong(
        "min_ratio added without rescaling",
        ch03.check_warmup_cosine,
        [_h8_lr("no_rescale")],
        ("1 - min_ratio", "(1 − min_ratio)"),
    ),
    Wrong(
        "clipped at min_ratio instead of rescaled",
        ch03.check_warmup_cosine,
        [_h8_lr("clip")],
        ("1 - min_ratio", "(1 − min_ratio)"),
    ),
    Wrong("norm weights decayed", ch03.check_param_groups, [_h8_groups("bias_by_name")], ("norm",)),
    Wrong(
        "frozen parameters included", ch03.check_param_groups, [_h8_groups("frozen")], ("frozen",)
    ),
    Wrong(
        "scheduler stepped per epoch",
        ch03.check_schedule_loop,
        [_h8_schedule("per_epoch")],
        ("once per epoch",),
    ),
    Wrong(
        "scheduler.step() before optimizer.step()",
        ch03.check_schedule_loop,
        [_h8_schedule("scheduler_first")],
        ("before scheduler.step()", "order"),
    ),
    Wrong(
        "optimizer.step() never called",
        ch03.check_schedule_loop,
        [_h8_schedule("no_optimizer_step")],
        ("optimizer.step()",),
    ),
    Wrong("loss not divided", ch03.check_accumulation, [_h8_accumulate("undivided")], ("divide",)),
    Wrong(
        "zeroed inside the loop",
        ch03.check_accumulation,
        [_h8_accumulate("inside")],
        ("inside", "once before"),
    ),
    Wrong(
        "gradients not zeroed first",
        ch03.check_accumulation,
        [_h8_accumulate("no_zero")],
        ("zero",),
    ),
    Wrong(
        "previous loss, not the best",
        ch03.check_should_stop,
        [lambda l, p, d: len(l) > p and all(b >= a for a, b in zip(l[-p - 1 : -1], l[-p:]))],
        ("BEST",),
    ),
    Wrong(
        "min_delta ignored",
        ch03.check_should_stop,
        [lambda l, p, d: len(l) > p and all(x > min(l[:-p]) for x in l[-p:])],
        ("min_delta",),
    ),
    Wrong(
        "counted the attention mask",
        ch03.check_token_accumulation,
        [_h8_tokens("mask_count")],
        ("before the shift",),
    ),
    Wrong(
        "gradients not zeroed first",
        ch03.check_token_accumulation,
        [_h8_tokens("no_zero")],
        ("zero",),
    ),
    Wrong(
        "each micro-batch weighted 1/k",
        ch03.check_token_accumulation,
        [lambda m, mb: [m.zero_grad()] + [(m(**b).loss / len(mb)).backward() for b in mb]],
        ("share of the predicted tokens",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
