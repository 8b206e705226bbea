"""The chapter 05 checkers pass correct answers and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch05
from course_lib.course.checks import CheckFailed
from course_lib.quantization import bits_per_parameter, pack_4bit


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def zero_point(x, bits=4, levels=None, signed_zero=1.0, round_zero=True, dtype=torch.uint8):
    top = 2**bits - 1
    scale = (x.max() - x.min()) / (levels or top)
    zero = signed_zero * -x.min() / scale
    zero = torch.round(zero) if round_zero else zero
    q = (torch.round(x / scale) + zero).clamp(0, top)
    return q.to(dtype), scale, zero


def test_zero_point_check():
    assert ch05.check_zero_point(zero_point)
    fails_with(ch05.check_zero_point, lambda x, b: zero_point(x, b, levels=16), "15 STEPS")
    fails_with(ch05.check_zero_point, lambda x, b: zero_point(x, b, signed_zero=-1.0), "wrong sign")
    fails_with(
        ch05.check_zero_point, lambda x, b: zero_point(x, b, round_zero=False), "not rounded"
    )
    fails_with(ch05.check_zero_point, lambda x, b: zero_point(x, b, dtype=torch.int8), "uint8")

    def symmetric(x, bits):
        scale = x.abs().max() / 7
        return (torch.round(x / scale) + 8).clamp(0, 15).to(torch.uint8), scale, torch.tensor(8.0)

    fails_with(ch05.check_zero_point, symmetric, "symmetric absmax")


def e3m0(zero=True, normalise=True, distinct=True, negative=True):
    mags = ([0.0] if zero else [2.0**-1]) + [2.0 ** (e - 1) for e in range(1, 8)]
    signs = (1, -1) if negative else (1,)
    vals = [s * m for s in signs for m in mags]
    vals = sorted(set(vals)) if distinct else sorted(vals)
    return torch.tensor(vals) / (max(mags) if normalise else 1.0)


def test_e3m0_check():
    assert ch05.check_e3m0(e3m0)
    fails_with(ch05.check_e3m0, lambda: e3m0(zero=False), "exact zero")
    fails_with(ch05.check_e3m0, lambda: e3m0(normalise=False), "divide by the largest")
    fails_with(ch05.check_e3m0, lambda: e3m0(distinct=False), "DISTINCT")
    fails_with(ch05.check_e3m0, lambda: e3m0(negative=False), "sign")


def test_unpack_check():
    def unpack(p):
        f = p.reshape(-1)
        return torch.stack([f >> 4, f & 15], 1).reshape(-1)

    assert ch05.check_unpack(unpack)
    fails_with(
        ch05.check_unpack,
        lambda p: torch.stack([p.reshape(-1) & 15, p.reshape(-1) >> 4], 1),
        "swapped",
    )
    fails_with(
        ch05.check_unpack,
        lambda p: torch.cat([p.reshape(-1) >> 4, p.reshape(-1) & 15]),
        "interleaved",
    )
    fails_with(
        ch05.check_unpack, lambda p: torch.stack([p.reshape(-1) >> 4, p.reshape(-1)], 1), "& 15"
    )
    assert ch05.check_unpack(lambda p: pack_4bit_inverse(p))


def pack_4bit_inverse(p):
    """An independent inverse: divide and take the remainder."""
    f = p.reshape(-1).long()
    codes = torch.empty(2 * len(f), dtype=torch.long)
    codes[0::2], codes[1::2] = f // 16, f % 16
    assert torch.equal(pack_4bit(codes).reshape(-1), p.reshape(-1))
    return codes


def dq(tile=False, offset=1.0, divide=False, lookup=True):
    def fn(codes, absmax2, off, code, bs2=256):
        scale = (
            absmax2.repeat(len(codes) // len(absmax2)) if tile else absmax2.repeat_interleave(bs2)
        )
        values = code[codes.long()] if lookup else codes.float()
        return (values / scale if divide else values * scale) + offset * off

    return fn


def test_dequantize_constants_check():
    assert ch05.check_dequantize_constants(dq())
    fails_with(ch05.check_dequantize_constants, dq(offset=0.0), "offset is missing")
    fails_with(ch05.check_dequantize_constants, dq(offset=-1.0), "ADDS it back")
    fails_with(ch05.check_dequantize_constants, dq(tile=True), "repeat_interleave")
    fails_with(ch05.check_dequantize_constants, dq(divide=True), "don't divide")
    fails_with(ch05.check_dequantize_constants, dq(lookup=False), "look them up")


def test_qlora_memory_check():
    dq_bits = bits_per_parameter(4, 64, double_quant=True)
    assert ch05.check_qlora_memory(lambda nb, nt: (nb * dq_bits / 8 + 16 * nt) / 1e9)
    fails_with(
        ch05.check_qlora_memory, lambda nb, nt: (nb * dq_bits / 8 + 8 * nt) / 1e9, "AdamW states"
    )
    fails_with(
        ch05.check_qlora_memory, lambda nb, nt: (nb * 4 / 8 + 16 * nt) / 1e9, "block constants"
    )
    fails_with(ch05.check_qlora_memory, lambda nb, nt: (nb * dq_bits / 8 + 16 * nt) / 2**30, "GiB")
    fails_with(ch05.check_qlora_memory, lambda nb, nt: (nb * dq_bits + 128 * nt) / 1e9, "BITS")
    fails_with(
        ch05.check_qlora_memory, lambda nb, nt: (nb * 4.5 / 8 + 16 * nt) / 1e9, "without double"
    )


def groups(x, gs, strided=False, symmetric=False, one=False):
    if strided:  # the groups run down dim 0 of x.reshape(gs, -1): every n-th entry
        g = x.reshape(gs, -1)
        lo, hi = g.amin(0), g.amax(0)
        scale, zero = (hi - lo) / 15, torch.round(-lo / ((hi - lo) / 15))
        q = (torch.round(g / scale) + zero).clamp(0, 15).to(torch.uint8)
        return q.reshape(x.shape), scale, zero
    g = x.reshape(1, -1) if one else x.reshape(-1, gs)
    lo, hi = g.amin(1, keepdim=True), g.amax(1, keepdim=True)
    if symmetric:
        scale = g.abs().amax(1, keepdim=True) / 7
        zero = torch.full_like(scale, 8.0)
    else:
        scale = (hi - lo) / 15
        zero = torch.round(-lo / scale)
    q = (torch.round(g / scale) + zero).clamp(0, 15).to(torch.uint8)
    return q.reshape(x.shape), scale.squeeze(1), zero.squeeze(1)


def test_groups_check():
    assert ch05.check_groups(groups)
    fails_with(ch05.check_groups, lambda x, gs: groups(x, gs, one=True), "whole tensor")
    fails_with(ch05.check_groups, lambda x, gs: groups(x, gs, strided=True), "CONSECUTIVE")
    fails_with(ch05.check_groups, lambda x, gs: groups(x, gs, symmetric=True), "symmetric absmax")


def test_not_done_and_crash():
    def todo(*args):
        raise NotImplementedError

    fails_with(ch05.check_e3m0, todo, "not done yet")
    fails_with(ch05.check_unpack, lambda p: p.reshape(3, -1), "raised")
