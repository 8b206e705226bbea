"""Checks for the chapter 04 exercises (LoRA, the math).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.course.checks import (
    CheckFailed,
    call_unchanged,
    check,
    expect,
    expect_close,
    expect_equal,
)


@check("04.1 LoRA parameter count")
def check_param_count(student_fn) -> None:
    """The student's lora_param_count(shapes, r): shapes is a list of (d_out, d_in)."""
    # d_out and d_in sum differently, so 'd_in twice' and 'd_out twice' give their own numbers
    shapes, r = [(192, 192), (512, 192), (192, 512), (96, 192)], 4
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


def _embedding_case():
    """A [V=7, d=5] embedding matrix and LoRA factors A [r=2, V], B [d, r]: V != d shows transposes."""
    g = torch.Generator().manual_seed(4)
    e, a, b = (torch.randn(*shape, generator=g) for shape in [(7, 5), (2, 7), (5, 2)])
    return e, a, b, 8.0, 2


def _lookup(layer: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """layer(ids), with the typical indexing mistake explained."""
    try:
        return layer(ids)
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except (IndexError, RuntimeError) as error:
        raise CheckFailed(
            f"the forward pass failed ({error}): lora_A is [r, num_embeddings], so the r numbers "
            "of token i are COLUMN i of lora_A: look them up in lora_A.T (lora_A.T[ids], or "
            "F.embedding(ids, lora_A.T)), then multiply by lora_B.T"
        ) from None


@check("04.2 LoRA on an embedding")
def check_embedding_lora(student_cls) -> None:
    """The student's LoRAEmbedding(base, r, alpha): lora_A [r, V], lora_B [d, r], frozen base, forward."""
    torch.manual_seed(0)
    base = nn.Embedding(10, 6)
    w_before = base.weight.detach().clone()
    layer = student_cls(base, 2, 8.0)
    expect(isinstance(layer, nn.Module), "LoRAEmbedding must be a torch.nn.Module subclass")
    a, b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    expect(
        isinstance(a, nn.Parameter) and isinstance(b, nn.Parameter),
        "name the two factors .lora_A and .lora_B, both nn.Parameter",
    )
    expect(
        tuple(a.shape) != (10, 2) or tuple(b.shape) != (2, 6),
        "lora_A and lora_B are transposed: lora_A is [r, num_embeddings] = [2, 10] and lora_B is "
        "[embedding_dim, r] = [6, 2] (the token index plays the role of a linear layer's input)",
    )
    expect_equal(tuple(a.shape), (2, 10), "lora_A's shape [r, num_embeddings]")
    expect_equal(tuple(b.shape), (6, 2), "lora_B's shape [embedding_dim, r]")
    expect(
        not any(p.requires_grad for p in base.parameters()),
        "the embedding matrix is trainable: freeze the base layer with requires_grad_(False)",
    )
    expect(a.requires_grad and b.requires_grad, "lora_A and lora_B must be trainable")
    zero_a, zero_b = bool(torch.all(a == 0)), bool(torch.all(b == 0))
    expect(
        not (zero_a and zero_b),
        "both factors start at zero: then both gradients are zero (dL/dA is proportional to B, "
        "dL/dB to A) and nothing ever trains; make one of them random",
    )
    expect(
        zero_a or zero_b,
        "neither factor starts at zero, so the adapted embedding does not start at the base "
        "embedding: initialise one of them to zero (peft: lora_A = 0, lora_B random)",
    )
    ids = torch.tensor([[1, 4, 4, 9], [0, 2, 7, 3]])
    expect_close(_lookup(layer, ids), base(ids), 1e-6, "the output at initialisation (the base)")
    with torch.no_grad():
        a.normal_()
        b.normal_()
    out = _lookup(layer, ids)
    rows = a.T[ids]  # [batch, seq, r]
    want = base(ids) + 4.0 * rows @ b.T
    expect_close(
        out,
        want,
        1e-4,
        "the output once lora_A and lora_B are non-zero",
        hints=[
            (base(ids) + rows @ b.T, "the update is not scaled by alpha / r"),
            (base(ids) + 8.0 * rows @ b.T, "scaled by alpha instead of alpha / r"),
            (4.0 * rows @ b.T, "the frozen embedding base(ids) is missing"),
        ],
    )
    expect(torch.equal(base.weight, w_before), "the forward pass must not modify the embedding")


@check("04.3 merge an embedding adapter")
def check_merge_embedding(student_fn) -> None:
    """The student's merge_embedding(E, A, B, alpha, r) = E + (alpha/r) (B A)^T, shape [V, d]."""
    e, a, b, alpha, r = _embedding_case()
    try:
        out = call_unchanged(student_fn, e.clone(), a, b, alpha, r, names=("E", "A", "B"))
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except RuntimeError as error:
        raise CheckFailed(
            f"a shape mismatch ({error}): E is [num_embeddings, embedding_dim] = [7, 5], one row "
            "per token, but B @ A is [embedding_dim, num_embeddings] = [5, 7]: transpose it"
        ) from None
    expect(
        tuple(out.shape) == (7, 5),
        f"the merged matrix must have E's shape (7, 5), got {tuple(out.shape)}: add (B @ A).T",
    )
    want = e + alpha / r * (b @ a).T
    expect_close(
        out,
        want,
        1e-4,
        "the merged embedding matrix",
        hints=[
            (e + (b @ a).T, "the update is not scaled by alpha / r"),
            (e + alpha * (b @ a).T, "scaled by alpha instead of alpha / r"),
            (alpha / r * (b @ a).T, "the merged matrix must keep E: E + (alpha/r) (B A)^T"),
        ],
    )
    ids = torch.tensor([0, 3, 6, 3])
    unmerged = e[ids] + alpha / r * a.T[ids] @ b.T
    expect(
        torch.allclose(out[ids], unmerged, atol=1e-4),
        "looking tokens up in the merged matrix must give the unmerged layer's output",
    )


def _dora_case():
    """W0 [out=5, in=7] (not square, so row and column norms differ), A [2, 7], B [5, 2]."""
    g = torch.Generator().manual_seed(11)
    w0, a = torch.randn(5, 7, generator=g), torch.randn(2, 7, generator=g)
    return w0, a, torch.randn(5, 2, generator=g), 1.5


@check("04.4 DoRA: magnitude and direction")
def check_dora(magnitude_fn, weight_fn) -> None:
    """dora_magnitude(W0) = row norms; dora_weight(W0, A, B, m, s) = m · V / ||V||_row, V = W0 + sBA."""
    w0, a, b, s = _dora_case()
    m0 = magnitude_fn(w0.clone())
    expect(hasattr(m0, "shape"), f"dora_magnitude must return a tensor, got {type(m0).__name__}")
    expect(
        m0.numel() != 1,
        "one number for the whole matrix is its Frobenius norm; DoRA keeps one magnitude per "
        "output unit: the norm of each ROW of the [out, in] weight, W0.norm(dim=1)",
    )
    expect(
        m0.numel() != 7,
        "7 entries = one per input: that is the norm over dim 0 (the columns of the [out, in] "
        "weight); DoRA's magnitude has one entry per output unit, W0.norm(dim=1)",
    )
    expect_equal(m0.numel(), 5, "the number of magnitudes (one per output unit, W0 is [5, 7])")
    expect_close(
        m0.reshape(-1),
        w0.norm(dim=1),
        1e-5,
        "the initial magnitude",
        hints=[((w0**2).sum(dim=1), "take the square root: the norm, not the sum of squares")],
    )
    start = _dora_call(weight_fn, w0.clone(), a, torch.zeros_like(b), w0.norm(dim=1), s)
    expect_close(
        start,
        w0,
        1e-5,
        "the weight at initialisation (B = 0, m = ||W0|| per row), which must be W0 itself",
        hints=_dora_hints(w0, a, torch.zeros_like(b), w0.norm(dim=1), s),
    )
    m = w0.norm(dim=1) * torch.linspace(0.5, 1.5, 5)  # as if trained
    v = w0 + s * b @ a
    expect_close(
        _dora_call(weight_fn, w0.clone(), a, b, m, s),
        (m / v.norm(dim=1))[:, None] * v,
        1e-4,
        "the DoRA weight",
        hints=_dora_hints(w0, a, b, m, s),
    )


def _dora_call(weight_fn, w0, a, b, m, s) -> torch.Tensor:
    """weight_fn(...), with the typical broadcasting mistake explained."""
    try:
        return call_unchanged(weight_fn, w0, a, b, m, s, names=("W0", "A", "B", "m"))
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except RuntimeError as error:
        raise CheckFailed(
            f"a shape mismatch ({error}): m has one entry per output unit, i.e. per ROW of the "
            "[5, 7] weight; scale the rows with m[:, None] (a [5] vector broadcasts along rows "
            "of length 7 otherwise)"
        ) from None


def _dora_hints(w0, a, b, m, s) -> list:
    """Typical wrong DoRA weights, with their diagnosis."""
    v = w0 + s * b @ a
    hints = [
        (
            m[:, None] * v / v.norm(dim=0, keepdim=True),
            "normalised over dim 0 (columns of [out, in]); normalise each ROW, v.norm(dim=1)",
        ),
        (m[:, None] * v / v.norm(), "normalised by the Frobenius norm; normalise each row"),
        (v / v.norm(dim=1, keepdim=True), "the magnitude m is missing: multiply by m"),
        (m[:, None] * v, "the direction is not normalised: divide each row by its norm"),
    ]
    if bool(b.abs().sum() > 0):  # with B = 0 these equal the right answer
        lora = w0 + b @ a
        hints += [
            (
                (m / w0.norm(dim=1))[:, None] * v,
                "the norm must be taken of W0 + s·B A, the updated weight, not of W0 alone",
            ),
            ((m / lora.norm(dim=1))[:, None] * lora, "the LoRA update is not scaled by s"),
        ]
    return hints


@check("04.5 the best rank-r factors")
def check_svd_factors(student_fn) -> None:
    """The student's svd_factors(M, r) -> (B [out, r], A [r, in]) with B @ A = the truncated SVD."""
    g = torch.Generator().manual_seed(5)
    u, _ = torch.linalg.qr(torch.randn(9, 9, generator=g))
    v, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    s = torch.tensor([5.0, 4.0, 3.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.1])
    m, r = u @ torch.diag(s) @ v[:, :9].T, 3  # [9, 12] with known singular values
    result = student_fn(m.clone(), r)
    expect(
        isinstance(result, (tuple, list)) and len(result) == 2,
        "return two tensors, (B, A), with B @ A the rank-r approximation",
    )
    b, a = result
    expect(
        tuple(b.shape) == (9, 3) and tuple(a.shape) == (3, 12),
        f"B must be [out, r] = (9, 3) and A [r, in] = (3, 12), got {tuple(b.shape)} and "
        f"{tuple(a.shape)}; torch.linalg.svd returns Vh (V transposed): A comes from its "
        "first r ROWS",
    )
    big_u, big_s, big_vh = torch.linalg.svd(m, full_matrices=False)
    want = big_u[:, :r] @ torch.diag(big_s[:r]) @ big_vh[:r]
    expect_close(
        b @ a,
        want,
        1e-4,
        "B @ A",
        hints=[
            (
                big_u[:, :r] @ big_vh[:r],
                "the singular values are missing: B A = U_r diag(S_r) Vh_r",
            ),
            (
                big_u[:, -r:] @ torch.diag(big_s[-r:]) @ big_vh[-r:],
                "those are the SMALLEST r directions; svd sorts the singular values largest first",
            ),
            (
                big_u[:, :r] @ torch.diag(big_s[:r] ** 2) @ big_vh[:r],
                "the singular values are applied twice: put sqrt(S_r) in B and in A, or S_r in one",
            ),
            (m, "B @ A is M itself: keep only the top r singular directions"),
        ],
    )
