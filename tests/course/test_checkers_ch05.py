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


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_zp(mode: str):
    import torch

    def fn(x, bits):
        top = 2**bits - 1
        lo, hi = x.min(), x.max()
        scale = (hi - lo) / (2**bits if mode == "16_levels" else top)
        zero = torch.round(-lo / scale)
        if mode == "unrounded_zero":
            zero = -lo / scale
        if mode == "in_place":
            x -= lo  # shifts the caller's tensor
            q = torch.round(x / scale).clamp(0, top)
        else:
            q = (torch.round(x / scale) + zero).clamp(0, top)
        return q.to(torch.int8 if mode == "int8" else torch.uint8), scale, zero

    return fn


def _h8_e3m0(mode: str):
    import torch

    mags = [0.0] + [2.0 ** (e - 1) for e in range(1, 8)]
    if mode == "no_zero":
        mags = [2.0 ** (e - 1) for e in range(1, 8)]
    vals = [s * m for s in (1, -1) for m in mags]
    vals = vals if mode == "dup_zero" else sorted(set(vals))
    if mode == "unnormalised":
        return lambda: torch.tensor(sorted(vals))
    return lambda: torch.tensor(sorted(vals)) / max(mags)


def _h8_unpack(mode: str):
    import torch

    def fn(packed):
        flat = packed.reshape(-1)
        if mode == "swapped":
            return torch.stack([flat & 15, flat >> 4], 1).reshape(-1)
        if mode == "concat":
            return torch.cat([flat >> 4, flat & 15])
        return torch.stack([flat >> 4, flat], 1).reshape(-1)  # no & 15

    return fn


def _h8_dq(mode: str):
    def fn(codes, absmax2, offset, code, bs):
        if mode == "repeat":
            return code[codes.long()] * absmax2.repeat(bs)[: codes.numel()] + offset
        if mode == "no_offset":
            return code[codes.long()] * absmax2.repeat_interleave(bs)[: codes.numel()]
        return codes.float() * absmax2.repeat_interleave(bs)[: codes.numel()] + offset

    return fn


def _h8_qlora(mode: str):
    from course_lib.quantization import bits_per_parameter

    def fn(n_base, n_tr):
        bits = 4.5 if mode == "no_dq" else bits_per_parameter(4, 64, double_quant=True)
        per = 12 if mode == "12_bytes" else 16
        total = n_base * bits / 8 + per * n_tr
        return total / 2**30 if mode == "gib" else total / 1e9

    return fn


def _h8_groups(mode: str):
    import torch

    def fn(x, gs):
        g = x.reshape(-1, gs) if mode != "strided" else x.reshape(gs, -1).T
        lo, hi = g.amin(1), g.amax(1)
        scale = (hi - lo) / 15
        if mode == "symmetric":
            scale = g.abs().amax(1) / 7
        zero = torch.round(-lo / scale)
        q = (torch.round(g / scale[:, None]) + zero[:, None]).clamp(0, 15).to(torch.uint8)
        return q.reshape(x.shape), scale, zero

    return fn


WRONG_ANSWERS = [
    Wrong("16 levels", ch05.check_zero_point, [_h8_zp("16_levels")], ("15 STEPS", "2^bits − 1")),
    Wrong(
        "zero point not rounded",
        ch05.check_zero_point,
        [_h8_zp("unrounded_zero")],
        ("not rounded",),
    ),
    Wrong("signed codes", ch05.check_zero_point, [_h8_zp("int8")], ("uint8",)),
    Wrong("input shifted in place", ch05.check_zero_point, [_h8_zp("in_place")], ("in place",)),
    Wrong("no zero in the table", ch05.check_e3m0, [_h8_e3m0("no_zero")], ("zero",)),
    Wrong("+0 and -0 both kept", ch05.check_e3m0, [_h8_e3m0("dup_zero")], ("DISTINCT",)),
    Wrong(
        "not normalised to [-1, 1]",
        ch05.check_e3m0,
        [_h8_e3m0("unnormalised")],
        ("largest magnitude",),
    ),
    Wrong("nibbles swapped", ch05.check_unpack, [_h8_unpack("swapped")], ("swapped",)),
    Wrong("not interleaved", ch05.check_unpack, [_h8_unpack("concat")], ("interleaved",)),
    Wrong("low nibble not masked", ch05.check_unpack, [_h8_unpack("no_mask")], ("& 15",)),
    Wrong(
        "repeat instead of repeat_interleave",
        ch05.check_dequantize_constants,
        [_h8_dq("repeat")],
        ("repeat_interleave",),
    ),
    Wrong("offset missing", ch05.check_dequantize_constants, [_h8_dq("no_offset")], ("offset",)),
    Wrong(
        "codes used as values",
        ch05.check_dequantize_constants,
        [_h8_dq("codes")],
        ("look them up",),
    ),
    Wrong("no double quantization", ch05.check_qlora_memory, [_h8_qlora("no_dq")], ("double",)),
    Wrong(
        "12 bytes per trainable", ch05.check_qlora_memory, [_h8_qlora("12_bytes")], ("16 bytes",)
    ),
    Wrong("GiB, not GB", ch05.check_qlora_memory, [_h8_qlora("gib")], ("GiB",)),
    Wrong("strided groups", ch05.check_groups, [_h8_groups("strided")], ("CONSECUTIVE",)),
    Wrong("symmetric scale", ch05.check_groups, [_h8_groups("symmetric")], ("symmetric",)),
    Wrong(
        "one scale for all",
        ch05.check_groups,
        [lambda x, gs: _h8_zp("ok")(x, 4)],
        ("one scale for the whole tensor", "whole tensor"),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
