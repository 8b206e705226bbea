"""Checks for the chapter 03 exercises (full fine-tuning).

Each check runs the student's function on cases where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import math
import warnings

import torch

from course_lib.course.checkers._models import tiny_llama
from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal
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
            (
                torch.tensor(
                    [r if s < warmup else ratio + n for s, (r, n) in enumerate(zip(right, no_min))]
                ),
                "min_ratio is added on top of the cosine, so the peak is 1 + min_ratio: rescale it, "
                "min_ratio + (1 - min_ratio) * cosine",
            ),
            (
                torch.tensor(
                    [
                        r if s < warmup else max(ratio, n)
                        for s, (r, n) in enumerate(zip(right, no_min))
                    ]
                ),
                "the cosine is cut off at min_ratio instead of rescaled: "
                "min_ratio + (1 - min_ratio) * cosine reaches min_ratio only at the end",
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

    optimizer, scheduler = fresh()
    used: list[float] = []  # the lr each optimizer.step() actually ran with
    optimizer.register_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))
    got = student_fn(optimizer, scheduler, 3, 4)
    expect(
        len(used) == 12,
        f"optimizer.step() ran {len(used)} times, expected 12 (once per step of each epoch): "
        "the loop must step the optimizer, then the scheduler",
    )
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
    expect_close(
        torch.tensor(used),
        torch.tensor(right),
        1e-6,
        "the learning rates optimizer.step() actually used",
        hints=[
            (
                torch.tensor(early),
                "the lrs you return are right, but scheduler.step() runs before optimizer.step(): "
                "each step then uses the NEXT step's lr (PyTorch warns and skips the first value); "
                "call optimizer.step() before scheduler.step()",
            ),
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
    for p in model.parameters():  # gradients left over from an earlier step: the student zeroes
        p.grad = torch.full_like(p, 0.5)
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
            (
                right[name] + 0.5,
                "the gradients from before the call are still in .grad (backward() adds to them): "
                "zero the gradients once, before the loop",
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
    for q in model.parameters():  # gradients left over from an earlier step: the student zeroes
        q.grad = torch.full_like(q, 0.5)
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
            (
                right[name] + 0.5,
                "the gradients from before the call are still in .grad (backward() adds to them): "
                "zero the gradients once, before the loop",
            ),
        ],
    )


class _SpyScaler(torch.amp.GradScaler):
    """A GradScaler that logs its calls."""

    def __init__(self, log: list, init_scale: float):
        super().__init__("cpu", init_scale=init_scale)
        self.log = log

    def scale(self, outputs):
        self.log.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        self.log.append("unscale_")
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.log.append("scaler.step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.log.append("update")
        return super().update(new_scale)


class _SpyOptimizer(torch.optim.SGD):
    """SGD with lr 0 (the weights never move) that logs its calls and keeps the gradient it saw."""

    def __init__(self, params, log: list):
        super().__init__(params, lr=0.0)
        self.log, self.seen = log, None

    def step(self, closure=None):
        self.log.append("optimizer.step")
        self.seen = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().float()
                for g in self.param_groups
                for p in g["params"]
            ]
        )
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True):
        self.log.append("zero_grad")
        return super().zero_grad(set_to_none)


class _SpyScheduler(torch.optim.lr_scheduler.LambdaLR):
    """A constant schedule that logs its steps (not the one made at construction)."""

    def __init__(self, optimizer, log: list):
        self.log = None
        super().__init__(optimizer, lambda s: 1.0)
        self.log = log

    def step(self, *args, **kwargs):
        if self.log is not None:
            self.log.append("scheduler.step")
        return super().step(*args, **kwargs)


def _amp_run(fn, model, micro, max_norm: float, init_scale: float) -> dict:
    """Run an accumulation step `fn` with spies; the log, the gradient at the step, the return."""
    log: list[str] = []
    dtypes: list[torch.dtype] = []
    opt = _SpyOptimizer(model.parameters(), log)
    scaler, sched = _SpyScaler(log, init_scale), _SpyScheduler(opt, log)
    model.zero_grad(set_to_none=True)
    plain_zero, plain_clip = model.zero_grad, torch.nn.utils.clip_grad_norm_

    def zero(*args, **kwargs):
        log.append("zero_grad")
        return plain_zero(*args, **kwargs)

    def clip(*args, **kwargs):
        log.append("clip")
        return plain_clip(*args, **kwargs)

    hook = model.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda mod, args, out: dtypes.append(out.dtype)
    )
    model.zero_grad, torch.nn.utils.clip_grad_norm_ = zero, clip
    error = None
    try:
        with warnings.catch_warnings():  # the scheduler warns when a step was skipped or misplaced
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            out = fn(model, micro, opt, scaler, sched, max_norm)
    except (CheckFailed, NotImplementedError):  # NotImplementedError: the untouched stub
        raise
    except (RuntimeError, AssertionError) as err:  # torch's GradScaler asserts on misuse
        error, out = str(err), None
    finally:
        del model.zero_grad
        torch.nn.utils.clip_grad_norm_ = plain_clip
        hook.remove()
    left = [p.grad for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    model.zero_grad(set_to_none=True)
    return dict(log=log, seen=opt.seen, out=out, error=error, left=bool(left), dtypes=dtypes)


def _amp_order(r: dict, k: int) -> None:
    """Name the first mistake in the order of calls of one step, from the spies' log."""
    log = r["log"]
    expect(
        r["error"] is None or "already been called" not in r["error"],
        "scaler.unscale_ was called twice before scaler.update() (RuntimeError): call it once per "
        "optimizer step, after the last micro-batch's backward, not inside the micro-batch loop",
    )
    scales = [i for i, e in enumerate(log) if e == "scale"]
    expect(
        len(scales) == k,
        f"scaler.scale was called {len(scales)} times for {k} micro-batches: call "
        "scaler.scale(loss).backward() once per micro-batch (the backward must run on the scaled loss)",
    )
    expect(r["error"] is None, f"your step raised an error: {r['error']}")
    expect(
        not any(e == "zero_grad" and scales[0] < i < scales[-1] for i, e in enumerate(log)),
        "zero_grad is called inside the micro-batch loop: only the last micro-batch's gradient is "
        "left. Zero the gradients once per optimizer step, after the step",
    )
    expect(
        not any(e == "unscale_" and i < scales[-1] for i, e in enumerate(log)),
        "scaler.unscale_ is called before the last micro-batch's backward: unscale once, after all "
        "micro-batches have been accumulated",
    )
    n_sched = log.count("scheduler.step")
    expect(
        n_sched != k,
        f"scheduler.step() ran {n_sched} times, once per micro-batch: the schedule is counted in "
        "optimizer steps, so step it once per optimizer step (after scaler.step)",
    )
    expect(n_sched == 1, f"scheduler.step() ran {n_sched} times: call it once per optimizer step")
    expect(
        "scaler.step" in log,
        "the optimizer is stepped directly: use scaler.step(optimizer), which skips the step when "
        "a gradient overflowed to inf/NaN",
    )
    expect(
        log.count("unscale_") == 1,
        "call scaler.unscale_(optimizer) once before clipping: clip_grad_norm_ must see the true "
        "(unscaled) gradients, not S times larger ones",
    )
    expect(
        "update" in log and log.index("update") > log.index("scaler.step"),
        "call scaler.update() once per optimizer step, after scaler.step(optimizer): it lowers the "
        "scale after an overflow and raises it after many clean steps",
    )
    if "clip" in log:
        expect(
            log.index("clip") > log.index("unscale_"),
            "clip_grad_norm_ runs before scaler.unscale_: it clips the SCALED gradient (S times too "
            "large), so every step is cut to a tiny norm. Unscale first, then clip",
        )
        expect(
            log.index("clip") < log.index("scaler.step"),
            "clip_grad_norm_ runs after scaler.step: the step has already used the unclipped gradient",
        )
    expect(
        any(d == torch.float16 for d in r["dtypes"]),
        "the forward pass does not run in fp16: wrap it in torch.autocast(device_type, "
        "dtype=torch.float16)",
    )


