"""Checks for the chapter 11 exercises (scaling out: memory accounting, ZeRO, data parallelism).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import check, expect, expect_close, expect_equal
from course_lib.memory import KNOWN, lora_params

GIB = 1024**3


@check("11.1 full fine-tuning memory")
def check_full_mixed_gb(student_fn) -> None:
    """The student's full_mixed_gb(n_params): GB (1e9 bytes) of states for mixed-precision AdamW."""
    n = KNOWN["Llama-2-7B"].n_params()
    got = student_fn(n)
    expect(isinstance(got, (int, float)), f"return a number of GB, got {type(got).__name__}")
    expect_close(
        got,
        16 * n / 1e9,
        0.01,
        "the GB of states for Llama-2-7B",
        hints=[
            (
                12 * n / 1e9,
                "12 B/param: the fp32 master weights (4 B) are missing; mixed precision keeps them "
                "next to the bf16 weights",
            ),
            (
                8 * n / 1e9,
                "8 B/param: the optimizer state is missing (AdamW keeps m and v, 4 B each, in fp32)",
            ),
            (
                4 * n / 1e9,
                "4 B/param counts only bf16 weights and gradients: add master weights and Adam's m and v",
            ),
            (
                2 * n / 1e9,
                "2 B/param is the bf16 weights alone (what inference needs), not training",
            ),
            (16 * n / GIB, "that is GiB (2^30 bytes); the question asks for GB (10^9 bytes)"),
            (12 * n / GIB, "GiB instead of GB, and the fp32 master weights are missing"),
            (16 * n, "that is bytes: divide by 1e9 for GB"),
        ],
    )


_SHAPE = KNOWN["Llama-2-70B"]  # grouped-query attention: k_proj/v_proj are 8192 -> 1024


