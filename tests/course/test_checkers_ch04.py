"""The chapter 04 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from course_lib.course.checkers import ch04
from course_lib.course.checks import CheckFailed


def fails_with(check, *answers, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(*answers)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_param_count():
    assert ch04.check_param_count(lambda shapes, r: sum(r * (o + i) for o, i in shapes))
    fails_with(
        ch04.check_param_count,
        lambda shapes, r: sum(r * o * i for o, i in shapes),
        words="dense update",
    )


class Embedding(nn.Module):
    """LoRA on an nn.Embedding, peft's way (A = 0, B random), with switches for typical mistakes."""

    def __init__(self, base, r, alpha, zero="A", freeze=True, scaled=True, transposed=False):
        super().__init__()
        self.base, self.scaling = base, (alpha / r if scaled else 1.0)
        base.requires_grad_(not freeze)
        n, d = base.num_embeddings, base.embedding_dim
        a_shape, b_shape = ((n, r), (r, d)) if transposed else ((r, n), (d, r))
        self.lora_A = nn.Parameter(torch.zeros(a_shape) if "A" in zero else torch.randn(a_shape))
        self.lora_B = nn.Parameter(torch.zeros(b_shape) if "B" in zero else torch.randn(b_shape))
        self.indexed_rows_of_a = False

    def forward(self, ids):
        rows = self.lora_A[ids] if self.indexed_rows_of_a else self.lora_A.T[ids]
        return self.base(ids) + self.scaling * rows @ self.lora_B.T


def rows_of_a(base, r, alpha):
    layer = Embedding(base, r, alpha)
    layer.indexed_rows_of_a = True  # lora_A[ids]: A is [r, V], so its rows are not tokens
    return layer


def test_embedding_lora():
    assert ch04.check_embedding_lora(Embedding)
    assert ch04.check_embedding_lora(lambda b, r, a: Embedding(b, r, a, zero="B"))
    fails_with(
        ch04.check_embedding_lora,
        lambda b, r, a: Embedding(b, r, a, zero="AB"),
        words="nothing ever trains",
    )
    fails_with(
        ch04.check_embedding_lora,
        lambda b, r, a: Embedding(b, r, a, zero=""),
        words="does not start at the base",
    )
    fails_with(
        ch04.check_embedding_lora,
        lambda b, r, a: Embedding(b, r, a, freeze=False),
        words="freeze the base layer",
    )
    fails_with(
        ch04.check_embedding_lora,
        lambda b, r, a: Embedding(b, r, a, scaled=False),
        words="not scaled by alpha / r",
    )
    fails_with(
        ch04.check_embedding_lora,
        lambda b, r, a: Embedding(b, r, a, transposed=True),
        words="transposed",
    )
    fails_with(ch04.check_embedding_lora, rows_of_a, words="COLUMN i of lora_A")


class WithEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)

    def forward(self, input_ids):
        return self.emb(input_ids)


def test_the_embedding_reference_is_peft():
    """The checker's formula base(ids) + (alpha/r) A^T[ids] B^T is what peft computes."""
    torch.manual_seed(0)
    theirs = get_peft_model(
        WithEmbedding(), LoraConfig(r=2, lora_alpha=8, target_modules=["emb"])
    ).base_model.model.emb
    with torch.no_grad():
        theirs.lora_embedding_A["default"].normal_()
        theirs.lora_embedding_B["default"].normal_()
    ours = Embedding(theirs.base_layer, 2, 8)
    with torch.no_grad():
        ours.lora_A.copy_(theirs.lora_embedding_A["default"])
        ours.lora_B.copy_(theirs.lora_embedding_B["default"])
    ids = torch.tensor([[1, 4, 9], [0, 2, 2]])
    assert torch.allclose(ours(ids), theirs(ids), atol=1e-5)


def test_merge_embedding():
    def merge(e, a, b, alpha, r):
        return e + alpha / r * (b @ a).T

    assert ch04.check_merge_embedding(merge)
    fails_with(
        ch04.check_merge_embedding,
        lambda e, a, b, alpha, r: e + alpha / r * (b @ a),
        words="transpose it",
    )
    fails_with(
        ch04.check_merge_embedding,
        lambda e, a, b, alpha, r: e + (b @ a).T,
        words="not scaled",
    )
    fails_with(
        ch04.check_merge_embedding,
        lambda e, a, b, alpha, r: alpha / r * (b @ a).T,
        words="keep E",
    )


