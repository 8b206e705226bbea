"""Checks for the chapter 05 exercises (QLoRA and quantization).

Each check runs the student's function on cases where the common mistakes give a
recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal
from course_lib.quantization import (
    absmax_quantize,
    bits_per_parameter,
    double_quantize,
    fp4_values,
    nf4_values,
    pack_4bit,
    quantize_blockwise,
)


def _weights(seed: int = 0, shape=(8, 64)) -> torch.Tensor:
    """Normal 'weights' whose rows (blocks of 64) have very different scales."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * torch.logspace(-3, 0, shape[0]).unsqueeze(1)


def _pair(out, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    expect(isinstance(out, tuple) and len(out) == 2, f"return a pair {what}")
    a, b = out
    expect(torch.is_tensor(a) and torch.is_tensor(b), f"return tensors {what}")
    return a, b


@check("05.1 absmax int8")
def check_absmax(student_fn) -> None:
    """The student's absmax_int8(x) -> (q int8, scale)."""
    x = torch.tensor([0.31, -1.27, 0.049, 0.999, -0.5, 0.0, 0.77, -0.0123])
    q, scale = _pair(student_fn(x.clone()), "(q, scale)")
    want_q, want_scale = absmax_quantize(x, 8)
    expect(q.dtype == torch.int8, f"q must be int8 (8 bits per entry), got {q.dtype}")
    expect_close(
        float(scale),
        float(want_scale),
        1e-7,
        "the scale",
        hints={
            1.27
            / 128: "the scale divides max|x| by 128; symmetric int8 uses ±127 so that +max and -max both fit",
            0.999
            / 127: "the scale uses max(x), not max(|x|): the largest magnitude here is negative",
            127 / 1.27: "the scale is upside down: c = max|x| / 127 (q = x / c)",
        },
    )
    trunc = torch.trunc(x / want_scale).to(torch.int8)
    expect(
        not torch.equal(q, trunc) or torch.equal(trunc, want_q),
        "the codes are truncated (int() or .to(int8) cuts toward zero): round to the NEAREST integer",
    )
    floor = torch.floor(x / want_scale).to(torch.int8)
    expect(
        not torch.equal(q, floor),
        "the codes are floored: round to the NEAREST integer with torch.round",
    )
    expect_equal(q, want_q.tolist(), "q")


@check("05.2 NF4 values")
def check_nf4(student_fn) -> None:
    """The student's nf4_table() -> the 16 NF4 values, ascending, normalised to [-1, 1]."""
    out = student_fn()
    expect(torch.is_tensor(out), f"return a tensor, got {type(out).__name__}")
    expect(out.numel() == 16, f"a 4-bit table has 16 values, got {out.numel()}")
    out = out.reshape(-1).double()
    want = nf4_values().double()
    expect(
        out.abs().max() < 1.5,
        f"the largest value is {out.abs().max():.4f}: the quantiles are not normalised; "
        "divide all 16 by the largest magnitude so the table spans [-1, 1]",
    )
    expect(
        bool((out == 0).any()),
        "no exact zero: NF4 adds 0 as its own value (8 positive + 0 + 7 negative)",
    )
    expect(
        torch.equal(out, out.sort().values),
        "sort the 16 values in ascending order (code 0 = -1, code 15 = +1)",
    )
    symmetric = torch.tensor(sorted(-v for v in want.tolist()), dtype=torch.float64)
    expect_close(
        out,
        want,
        1e-5,
        "the NF4 table",
        hints=[
            (
                symmetric,
                "positive and negative sides are swapped: 8 quantiles on the POSITIVE side, 7 on the negative",
            ),
        ],
    )


@check("05.3 blockwise quantization")
def check_blockwise(student_fn) -> None:
    """The student's quantize_blocks(x, values, blocksize) -> (codes, absmax)."""
    x = _weights(1)
    for name, table in [("NF4", nf4_values()), ("bitsandbytes FP4", fp4_values())]:
        codes, absmax = _pair(student_fn(x.clone(), table.clone(), 64), "(codes, absmax)")
        want_codes, want_absmax = quantize_blockwise(x, table, 64)
        expect(
            absmax.numel() != 1,
            "one absmax for the whole tensor: every block of 64 needs its OWN absmax "
            f"({x.numel() // 64} blocks here)",
        )
        expect(
            absmax.numel() == want_absmax.numel(),
            f"expected {want_absmax.numel()} absmax values (one per "
            f"block of 64 consecutive entries), got {absmax.numel()}",
        )
        expect_close(
            absmax.reshape(-1),
            want_absmax,
            1e-7,
            "the absmax per block",
            hints=[
                (
                    x.reshape(-1, 64).amax(1),
                    "absmax must be the largest MAGNITUDE, max(|x|), not max(x)",
                ),
                (
                    x.reshape(64, -1).abs().amax(0),
                    "blocks must be consecutive entries of the flattened tensor",
                ),
            ],
        )
        codes = codes.reshape(-1).long()
        want = want_codes.reshape(-1).long()
        expect(
            codes.min() >= 0 and codes.max() < len(table),
            f"codes must index the {len(table)}-entry table",
        )
        if torch.equal(table[codes], table[want]):  # equal codes, or ties such as FP4's +0 and -0
            continue
        scaled = x.reshape(-1, 64) / want_absmax.unsqueeze(1)
        order = torch.argsort(table)
        below = (table[order].unsqueeze(0) <= scaled.reshape(-1, 1) + 1e-7).sum(1).clamp(min=1) - 1
        expect(
            not torch.equal(codes, order[below]),
            f"{name}: codes round DOWN to the value below; take the "
            "NEAREST value (smallest |x/absmax - v|)",
        )
        nearest_sorted = torch.argmin((scaled.reshape(-1, 1) - table[order]).abs(), dim=1)
        expect(
            not torch.equal(codes, nearest_sorted),
            f"{name}: codes are positions in the SORTED table, but "
            "a code is an index into the table in its own order (bitsandbytes' FP4 table is not sorted)",
        )
        raise CheckFailed(
            f"{name}: {(codes != want).sum()} of {len(want)} codes differ from the nearest table value"
        )


@check("05.4 pack two codes per byte")
def check_pack(student_fn) -> None:
    """The student's pack(codes) -> uint8 bytes, the first code of each pair in the high nibble."""
    codes = torch.tensor([1, 2, 15, 0, 7, 9, 3, 12], dtype=torch.uint8)
    out = student_fn(codes.clone())
    expect(torch.is_tensor(out), "return a tensor of bytes")
    expect(out.dtype == torch.uint8, f"bytes must be uint8, got {out.dtype}")
    expect(out.numel() == 4, f"8 codes of 4 bits fill 4 bytes, got {out.numel()}")
    want = pack_4bit(codes).reshape(-1).tolist()
    expect_equal(
        out.reshape(-1),
        want,
        "the packed bytes",
        hints=[
            (
                [(b << 4 | a) & 255 for a, b in zip(codes[::2].tolist(), codes[1::2].tolist())],
                "the nibbles are swapped: the FIRST code of each pair goes into the HIGH 4 bits (code << 4)",
            ),
        ],
    )


@check("05.5 bits per parameter")
def check_bits(student_fn) -> None:
    """The student's bits_per_param(bits, blocksize, double_quant, blocksize2)."""
    expect_close(
        student_fn(4, 64, False, 256),
        4.5,
        1e-9,
        "bits/param for 4-bit, block 64, no DQ",
        hints={
            4
            + 8
            / 64: "without double quantization each block's absmax is a 32-bit float, not 8-bit",
            4 + 16 / 64: "the absmax is fp32 (32 bits), not 16",
            0.5625: "that is in bytes; the answer is in bits",
        },
    )
    want = bits_per_parameter(4, 64, True, 256)
    expect_close(
        student_fn(4, 64, True, 256),
        want,
        1e-9,
        "bits/param with double quantization",
        hints={
            4
            + 8
            / 64: "the 8-bit constants themselves need one fp32 constant per block of 256: add 32 / (64 * 256)",
            4
            + 8 / 64
            + 32
            / 256: "the second-level constant is shared by 256 blocks of 64 weights: 32 / (64 * 256)",
            4
            + 32 / 64
            + 8 / 64: "with DQ the 32-bit constants are REPLACED by 8-bit codes, not added",
            want / 8: "that is in bytes; the answer is in bits",
        },
    )
    expect_close(
        student_fn(4, 128, True, 256),
        bits_per_parameter(4, 128, True, 256),
        1e-9,
        "bits/param for blocks of 128 with DQ (use the blocksize argument)",
    )


@check("05.6 double quantization")
def check_double_quant(student_fn) -> None:
    """The student's double_quant(absmax, code, blocksize2) -> (codes uint8, absmax2, offset)."""
    import bitsandbytes.functional as bnbf

    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(2))
    _, plain = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    _, dq = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    out = student_fn(plain.absmax.clone(), dq.state2.code, 256)
    expect(isinstance(out, tuple) and len(out) == 3, "return a triple (codes, absmax2, offset)")
    codes, absmax2, offset = out
    want_codes, want_absmax2, want_offset = double_quantize(plain.absmax, dq.state2.code, 256)
    expect_close(
        float(offset),
        float(want_offset),
        1e-6,
        "the offset",
        hints={
            0.0: "no offset: subtract the MEAN of the absmax values first (they are all positive, so centring them "
            "uses the signed 8-bit code's range twice as well)"
        },
    )
    expect_close(
        torch.as_tensor(absmax2).reshape(-1),
        want_absmax2,
        1e-6,
        "the second-level absmax",
        hints=[
            (
                quantize_blockwise(plain.absmax, dq.state2.code, 256)[1],
                "quantize absmax - mean, not absmax itself",
            ),
        ],
    )
    expect(
        torch.is_tensor(codes) and codes.dtype == torch.uint8,
        "codes must be a uint8 tensor (8 bits per constant)",
    )
    code = dq.state2.code
    agree = (
        (code[codes.reshape(-1).long()] == code[want_codes.reshape(-1).long()])
        .float()
        .mean()
        .item()
    )
    expect(agree == 1.0, f"only {agree:.1%} of the 8-bit codes are the nearest value of `code`")
