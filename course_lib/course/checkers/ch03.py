"""Checks for the chapter 03 exercises (full fine-tuning).

Each check runs the student's function on cases where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import math

import torch

from course_lib.course.checkers._models import tiny_llama
from course_lib.course.checks import check, expect, expect_close, expect_equal
from course_lib.full_finetuning import accumulated_gradients, batch_gradients, should_stop
from course_lib.training import warmup_cosine


def _tiny_lm(seed: int = 0):
    """A tiny Llama (biases in attention, so a model with biases, norms and matrices)."""
    return tiny_llama(bias=True, tie_word_embeddings=True, pad_token_id=0, seed=seed)


@check("03.1 warm-up + cosine")
def check_warmup_cosine(student_fn) -> None:
    """lr_multiplier(step, warmup, total, min_ratio) follows linear warm-up then cosine to min_ratio."""
    warmup, total, ratio = 10, 50, 0.1
    got = [float(student_fn(s, warmup, total, ratio)) for s in range(total)]
    right = [warmup_cosine(s, warmup, total, ratio) for s in range(total)]
    hf_style = [s / warmup if s < warmup else right[s] for s in range(total)]
    if all(abs(g - h) < 1e-6 for g, h in zip(got, hf_style)):
        right = hf_style  # warm-up from 0 (the HF convention) is fine too
    expect(
        got[0] < 0.5,
        f"the multiplier at step 0 is {got[0]:.3g}: the warm-up starts at the full "
        "learning rate. It must start small and grow linearly to 1 over `warmup` steps",
    )
    no_min = [warmup_cosine(s, warmup, total, 0.0) for s in range(total)]
    over_total = [
        r if s < warmup else ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * s / total))
        for s, r in enumerate(right)
    ]
    no_half = [
        r
        if s < warmup
        else ratio + (1 - ratio) * math.cos(math.pi * (s - warmup) / (total - warmup))
        for s, r in enumerate(right)
    ]
    expect_close(
        torch.tensor(got),
        torch.tensor(right),
        1e-6,
        "the multipliers for steps 0..49",
        hints=[
            (
                torch.tensor(no_min),
                "the cosine decays to 0: it must end at min_ratio (lr * min_ratio)",
            ),
            (
                torch.tensor(over_total),
                "measure the cosine's progress from the end of warm-up: "
                "(step - warmup) / (total - warmup), not step / total",
            ),
            (
                torch.tensor(no_half),
                "the cosine factor is 0.5 * (1 + cos(pi * progress)), which goes from 1 to 0; "
                "cos alone goes from 1 to -1",
            ),
        ],
    )
    expect(
        abs(got[warmup] - 1) < 1e-6,
        f"at the end of warm-up (step {warmup}) the multiplier must be 1",
    )


@check("03.2 weight-decay groups")
def check_param_groups(student_fn) -> None:
    """param_groups(model, wd) returns [decayed matrices, undecayed biases/norms] of trainable parameters."""
    model = _tiny_lm()
    model.model.layers[0].requires_grad_(False)
    groups = student_fn(model, 0.05)
    expect(
        isinstance(groups, (list, tuple))
        and len(groups) == 2
        and all(isinstance(g, dict) for g in groups),
        "return a list of two dicts: {'params': [...], 'weight_decay': wd} and "
        "{'params': [...], 'weight_decay': 0.0}",
    )
    decay = [g for g in groups if g.get("weight_decay", 0) > 0]
    expect(
        len(decay) == 1,
        "exactly one group must have weight_decay > 0 (and it must be the value passed in)",
    )
    expect_close(decay[0]["weight_decay"], 0.05, 1e-12, "the decayed group's weight_decay")
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names.get(id(p), "?") for p in decay[0]["params"]}
    plain = {names.get(id(p), "?") for g in groups if g is not decay[0] for p in g["params"]}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    in_frozen = sorted((decayed | plain) & frozen)
    expect(
        not in_frozen,
        f"frozen parameters are in the optimizer (e.g. {in_frozen[:1]}): "
        "keep only those with requires_grad=True",
    )
    biases = sorted(n for n in decayed if n.endswith("bias") or "norm" in n)
    expect(
        not biases,
        f"weight decay on biases or norm weights (e.g. {biases[:2]}): those are vectors "
        "(ndim < 2); decay only matrices, or it pulls norm scales towards 0",
    )
    want_decay = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    want_plain = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2}
    expect_equal(
        sorted(decayed), sorted(want_decay), "the decayed parameters (every trainable matrix)"
    )
    expect_equal(
        sorted(plain),
        sorted(want_plain),
        "the undecayed parameters (every trainable bias and norm)",
    )


@check("03.3 stepping the scheduler")
def check_schedule_loop(student_fn) -> None:
    """run_schedule(optimizer, scheduler, n_epochs, steps_per_epoch) returns the lr used at each step."""
    p = torch.nn.Parameter(torch.zeros(2))

    def fresh():
        opt = torch.optim.SGD([p], lr=1.0)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 3, 12, 0.0))

    got = student_fn(*fresh(), 3, 4)
    expect(
        isinstance(got, (list, tuple)) and len(got) == 12,
        f"return one learning rate per optimizer step: 3 epochs x 4 steps = 12 values, got "
        f"{len(got) if hasattr(got, '__len__') else type(got).__name__}",
    )
    right = [warmup_cosine(s, 3, 12, 0.0) for s in range(12)]
    per_epoch = [warmup_cosine(s // 4, 3, 12, 0.0) for s in range(12)]
    early = [warmup_cosine(s + 1, 3, 12, 0.0) for s in range(12)]
    twice = [warmup_cosine(2 * s, 3, 12, 0.0) for s in range(12)]
    expect_close(
        torch.tensor([float(x) for x in got]),
        torch.tensor(right),
        1e-6,
        "the 12 learning rates",
        hints=[
            (
                torch.tensor(per_epoch),
                "the scheduler is stepped once per epoch: the schedule is "
                "defined in optimizer steps, so call scheduler.step() after every optimizer.step()",
            ),
            (
                torch.tensor(early),
                "the first step already uses the second step's lr: read the lr "
                "and call optimizer.step() before scheduler.step()",
            ),
            (torch.tensor(twice), "the scheduler is stepped twice per optimizer step"),
        ],
    )


def _packed_batch(seed: int = 0, size: int = 8, length: int = 12) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (size, length), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


@check("03.4 gradient accumulation")
def check_accumulation(student_fn) -> None:
    """accumulate(model, micro_batches) leaves in .grad the gradient of the large batch."""
    model = _tiny_lm()
    big = _packed_batch()
    micro = [{k: v[i : i + 2] for k, v in big.items()} for i in range(0, 8, 2)]
    right = batch_gradients(model, big)
    model.zero_grad(set_to_none=True)
    out = student_fn(model, micro)
    got = {
        n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    expect(
        any(g.abs().sum() > 0 for g in got.values()),
        "no gradient in the parameters: call backward() and do not zero the gradients at the end",
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    last = accumulated_gradients(model, micro[-1:], "none")[name]
    expect_close(
        got[name],
        right[name],
        1e-5,
        "the accumulated gradient of q_proj",
        hints=[
            (
                right[name] * 4,
                "the gradient is 4x too large: divide each micro-batch loss by the number of "
                "micro-batches (4) before backward(), so the sum is the mean over the batch",
            ),
            (
                last / 4,
                "only the last micro-batch's gradient is left: zero the gradients once before the loop, "
                "not inside it",
            ),
            (
                last,
                "only the last micro-batch's gradient is left: zero the gradients once before the loop",
            ),
            (
                right[name] / 2,
                "the gradient is too small by the micro-batch size: divide by the number of "
                "micro-batches, not by the number of examples",
            ),
        ],
    )
    if out is not None:
        out = out.detach() if torch.is_tensor(out) else out
        expect_close(
            float(out),
            float(model(**big).loss.detach()),
            1e-4,
            "the returned loss (the mean over micro-batches)",
        )


@check("03.5 early stopping")
def check_should_stop(student_fn) -> None:
    """stop(eval_losses, patience, min_delta): True once `patience` evaluations in a row miss the best."""
    cases = [
        ([3.0, 2.0, 2.5, 2.4], 2, 0.0),
        ([3.0, 2.0, 1.9, 1.95], 2, 0.0),
        ([3.0, 2.0, 2.1], 2, 0.0),
        ([3.0, 2.0, 1.99, 1.98], 2, 0.05),
        ([3.0, 2.5, 2.0, 1.5], 1, 0.0),
        ([2.0], 1, 0.0),
        ([3.0, 2.0, 2.1, 2.05, 2.02], 3, 0.0),
    ]
    for losses, patience, delta in cases:
        got, want = bool(student_fn(losses, patience, delta)), should_stop(losses, patience, delta)
        if got == want:
            continue
        if (losses, patience) == ([3.0, 2.0, 2.5, 2.4], 2):
            expect(
                False,
                "losses [3.0, 2.0, 2.5, 2.4] with patience 2: the last two evaluations are both worse "
                "than the best (2.0), so stop. Compare with the BEST loss so far, not the previous one",
            )
        if delta:
            expect(
                False,
                f"losses {losses} with min_delta {delta}: improvements smaller than min_delta do not "
                "count, so this run should stop",
            )
        if len(losses) <= patience:
            expect(
                False,
                f"losses {losses}: with patience {patience} there are not enough evaluations to stop",
            )
        expect(
            False,
            f"losses {losses}, patience {patience}: expected {want}, got {got}. Stop only when each of "
            f"the last `patience` losses fails to beat the best loss before them",
        )


def _padded_micro_batches() -> list[dict]:
    out = []
    for i, length in enumerate((5, 12, 7, 12)):
        b = _packed_batch(i, size=2, length=12)
        b["attention_mask"] = torch.ones_like(b["input_ids"])
        b["attention_mask"][:, length:] = 0
        b["labels"] = b["labels"].masked_fill(b["attention_mask"] == 0, -100)
        out.append(b)
    return out


@check("03.6 token-weighted accumulation")
def check_token_accumulation(student_fn) -> None:
    """accumulate_tokens(model, micro_batches) gives the per-token mean gradient over padded micro-batches."""
    model = _tiny_lm()
    micro = _padded_micro_batches()
    right = accumulated_gradients(model, micro, "tokens")
    mean = accumulated_gradients(model, micro, "mean")
    student_fn(model, micro)
    name = "model.layers.1.mlp.up_proj.weight"
    p = dict(model.named_parameters())[name]
    expect(p.grad is not None, "no gradient in the parameters: call backward() on each micro-batch")
    unshifted = []
    total = sum(int((b["labels"] != -100).sum()) for b in micro)
    model.zero_grad(set_to_none=True)
    for b in micro:
        (model(**b).loss * int((b["labels"] != -100).sum()) / total).backward()
    unshifted = p.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    student_fn(model, micro)
    expect_close(
        p.grad,
        right[name],
        1e-5,
        "the accumulated gradient of up_proj",
        hints=[
            (
                mean[name],
                "each micro-batch got weight 1/k: with padding the micro-batches predict different "
                "numbers of tokens, so weight each loss by its share of the predicted tokens",
            ),
            (
                unshifted,
                "you counted the labels before the shift: the first token of each row is never "
                "predicted, count labels[:, 1:] != -100",
            ),
        ],
    )