def magnitude(w0):
    return w0.norm(dim=1)


def dora(w0, a, b, m, s):
    v = w0 + s * b @ a
    return (m / v.norm(dim=1))[:, None] * v


def test_dora():
    assert ch04.check_dora(magnitude, dora)
    fails_with(ch04.check_dora, lambda w0: w0.norm(dim=0), dora, words="norm over dim 0")
    fails_with(ch04.check_dora, lambda w0: w0.norm(), dora, words="Frobenius")
    fails_with(
        ch04.check_dora,
        magnitude,
        lambda w0, a, b, m, s: (m / w0.norm(dim=1))[:, None] * (w0 + s * b @ a),
        words="not of W0 alone",
    )
    fails_with(
        ch04.check_dora,
        magnitude,
        lambda w0, a, b, m, s: m[:, None] * (w0 + s * b @ a) / (w0 + s * b @ a).norm(),
        words="Frobenius",
    )
    fails_with(
        ch04.check_dora,
        magnitude,
        lambda w0, a, b, m, s: (w0 + s * b @ a) / (w0 + s * b @ a).norm(dim=1, keepdim=True),
        words="magnitude m is missing",
    )


class WithLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(7, 5, bias=False)

    def forward(self, x):
        return self.lin(x)


def test_the_dora_reference_is_peft():
    """dora(W0, A, B, m, s) equals the weight peft's DoRA layer merges into the base layer."""
    torch.manual_seed(0)
    model = get_peft_model(
        WithLinear(), LoraConfig(r=2, lora_alpha=3, target_modules=["lin"], use_dora=True)
    )
    layer = model.base_model.model.lin
    w0 = layer.base_layer.weight.detach().clone()
    assert torch.allclose(layer.lora_magnitude_vector["default"].weight, magnitude(w0))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        layer.lora_magnitude_vector["default"].weight.mul_(torch.linspace(0.5, 1.5, 5))
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    m = layer.lora_magnitude_vector["default"].weight.detach().clone()
    layer.merge()
    assert torch.allclose(layer.base_layer.weight, dora(w0, a, b, m, 1.5), atol=1e-5)


def pissa(m, r):
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u[:, :r] * s[:r].sqrt(), s[:r].sqrt()[:, None] * vh[:r]


def test_svd_factors():
    assert ch04.check_svd_factors(pissa)

    def parts(m, r):
        return torch.linalg.svd(m, full_matrices=False)

    def no_s(m, r):
        u, s, vh = parts(m, r)
        return u[:, :r], vh[:r]

    def smallest(m, r):
        u, s, vh = parts(m, r)
        return u[:, -r:] * s[-r:], vh[-r:]

    def columns_of_vh(m, r):
        u, s, vh = parts(m, r)
        return u[:, :r] * s[:r], vh[:, :r].T

    fails_with(ch04.check_svd_factors, no_s, words="singular values are missing")
    fails_with(ch04.check_svd_factors, smallest, words="SMALLEST")
    fails_with(ch04.check_svd_factors, columns_of_vh, words="first r ROWS")


