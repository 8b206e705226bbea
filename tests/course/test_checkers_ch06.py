"""The chapter 06 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch06
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_param_count():
    assert ch06.check_param_count(lambda d, m, n: n * (2 * d * m + d + m))
    fails_with(ch06.check_param_count, lambda d, m, n: n * 2 * d * m, "biases are missing")
    fails_with(
        ch06.check_param_count, lambda d, m, n: n * (2 * d * m + m), "up-projection's d biases"
    )
    fails_with(ch06.check_param_count, lambda d, m, n: n * (d * m + d + m), "TWO projections")
    fails_with(ch06.check_param_count, lambda d, m, n: 2 * d * m + d + m, "number of adapters")


class IA3(torch.nn.Module):
    """IA3 on a linear layer, correct by default, with switches for the typical mistakes."""

    def __init__(self, base, feedforward, init=1.0, freeze=True, swap=False, bias=True, add=False):
        super().__init__()
        self.base, self.feedforward = base.requires_grad_(not freeze), feedforward
        self.bias, self.add = bias, add
        scales_input = feedforward != swap
        size = base.in_features if scales_input else base.out_features
        self.ia3_l = torch.nn.Parameter(torch.full((size,), init))

    def forward(self, x):
        if self.feedforward:
            x = x * self.ia3_l
            return self.base(x) if self.bias else x @ self.base.weight.T
        if self.add:
            return self.base(x) + self.ia3_l
        if not self.bias:
            return (x @ self.base.weight.T) * self.ia3_l + self.base.bias
        return self.base(x) * self.ia3_l


def test_ia3_module():
    assert ch06.check_ia3_module(IA3)
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, init=0.0), "starts at zero")
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, init=0.5), "start at ones")
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, freeze=False), "freeze it")
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, swap=True), "OUTPUT")
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, bias=False), "bias included")
    fails_with(ch06.check_ia3_module, lambda b, ff: IA3(b, ff, add=True), "does not add")


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.k_proj, self.down_proj = torch.nn.Linear(6, 4), torch.nn.Linear(4, 6)

    def forward(self, x):
        return self.down_proj(self.k_proj(x))


def test_the_ia3_reference_is_peft():
    """IA3 as the checker defines it (output scaling; input scaling for feed-forward) is peft's."""
    from peft import IA3Config, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        Block(),
        IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"]),
    )
    inner = model.base_model.model
    ours = {
        name: IA3(getattr(inner, name).base_layer, name == "down_proj")
        for name in ["k_proj", "down_proj"]
    }
    with torch.no_grad():
        for name, layer in ours.items():
            theirs = getattr(inner, name).ia3_l["default"]
            theirs.normal_()
            layer.ia3_l.copy_(theirs.flatten())
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.allclose(model(x), ours["down_proj"](ours["k_proj"](x)), atol=1e-5)


def houlsby(x, attn, mlp, n1, n2, a1, a2):
    h = x + a1(attn(n1(x)))
    return h + a2(mlp(n2(h)))


def test_houlsby_block():
    assert ch06.check_houlsby_block(houlsby)

    def before(x, attn, mlp, n1, n2, a1, a2):
        h = x + attn(a1(n1(x)))
        return h + mlp(a2(n2(h)))

    def after_residual(x, attn, mlp, n1, n2, a1, a2):
        h = a1(x + attn(n1(x)))
        return a2(h + mlp(n2(h)))

    def pfeiffer(x, attn, mlp, n1, n2, a1, a2):
        h = x + attn(n1(x))
        return h + a2(mlp(n2(h)))

    def no_residual(x, attn, mlp, n1, n2, a1, a2):
        h = a1(attn(n1(x)))
        return a2(mlp(n2(h)))

    fails_with(ch06.check_houlsby_block, before, "BEFORE the sublayers")
    fails_with(ch06.check_houlsby_block, after_residual, "after the residual addition")
    fails_with(ch06.check_houlsby_block, pfeiffer, "adapter after attention is missing")
    fails_with(
        ch06.check_houlsby_block, no_residual, "residual connections of the block are missing"
    )


