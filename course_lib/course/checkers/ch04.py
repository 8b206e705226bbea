"""Checks for the chapter 04 exercises (LoRA, the math).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import math

import torch

from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal


@check("04.1 LoRA parameter count")
def check_param_count(student_fn) -> None:
    """The student's lora_param_count(shapes, r): shapes is a list of (d_out, d_in)."""
    shapes, r = [(192, 192), (512, 192), (192, 512)], 4
    want = sum(r * (o + i) for o, i in shapes)
    expect_equal(
        student_fn(shapes, r),
        want,
        "LoRA parameters for 3 layers at r=4",
        hints=[
            (
                sum(r * o * i for o, i in shapes),
                "r * d_in * d_out is the size of a rank-r dense update; LoRA stores A and B",
            ),
            (
                sum(2 * r * i for o, i in shapes),
                "A is [r, d_in] and B is [d_out, r]: use both dimensions, not d_in twice",
            ),
            (
                sum(o * i for o, i in shapes),
                "that is the size of the frozen weights, not of the adapter",
            ),
            (
                r * (shapes[0][0] + shapes[0][1]),
                "count every layer in the list, not only the first",
            ),
        ],
    )


def _case():
    g = torch.Generator().manual_seed(4)
    x, w = torch.randn(3, 6, generator=g), torch.randn(5, 6, generator=g)
    a, b = torch.randn(2, 6, generator=g), torch.randn(5, 2, generator=g)
    return x, w, a, b, 8.0, 2


@check("04.2 LoRA forward")
def check_forward(student_fn) -> None:
    """The student's lora_forward(x, W, A, B, alpha, r) = x W^T + (alpha/r) x A^T B^T."""
    x, w, a, b, alpha, r = _case()
    out = student_fn(x, w, a, b, alpha, r)
    base, update = x @ w.T, x @ a.T @ b.T
    expect_close(
        out,
        base + alpha / r * update,
        1e-4,
        "the LoRA layer's output",
        hints=[
            (base + update, "the update is not scaled: multiply B A x by alpha / r"),
            (base + alpha * update, "scaled by alpha instead of alpha / r"),
            (base + r / alpha * update, "the scaling is upside down: alpha / r, not r / alpha"),
            (
                base + alpha / math.sqrt(r) * update,
                "alpha / sqrt(r) is rsLoRA's scaling; plain LoRA uses alpha / r",
            ),
            (base, "the low-rank update is missing: add (alpha / r) * x A^T B^T"),
            (alpha / r * update, "the frozen base output x W^T is missing"),
        ],
    )


@check("04.3 a LoRA module")
def check_module(student_cls) -> None:
    """The student's LoRA(base_linear, r, alpha) module: shapes, zero B, frozen base, forward."""
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    w_before = base.weight.detach().clone()
    layer = student_cls(base, 2, 8.0)
    expect(hasattr(layer, "A") and hasattr(layer, "B"), "name the two factors .A and .B")
    expect(
        tuple(layer.A.shape) != (6, 2) or tuple(layer.B.shape) != (2, 5),
        "A and B have swapped/transposed shapes: A is [r, in] = [2, 6] and B is [out, r] = [5, 2], "
        "so that B @ A has the weight's shape [out, in]",
    )
    expect_equal(tuple(layer.A.shape), (2, 6), "A's shape [r, in]")
    expect_equal(tuple(layer.B.shape), (5, 2), "B's shape [out, r]")
    expect(
        bool(torch.all(layer.B == 0)),
        "B must start at zero, so that the adapted layer starts at the base layer",
    )
    expect(
        bool(layer.A.abs().sum() > 0),
        "A must be random (e.g. Kaiming-uniform): with A = B = 0 the gradient of "
        "B is zero too and nothing ever trains",
    )
    trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
    expect(
        not any(p.requires_grad for p in base.parameters()),
        f"the base layer's weights are trainable ({trainable}): freeze them with requires_grad_(False)",
    )
    expect(
        layer.A.requires_grad and layer.B.requires_grad, "A and B must be trainable nn.Parameters"
    )
    x = torch.randn(3, 6)
    expect(
        torch.allclose(layer(x), base(x), atol=1e-6),
        "at initialisation the layer must equal the base layer",
    )
    with torch.no_grad():
        layer.B.normal_()
    want = base(x) + 4.0 * (x @ layer.A.T @ layer.B.T)
    expect_close(
        layer(x),
        want,
        1e-4,
        "the output once B is non-zero",
        hints=[
            (base(x) + x @ layer.A.T @ layer.B.T, "the update is not scaled by alpha / r"),
            (base(x) + 8.0 * (x @ layer.A.T @ layer.B.T), "scaled by alpha instead of alpha / r"),
        ],
    )
    expect(torch.equal(base.weight, w_before), "the forward pass must not modify the base weight")


@check("04.4 merge")
def check_merge(student_fn) -> None:
    """The student's merge(W, A, B, alpha, r) = W + (alpha/r) B A, and the outputs agree."""
    x, w, a, b, alpha, r = _case()
    try:
        out = student_fn(w.clone(), a, b, alpha, r)
    except RuntimeError as error:
        raise CheckFailed(
            f"a shape mismatch ({error}): W is [out, in] = [5, 6], so the update must be "
            "B @ A ([out, r] @ [r, in]); A.T @ B.T or A @ B have other shapes"
        ) from None
    want = w + alpha / r * (b @ a)
    expect(
        tuple(out.shape) == tuple(w.shape),
        f"the merged weight must have W's shape {tuple(w.shape)}, got "
        f"{tuple(out.shape)}: the update is B @ A ([out, r] @ [r, in])",
    )
    expect_close(
        out,
        want,
        1e-4,
        "the merged weight",
        hints=[
            (w + b @ a, "the update is not scaled by alpha / r"),
            (w + alpha * (b @ a), "scaled by alpha instead of alpha / r"),
            (alpha / r * (b @ a), "the merged weight must keep W: W + (alpha/r) B A"),
        ],
    )
    expect(
        torch.allclose(x @ out.T, x @ w.T + alpha / r * (x @ a.T @ b.T), atol=1e-4),
        "merged and unmerged outputs differ",
    )


@check("04.5 energy in the top singular values")
def check_energy(student_fn) -> None:
    """The student's top_energy(M, k): share of ||M||_F^2 in the top-k singular values."""
    g = torch.Generator().manual_seed(2)
    m = torch.randn(12, 9, generator=g) @ torch.diag(torch.linspace(3, 0.1, 9))
    s = torch.linalg.svdvals(m)
    want = float((s[:3] ** 2).sum() / (s**2).sum())
    expect_close(
        student_fn(m, 3),
        want,
        1e-5,
        "top-3 energy share",
        hints={
            float(
                s[:3].sum() / s.sum()
            ): "square the singular values: energy is sigma^2 (||M||_F^2 = sum sigma_i^2)",
            float((s[:3] ** 2).sum() / (m**2).sum() ** 0.5): "divide by ||M||_F^2, not ||M||_F",
            float(
                (s[-3:] ** 2).sum() / (s**2).sum()
            ): "take the LARGEST k singular values (svdvals sorts them descending)",
        },
    )
    expect_close(student_fn(m, 9), 1.0, 1e-5, "the share for k = rank (all singular values)")