def test_dora_broadcasting_mistake_is_explained():
    fails_with(
        ch04.check_dora,
        magnitude,
        lambda w0, a, b, m, s: m * (w0 + s * b @ a) / (w0 + s * b @ a).norm(dim=1, keepdim=True),
        words="m[:, None]",
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_lora_embedding(mode: str):
    import torch
    from torch import nn

    class Student(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base, self.scaling = base, alpha / r
            if mode != "base_trainable":
                base.requires_grad_(False)
            n, d = base.num_embeddings, base.embedding_dim
            make = (lambda t: t) if mode == "plain_tensors" else nn.Parameter
            self.lora_A = make(torch.zeros(r, n))
            self.lora_B = make(torch.randn(d, r))

        def forward(self, ids):
            rows = self.lora_A.T[ids]
            scale = 1.0 if mode == "unscaled" else self.scaling
            return self.base(ids) + scale * rows @ self.lora_B.T

    return Student


def _h8_merge(mode: str):
    def fn(E, A, B, alpha, r):
        if mode == "in_place":
            E += (alpha / r) * (B @ A).T
            return E
        if mode == "alpha":
            return E + alpha * (B @ A).T
        return E + (alpha / r) * (A.T @ B.T).T.T if mode == "ok" else E + (B @ A)  # no transpose

    return fn


def _h8_dora_w(mode: str):
    def fn(W0, A, B, m, s):
        V = W0 + s * B @ A
        if mode == "col_norm":
            return m[:, None] * V / V.norm(dim=0, keepdim=True)
        if mode == "w0_norm":
            return (m / W0.norm(dim=1))[:, None] * V
        if mode == "in_place":
            W0 += s * B @ A  # updates the frozen weight itself
            return (m / W0.norm(dim=1))[:, None] * W0
        return m[:, None] * V  # not normalised

    return fn


def _h8_svd(mode: str):
    import torch

    def fn(M, r):
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        if mode == "no_s":
            return U[:, :r], Vh[:r]
        if mode == "smallest":
            return U[:, -r:] * S[-r:], Vh[-r:]
        return U[:, :r] * S[:r], Vh[:, :r].T  # columns of Vh

    return fn


WRONG_ANSWERS = [
    Wrong(
        "dense rank-r size",
        ch04.check_param_count,
        [lambda shapes, r: sum(r * o * i for o, i in shapes)],
        ("dense",),
    ),
    Wrong(
        "d_in twice",
        ch04.check_param_count,
        [lambda shapes, r: sum(2 * r * i for o, i in shapes)],
        ("both dimensions",),
    ),
    Wrong(
        "first layer only",
        ch04.check_param_count,
        [lambda shapes, r: r * sum(shapes[0])],
        ("every layer",),
    ),
    Wrong(
        "plain tensors, not nn.Parameter",
        ch04.check_embedding_lora,
        [_h8_lora_embedding("plain_tensors")],
        ("nn.Parameter",),
    ),
    Wrong(
        "base left trainable",
        ch04.check_embedding_lora,
        [_h8_lora_embedding("base_trainable")],
        ("freeze",),
    ),
    Wrong(
        "update not scaled",
        ch04.check_embedding_lora,
        [_h8_lora_embedding("unscaled")],
        ("alpha / r",),
    ),
    Wrong(
        "merged into E in place", ch04.check_merge_embedding, [_h8_merge("in_place")], ("in place",)
    ),
    Wrong(
        "scaled by alpha",
        ch04.check_merge_embedding,
        [_h8_merge("alpha")],
        ("alpha instead of alpha / r",),
    ),
    Wrong(
        "B @ A not transposed",
        ch04.check_merge_embedding,
        [_h8_merge("no_transpose")],
        ("transpose",),
    ),
    Wrong(
        "magnitude over columns",
        ch04.check_dora,
        [lambda W0: W0.norm(dim=0), _h8_dora_w("ok")],
        ("dim 0",),
    ),
    Wrong(
        "sum of squares",
        ch04.check_dora,
        [lambda W0: (W0**2).sum(1), _h8_dora_w("ok")],
        ("square root",),
    ),
    Wrong(
        "normalised over columns",
        ch04.check_dora,
        [lambda W0: W0.norm(dim=1), _h8_dora_w("col_norm")],
        ("dim 0",),
    ),
    Wrong(
        "norm of W0, not of W0 + sBA",
        ch04.check_dora,
        [lambda W0: W0.norm(dim=1), _h8_dora_w("w0_norm")],
        ("updated weight",),
    ),
    Wrong(
        "W0 updated in place",
        ch04.check_dora,
        [lambda W0: W0.norm(dim=1), _h8_dora_w("in_place")],
        ("in place",),
    ),
    Wrong(
        "singular values dropped",
        ch04.check_svd_factors,
        [_h8_svd("no_s")],
        ("singular values are missing",),
    ),
    Wrong("smallest directions", ch04.check_svd_factors, [_h8_svd("smallest")], ("SMALLEST",)),
    Wrong("columns of Vh", ch04.check_svd_factors, [_h8_svd("vh_cols")], ("ROWS", "rows of Vh")),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
