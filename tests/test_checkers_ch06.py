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


class GoodAdapter(torch.nn.Module):
    """The reference, with switches for each typical mistake."""

    def __init__(
        self, d, m, zero_up=True, residual=True, act="inside", zero_down=False, swap=False
    ):
        super().__init__()
        self.down = torch.nn.Linear(m, d) if swap else torch.nn.Linear(d, m)
        self.up = torch.nn.Linear(d, m) if swap else torch.nn.Linear(m, d)
        self.residual, self.act = residual, act
        if zero_up:
            torch.nn.init.zeros_(self.up.weight)
            torch.nn.init.zeros_(self.up.bias)
        if zero_down:
            torch.nn.init.zeros_(self.down.weight)

    def forward(self, h):
        if self.act == "inside":
            branch = self.up(torch.relu(self.down(h)))
        elif self.act == "none":
            branch = self.up(self.down(h))
        else:
            branch = torch.relu(self.up(self.down(h)))
        return h + branch if self.residual else branch


def test_adapter_module():
    assert ch06.check_adapter_module(GoodAdapter)
    fails_with(
        ch06.check_adapter_module,
        lambda d, m: GoodAdapter(d, m, residual=False),
        "residual is missing",
    )
    fails_with(
        ch06.check_adapter_module,
        lambda d, m: GoodAdapter(d, m, zero_up=False),
        "not initialised near zero",
    )
    fails_with(
        ch06.check_adapter_module,
        lambda d, m: GoodAdapter(d, m, zero_down=True),
        "nothing ever trains",
    )
    fails_with(
        ch06.check_adapter_module,
        lambda d, m: GoodAdapter(d, m, act="none"),
        "nonlinearity is missing",
    )
    fails_with(
        ch06.check_adapter_module,
        lambda d, m: GoodAdapter(d, m, act="after"),
        "after the up-projection",
    )
    fails_with(ch06.check_adapter_module, lambda d, m: GoodAdapter(d, m, swap=True), "swapped")


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