def test_parallel():
    assert ch06.check_parallel(
        lambda h, mlp, norm, down, up: h + mlp(norm(h)) + up(torch.relu(down(norm(h))))
    )
    fails_with(
        ch06.check_parallel,
        lambda h, mlp, norm, down, up: h + mlp(norm(h)) + up(torch.relu(down(mlp(norm(h))))),
        "sequential (Pfeiffer)",
    )
    fails_with(
        ch06.check_parallel,
        lambda h, mlp, norm, down, up: h + mlp(norm(h)) + up(torch.relu(down(h))),
        "before the norm",
    )
    fails_with(
        ch06.check_parallel,
        lambda h, mlp, norm, down, up: mlp(norm(h)) + up(torch.relu(down(norm(h)))),
        "residual h is missing",
    )


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_ia3(mode: str):
    import torch

    class Student(torch.nn.Module):
        def __init__(self, base, feedforward):
            super().__init__()
            self.base, self.ff = base.requires_grad_(False), feedforward
            n = base.in_features if feedforward else base.out_features
            if mode == "swapped":
                n = base.out_features if feedforward else base.in_features
            vec = torch.zeros(n) if mode == "zeros" else torch.ones(n)
            self.ia3_l = vec if mode == "plain_tensor" else torch.nn.Parameter(vec)

        def forward(self, x):
            if mode == "no_bias_scaled":
                return x @ self.base.weight.T * self.ia3_l + self.base.bias
            return self.base(x * self.ia3_l) if self.ff else self.base(x) * self.ia3_l

    return Student


WRONG_ANSWERS = [
    Wrong("biases missing", ch06.check_param_count, [lambda d, m, n: n * 2 * d * m], ("biases",)),
    Wrong(
        "one projection",
        ch06.check_param_count,
        [lambda d, m, n: n * (d * m + d + m)],
        ("TWO projections",),
    ),
    Wrong(
        "one adapter only",
        ch06.check_param_count,
        [lambda d, m, n: 2 * d * m + d + m],
        ("number of adapters",),
    ),
    Wrong(
        "down bias of size d",
        ch06.check_param_count,
        [lambda d, m, n: n * (2 * d * m + 2 * d)],
        ("m entries",),
    ),
    Wrong(
        "plain tensor, not nn.Parameter",
        ch06.check_ia3_module,
        [_h8_ia3("plain_tensor")],
        ("nn.Parameter",),
    ),
    Wrong("vector starts at zero", ch06.check_ia3_module, [_h8_ia3("zeros")], ("ones",)),
    Wrong(
        "input and output scaling swapped",
        ch06.check_ia3_module,
        [_h8_ia3("swapped")],
        ("OUTPUT", "INPUT"),
    ),
    Wrong(
        "bias not scaled", ch06.check_ia3_module, [_h8_ia3("no_bias_scaled")], ("bias included",)
    ),
    Wrong(
        "adapters before the sublayers",
        ch06.check_houlsby_block,
        [lambda x, at, ml, n1, n2, a1, a2: (h := x + at(a1(n1(x)))) + ml(a2(n2(h)))],
        ("BEFORE",),
    ),
    Wrong(
        "one adapter only (Pfeiffer)",
        ch06.check_houlsby_block,
        [lambda x, at, ml, n1, n2, a1, a2: (h := x + at(n1(x))) + a2(ml(n2(h)))],
        ("after attention",),
    ),
    Wrong(
        "adapter after the residual",
        ch06.check_houlsby_block,
        [lambda x, at, ml, n1, n2, a1, a2: a2((h := a1(x + at(n1(x)))) + ml(n2(h)))],
        ("residual addition",),
    ),
    Wrong(
        "adapter reads the MLP output",
        ch06.check_parallel,
        [lambda h, mlp, norm, down, up: h + (y := mlp(norm(h))) + up(torch.relu(down(y)))],
        ("sequential",),
    ),
    Wrong(
        "adapter reads h before the norm",
        ch06.check_parallel,
        [lambda h, mlp, norm, down, up: h + mlp(norm(h)) + up(torch.relu(down(h)))],
        ("before the norm",),
    ),
    Wrong(
        "no relu in the branch",
        ch06.check_parallel,
        [lambda h, mlp, norm, down, up: h + mlp(norm(h)) + up(down(norm(h)))],
        ("relu", "nonlinearity"),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
