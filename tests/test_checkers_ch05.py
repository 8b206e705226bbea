"""The chapter 05 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch05
from course_lib.course.checks import CheckFailed
from course_lib.quantization import (
    absmax_quantize,
    bits_per_parameter,
    double_quantize,
    nf4_values,
    pack_4bit,
    quantize_blockwise,
)


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_absmax_check():
    assert ch05.check_absmax(lambda x: absmax_quantize(x, 8))

    def floored(x):
        scale = x.abs().max() / 127
        return torch.floor(x / scale).to(torch.int8), scale

    fails_with(ch05.check_absmax, floored, "floored")
    fails_with(
        ch05.check_absmax,
        lambda x: (torch.round(x / (x.abs().max() / 128)).to(torch.int8), x.abs().max() / 128),
        "127",
    )
    fails_with(
        ch05.check_absmax,
        lambda x: (torch.round(x / (x.max() / 127)).clamp(-127, 127).to(torch.int8), x.max() / 127),
        "max(|x|)",
    )


def test_nf4_check():
    assert ch05.check_nf4(nf4_values)
    raw = lambda: nf4_values() * 1.8481
    fails_with(ch05.check_nf4, raw, "not normalised")
    fails_with(ch05.check_nf4, lambda: (-nf4_values()).sort().values, "swapped")


def test_blockwise_check():
    assert ch05.check_blockwise(quantize_blockwise)

    def one_absmax(x, values, blocksize):
        codes, _ = quantize_blockwise(x / x.abs().max(), values, x.numel())
        return codes, x.abs().max().reshape(1)

    fails_with(ch05.check_blockwise, one_absmax, "whole tensor")

    def floor_codes(x, values, blocksize):
        codes, absmax = quantize_blockwise(x, values, blocksize)
        scaled = (x.reshape(-1, blocksize) / absmax[:, None]).reshape(-1, 1)
        order = torch.argsort(values)
        below = (values[order][None] <= scaled + 1e-7).sum(1).clamp(min=1) - 1
        return order[below].to(torch.uint8).reshape(x.shape), absmax

    fails_with(ch05.check_blockwise, floor_codes, "round DOWN")

    def sorted_index(x, values, blocksize):
        codes, absmax = quantize_blockwise(x, values, blocksize)
        sv = values.sort().values
        scaled = (x.reshape(-1, blocksize) / absmax[:, None]).reshape(-1, 1)
        return torch.argmin((scaled - sv).abs(), 1).to(torch.uint8).reshape(x.shape), absmax

    fails_with(ch05.check_blockwise, sorted_index, "SORTED")


def test_pack_check():
    assert ch05.check_pack(pack_4bit)
    fails_with(ch05.check_pack, lambda c: (c[1::2] << 4) | c[::2], "swapped")


def test_bits_check():
    assert ch05.check_bits(lambda b, bs, dq, bs2: bits_per_parameter(b, bs, dq, bs2))
    fails_with(
        ch05.check_bits, lambda b, bs, dq, bs2: b + (8 / bs if dq else 32 / bs), "32 / (64 * 256)"
    )
    fails_with(ch05.check_bits, lambda b, bs, dq, bs2: b + 8 / bs, "32-bit float")


def test_double_quant_check():
    assert ch05.check_double_quant(double_quantize)

    def no_offset(absmax, code, bs2):
        codes, absmax2 = quantize_blockwise(absmax, code, bs2)
        return codes, absmax2, torch.tensor(0.0)

    fails_with(ch05.check_double_quant, no_offset, "MEAN")


def test_not_done_and_crash():
    def todo(*args):
        raise NotImplementedError

    fails_with(ch05.check_nf4, todo, "not done yet")
    fails_with(ch05.check_pack, lambda c: c.reshape(3, -1), "raised")