@check("03.7 fp16 + accumulation step")
def check_amp_step(student_fn) -> None:
    """amp_step(model, micro_batches, optimizer, scaler, scheduler, max_norm) does one fp16 step in order."""
    from course_lib.full_finetuning import amp_accumulation_step

    model = _tiny_lm()
    big = _packed_batch()
    micro = [{k: v[i : i + 2] for k, v in big.items()} for i in range(0, 8, 2)]
    S = 2.0**10
    free = _amp_run(amp_accumulation_step, model, micro, 1e9, S)["seen"]
    size = float(free.norm())
    for case, limit in (("a threshold above the gradient norm", 2 * size), ("clipping", size / 2)):
        right = _amp_run(amp_accumulation_step, model, micro, limit, S)
        got = _amp_run(student_fn, model, micro, limit, S)
        _amp_order(got, len(micro))
        seen = got["seen"]
        expect(seen is not None, "the optimizer never stepped: call scaler.step(optimizer)")
        rel = lambda a, b: float((a - b).norm() / b.norm())
        if rel(seen, right["seen"]) > 0.02:
            hints = [
                (
                    free * min(1.0, limit / (4 * size)) * 4,
                    "the loss is not divided by the number "
                    "of micro-batches: the gradient is k times too large before clipping",
                ),
                (
                    free / S,
                    "backward ran on the unscaled loss (loss.backward()), then unscale_ "
                    "divided by S: call scaler.scale(loss).backward()",
                ),
                (
                    free * limit / (S * size),
                    "clip_grad_norm_ runs before scaler.unscale_: it "
                    "clipped the SCALED gradient. Unscale first, then clip",
                ),
                (
                    free,
                    "the gradient was not clipped before the step: call "
                    "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) after unscale_",
                ),
            ]
            named = [msg for value, msg in hints if rel(seen, value) < 0.02]
            expect(
                False,
                f"with {case}, the gradient the optimizer used is wrong (relative error "
                f"{rel(seen, right['seen']):.2g}). "
                + (
                    named[0]
                    if named
                    else "Per micro-batch: fp16 forward, loss / k, scaler.scale(loss).backward(); then "
                    "unscale_, clip, scaler.step, update, scheduler.step, zero_grad"
                ),
            )
        expect(
            not got["left"],
            "gradients are left in .grad after the step: call optimizer.zero_grad() once per "
            "optimizer step, after scaler.step, or the next step adds this step's gradients",
        )
        expect(
            got["out"] is not None and math.isclose(float(got["out"]), size, rel_tol=0.02),
            f"return the gradient norm that clip_grad_norm_ returns (the true norm before "
            f"clipping, {size:.4g}); got {got['out']!r}",
        )
    overflow = _amp_run(student_fn, model, micro, size, 2.0**60)
    expect(
        "optimizer.step" not in overflow["log"],
        "with an overflowing scale the optimizer still stepped on inf/NaN gradients: step through "
        "scaler.step(optimizer), which skips such steps",
    )