@check("11.2 LoRA trainable parameters")
def check_lora_trainable(student_fn) -> None:
    """The student's lora_trainable(linear_shapes, layers, r, targets): r*(d_in + d_out) per block."""
    shapes, layers = _SHAPE.linear_shapes(), _SHAPE.layers
    for r, targets in (
        (16, ("q_proj", "v_proj")),
        (8, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    ):
        want = lora_params(_SHAPE, r, targets)
        got = student_fn(dict(shapes), layers, r, targets)
        per_block = lambda f: layers * sum(f(*shapes[t]) for t in targets)
        expect_equal(
            got,
            want,
            f"LoRA parameters of Llama-2-70B, r={r}, targets {targets}",
            hints=[
                (
                    per_block(lambda i, o: r * i),
                    "r * d_in counts only A; B is [d_out, r]: use r * (d_in + d_out)",
                ),
                (
                    per_block(lambda i, o: r * o),
                    "r * d_out counts only B; A is [r, d_in]: use r * (d_in + d_out)",
                ),
                (
                    per_block(lambda i, o: 2 * r * i),
                    "2 * r * d assumes square layers; with grouped-query attention "
                    "k_proj and v_proj map 8192 -> 1024: use r * (d_in + d_out)",
                ),
                (
                    per_block(lambda i, o: r * i * o),
                    "r * d_in * d_out is not LoRA's size: A and B together have r * (d_in + d_out)",
                ),
                (want // layers, "that is one decoder block: multiply by the number of layers"),
            ],
        )


def _zero_reference(psi: float, n: int, stage: int) -> float:
    w, g, k = 2 * psi, 2 * psi, 12 * psi
    return {0: w + g + k, 1: w + g + k / n, 2: w + (g + k) / n, 3: (w + g + k) / n}[stage]


@check("11.3 ZeRO memory per GPU")
def check_zero_bytes(student_fn) -> None:
    """The student's zero_bytes(psi, n_gpus, stage): model-state bytes per GPU, mixed-precision Adam."""
    psi, n = 7.5e9, 64
    for stage, paper in ((0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)):
        got = student_fn(psi, n, stage)
        want = _zero_reference(psi, n, stage)
        wrong = {s: _zero_reference(psi, n, s) for s in range(4) if s != stage}
        hints = [(wrong[s], f"that is stage {s}'s formula, not stage {stage}'s") for s in wrong]
        w8, k8 = 2 * psi, 8 * psi  # K = 8: Adam's m and v without the fp32 master weights
        hints += [
            (
                {0: 2 * w8 + k8, 1: 2 * w8 + k8 / n, 2: w8 + (w8 + k8) / n, 3: (2 * w8 + k8) / n}[
                    stage
                ],
                "K = 12, not 8: the fp32 master weights count as optimizer state too",
            ),
            (
                (2 * psi + 2 * psi) / n + 12 * psi,
                "stage 1 shards the optimizer state (12 B), not the bf16 weights and gradients",
            ),
            (want / 1e9, "return bytes, not GB"),
        ]
        hints = [(v, m) for v, m in hints if abs(v - want) > 1]
        expect_close(
            got,
            want,
            0.001 * want,
            f"stage {stage} bytes per GPU (paper: {paper} GB for Ψ=7.5 B, N=64)",
            hints=hints,
        )
    expect_close(
        student_fn(psi, 1, 3), 16 * psi, 1.0, "stage 3 on ONE GPU (nothing to shard: 16 Ψ)"
    )


def _shard_grads(seed: int = 0, sizes=(3, 3, 3, 3)):
    """Per-rank gradients of a linear model's mean squared error, and the full-batch gradient."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, generator=g)
    xs = [torch.randn(s, 5, generator=g) for s in sizes]
    ys = [torch.randn(s, generator=g) for s in sizes]

    def grad(x, y):
        ww = w.clone().requires_grad_()
        ((x @ ww - y) ** 2).mean().backward()
        return ww.grad

    return [grad(x, y) for x, y in zip(xs, ys)], grad(torch.cat(xs), torch.cat(ys)), sizes


@check("11.4 all-reduce of gradients")
def check_all_reduce_mean(student_fn) -> None:
    """The student's all_reduce_mean(grads): one gradient per rank (equal shards) -> the shared one."""
    grads, full, _ = _shard_grads()
    got = student_fn([t.clone() for t in grads])
    expect(
        torch.is_tensor(got), f"return one tensor (the averaged gradient), got {type(got).__name__}"
    )
    expect_equal(
        tuple(got.shape),
        tuple(full.shape),
        "the gradient's shape (average across ranks, not within one)",
    )
    expect_close(
        got,
        full,
        1e-5,
        "the averaged gradient (equals the full-batch gradient)",
        hints=[
            (
                torch.stack(grads).sum(0),
                "that is the SUM over ranks: DDP divides by the world size after the "
                "all-reduce, otherwise the step is world_size times too large",
            ),
            (grads[0], "that is rank 0's own gradient: all-reduce combines every rank's"),
            (
                torch.stack(grads).sum(0) / (len(grads) - 1),
                "divide by the number of ranks, not ranks - 1",
            ),
        ],
    )


@check("11.5 combining unequal shards")
def check_weighted_combine(student_fn) -> None:
    """The student's combine(grads, counts): per-rank gradients of per-rank MEAN losses over `counts`
    examples each -> the full-batch gradient."""
    grads, full, sizes = _shard_grads(seed=1, sizes=(2, 7, 3))
    got = student_fn([t.clone() for t in grads], list(sizes))
    expect(torch.is_tensor(got), f"return one tensor, got {type(got).__name__}")
    counts = torch.tensor(sizes, dtype=torch.float32)
    expect_close(
        got,
        full,
        1e-5,
        "the full-batch gradient from shards of 2, 7 and 3 examples",
        hints=[
            (
                torch.stack(grads).mean(0),
                "a plain mean of shard means is only right for equal shards: weight each "
                "rank's gradient by its number of examples",
            ),
            (
                torch.stack(grads).sum(0),
                "a plain sum ignores both the shard sizes and the normalisation",
            ),
            (
                (torch.stack(grads) * counts[:, None]).sum(0),
                "weighted by the counts, but not divided by the total count",
            ),
            (
                (torch.stack(grads) / counts[:, None]).sum(0) / len(sizes),
                "divided by the counts: each rank's loss is "
                "already a mean, so multiply by its count",
            ),
        ],
    )
    equal, full_eq, sizes_eq = _shard_grads(seed=2)
    expect_close(student_fn(equal, list(sizes_eq)), full_eq, 1e-5, "equal shards (the DDP case)")
