"""Checks for the chapter 05 exercises (QLoRA and quantization).

The exercises ask for variants the lesson did not write out: asymmetric (zero-point) int4, the
E3M0 table, unpacking 4-bit codes, undoing double quantization, the memory of a QLoRA run and
group-wise zero-point quantization. Each check runs the student's function on cases where the
common mistakes give a recognisably wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import (
    CheckFailed,
    call_unchanged,
    check,
    expect,
    expect_close,
    expect_equal,
)
from course_lib.quantization import bits_per_parameter, nf4_values, pack_4bit, quantize_blockwise

GB = 1e9


def _zero_point(x: torch.Tensor, bits: int = 4):
    """Reference: asymmetric quantization with scale (max - min) / (2^b - 1) and an integer zero point."""
    top = 2**bits - 1
    lo, hi = x.min(), x.max()
    scale = ((hi - lo) / top).clamp(min=1e-12)
    zero = torch.round(-lo / scale).clamp(0, top)
    q = (torch.round(x / scale) + zero).clamp(0, top)
    return q.to(torch.uint8), scale, zero


def _e3m0() -> torch.Tensor:
    """Reference: 1 sign and 3 exponent bits, no mantissa; e = 0 is zero; 15 values in [-1, 1]."""
    magnitudes = [0.0] + [2.0 ** (e - 1) for e in range(1, 8)]
    return torch.tensor(sorted({s * m for s in (1, -1) for m in magnitudes})) / max(magnitudes)


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    """Reference: the inverse of pack_4bit (high nibble first)."""
    flat = packed.reshape(-1)
    return torch.stack([flat >> 4, flat & 15], dim=1).reshape(-1)


def _dequantize_constants(codes, absmax2, offset, code, blocksize2: int = 256) -> torch.Tensor:
    """Reference: absmax ≈ code[codes] · absmax2 of its block + offset."""
    scale = absmax2.repeat_interleave(blocksize2)[: codes.numel()]
    return code[codes.reshape(-1).long()] * scale + offset


def _qlora_gb(n_base: float, n_trainable: float) -> float:
    """Reference: NF4 + DQ base, fp32 adapters with fp32 gradients and two fp32 AdamW states."""
    return (n_base * bits_per_parameter(4, 64, double_quant=True) / 8 + 16 * n_trainable) / GB


def _groups(x: torch.Tensor, group_size: int, bits: int = 4):
    """Reference: _zero_point on each group of `group_size` consecutive entries."""
    parts = [_zero_point(g, bits) for g in x.reshape(-1, group_size)]
    q = torch.stack([p[0] for p in parts]).reshape(x.shape)
    return q, torch.stack([p[1] for p in parts]), torch.stack([p[2] for p in parts])


def _triple(out, what: str):
    expect(isinstance(out, tuple) and len(out) == 3, f"return a triple {what}")
    return out


def _skewed(seed: int = 0, n: int = 64) -> torch.Tensor:
    """Values in about [-0.3, 1.7]: far from centred on 0, like activations after a GELU."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) * 2.0 - 0.3


@check("05.1 zero-point int4")
def check_zero_point(student_fn) -> None:
    """The student's zero_point_quantize(x, bits) -> (q uint8, scale, zero)."""
    x = _skewed(0)
    out = call_unchanged(student_fn, x.clone(), 4, names=("x",))
    q, scale, zero = _triple(out, "(q, scale, zero)")
    want_q, want_scale, want_zero = _zero_point(x, 4)
    expect(torch.is_tensor(q), "q must be a tensor of codes")
    expect(
        q.dtype == torch.uint8,
        f"q must be uint8: the codes 0..15 are unsigned (the zero point does the shifting), "
        f"got {q.dtype}",
    )
    lo, hi = x.min().item(), x.max().item()
    expect_close(
        float(scale),
        float(want_scale),
        1e-7,
        "the scale",
        hints={
            (hi - lo) / 16: "4 bits give 16 levels and 15 STEPS between them: divide max − min "
            "by 2^bits − 1 = 15",
            max(abs(lo), abs(hi)) / 7: "that is the symmetric absmax scale (max|x| / 7); the "
            "asymmetric one spans the range: (max − min) / 15",
            max(abs(lo), abs(hi)) / 15: "the scale must span max − min, not max|x|",
        },
    )
    expect_close(
        float(zero),
        float(want_zero),
        1e-6,
        "the zero point",
        hints={
            float(torch.round(lo / want_scale)): "the zero point has the wrong sign: the code of "
            "x = min must be 0, so zero = round(−min / scale)",
            float(
                -lo / want_scale
            ): "the zero point is not rounded: it must be an integer code, so "
            "that x = 0 is stored exactly (zero = round(−min / scale))",
        },
    )
    expect_equal(q.reshape(-1), want_q.tolist(), "the codes")
    zeros = torch.zeros(5)
    zeros[0], zeros[1] = -0.3, 1.7
    q0, s0, z0 = _triple(student_fn(zeros, 4), "(q, scale, zero)")
    restored = (q0.float() - float(z0)) * float(s0)
    expect(
        bool((restored[2:] == 0).all()),
        "x = 0 does not come back as exactly 0: (q − zero) · scale must be 0 where x is 0",
    )


@check("05.2 the E3M0 table")
def check_e3m0(student_fn) -> None:
    """The student's e3m0_table() -> the 15 distinct E3M0 values, ascending, in [-1, 1]."""
    out = student_fn()
    expect(torch.is_tensor(out), f"return a tensor, got {type(out).__name__}")
    out = out.reshape(-1).double()
    want = _e3m0().double()
    expect(
        bool((out == 0).any()),
        "no exact zero: exponent field 0 is not a normal number; with no mantissa bits its "
        "subnormal m · 2^(…) is 0, so the table has 0 and 7 powers of two per sign",
    )
    expect(
        out.numel() != 16 or (out == 0).sum() < 2,
        "+0 and −0 are the same value: return the 15 DISTINCT values (build them in a set)",
    )
    expect(
        bool((out < 0).any()),
        "no negative values: the first bit is the sign, so every magnitude also appears negated",
    )
    expect(
        out.abs().max() <= 1 + 1e-9,
        f"the largest value is {out.abs().max():.4g}: divide by the largest magnitude so that "
        "the table spans [-1, 1], as a block's x / absmax does",
    )
    expect(torch.equal(out, out.sort().values), "sort the values in ascending order")
    expect_close(out, want, 1e-9, "the E3M0 table")


@check("05.3 unpack two codes per byte")
def check_unpack(student_fn) -> None:
    """The student's unpack(packed) -> the 4-bit codes, the high nibble of each byte first."""
    codes = torch.tensor([1, 2, 15, 0, 7, 9, 3, 12, 10, 4], dtype=torch.uint8)
    packed = pack_4bit(codes)
    out = student_fn(packed.clone())
    expect(torch.is_tensor(out), "return a tensor of codes")
    out = out.reshape(-1)
    expect(out.numel() == 10, f"5 bytes hold 10 codes, got {out.numel()}")
    expect(
        int(out.max()) <= 15,
        f"a code is larger than 15 ({int(out.max())}): keep only the low 4 bits of the second "
        "code with `& 15` (0x0F)",
    )
    hi, lo = packed.reshape(-1) >> 4, packed.reshape(-1) & 15
    expect_equal(
        out.long(),
        codes.long().tolist(),
        "the unpacked codes",
        hints=[
            (
                torch.stack([lo, hi], 1).reshape(-1).long().tolist(),
                "the nibbles are swapped: the FIRST code of each pair is the HIGH nibble (byte >> 4)",
            ),
            (
                torch.cat([hi, lo]).long().tolist(),
                "the codes are not interleaved: code 2i is byte i's high nibble and code 2i+1 its "
                "low nibble (stack them per byte, then flatten)",
            ),
        ],
    )
    import bitsandbytes.functional as bnbf

    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(3))
    bnb_packed, _ = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    theirs = quantize_blockwise(w, nf4_values(), 64)[0].reshape(-1)
    expect(
        torch.equal(student_fn(bnb_packed.clone()).reshape(-1).long(), theirs.long()),
        "on bitsandbytes' packed NF4 weight the codes differ from the nearest NF4 values",
    )


def _dq_case():
    import bitsandbytes.functional as bnbf

    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(2))  # 1024 constants
    _, dq = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    return dq, bnbf.dequantize_blockwise(dq.absmax, dq.state2) + dq.offset


@check("05.4 undo double quantization")
def check_dequantize_constants(student_fn) -> None:
    """The student's dequantize_constants(codes, absmax2, offset, code, blocksize2) -> fp32 absmax."""
    dq, theirs = _dq_case()
    codes, absmax2, offset, code = dq.absmax, dq.state2.absmax, dq.offset, dq.state2.code
    out = student_fn(codes.clone(), absmax2.clone(), offset.clone(), code.clone(), 256)
    expect(torch.is_tensor(out), "return a tensor of the block constants")
    expect(
        out.numel() == codes.numel(),
        f"one constant per 8-bit code: expected {codes.numel()}, got {out.numel()}",
    )
    values = code[codes.long()]
    per_block = absmax2.repeat_interleave(256)
    expect_close(
        out.reshape(-1).float(),
        theirs,
        1e-6,
        "the block constants (compared with bitsandbytes.functional.dequantize_blockwise + offset)",
        hints=[
            (values * per_block, "the offset is missing: add back the mean that was subtracted"),
            (
                values * per_block - offset,
                "subtract → add: the offset was subtracted before "
                "quantizing, so dequantizing ADDS it back",
            ),
            (
                values * absmax2.repeat(256) + offset,
                "absmax2[i] belongs to the "
                "i-th block of 256 CONSECUTIVE codes: use repeat_interleave, not repeat",
            ),
            (values / per_block + offset, "multiply by the block's absmax2, don't divide"),
            (
                codes.float() * per_block + offset,
                "the codes are indices: look them up in the table first, code[codes.long()]",
            ),
        ],
    )


@check("05.5 memory of a QLoRA run")
def check_qlora_memory(student_fn) -> None:
    """The student's qlora_memory_gb(n_base, n_trainable) -> GB for weights, gradients, AdamW."""
    n_base, n_tr = 65e9, 2e8
    want = _qlora_gb(n_base, n_tr)
    base = n_base * bits_per_parameter(4, 64, double_quant=True) / 8
    expect_close(
        float(student_fn(n_base, n_tr)),
        want,
        1e-3,
        "GB for a 65B base and 200M trainable parameters",
        hints={
            (base + 8 * n_tr) / GB: "the AdamW states are missing: two fp32 moments per "
            "trainable parameter (8 bytes), besides its weight and gradient",
            (base + 12 * n_tr) / GB: "one thing is missing per trainable parameter: weight (4) + "
            "gradient (4) + two AdamW moments (8) = 16 bytes",
            (base + 4 * n_tr) / GB: "the adapters need their gradient and two AdamW moments too: "
            "16 bytes per trainable parameter, not 4",
            (n_base * 4 / 8 + 16 * n_tr)
            / GB: "the base costs more than 4 bits per weight: add the "
            "double-quantized block constants (bits_per_parameter(4, 64, double_quant=True))",
            (n_base * 4.5 / 8 + 16 * n_tr) / GB: "that is NF4 without double quantization (4.5 "
            "bits): QLoRA double-quantizes the constants",
            want * GB / 2**30: "that is GiB (2^30 bytes); the exercise asks for GB (10^9 bytes)",
            want * 8: "that is in gigaBITS: divide the bits by 8",
        },
    )
    expect_close(
        float(student_fn(7e9, 0)),
        _qlora_gb(7e9, 0),
        1e-3,
        "GB for a 7B base without adapters (use both arguments)",
    )


@check("05.6 group-wise zero-point int4")
def check_groups(student_fn) -> None:
    """The student's quantize_groups(x, group_size) -> (q uint8 like x, scale [G], zero [G])."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 128, generator=g) * torch.tensor([0.01, 0.1, 1.0, 0.05]).unsqueeze(1) + 0.02
    q, scale, zero = _triple(student_fn(x.clone(), 64), "(q, scale, zero)")
    want_q, want_scale, want_zero = _groups(x, 64)
    expect(torch.is_tensor(q) and q.shape == x.shape, "q must have the shape of x")
    expect(torch.is_tensor(scale), "scale must be a tensor, one entry per group")
    expect(
        scale.numel() != 1,
        f"one scale for the whole tensor: every group of 64 needs its own ({x.numel() // 64} here)",
    )
    expect(
        scale.numel() == want_scale.numel(),
        f"expected {want_scale.numel()} scales (one per group of 64 consecutive entries), "
        f"got {scale.numel()}",
    )
    expect_close(
        scale.reshape(-1),
        want_scale,
        1e-7,
        "the scale per group",
        hints=[
            (
                (x.reshape(64, -1).amax(0) - x.reshape(64, -1).amin(0)) / 15,
                "groups must be CONSECUTIVE entries of the flattened tensor: x.reshape(-1, 64) "
                "and the min/max over dim=1 (yours takes every n-th entry)",
            ),
            (
                x.reshape(-1, 64).abs().amax(1) / 7,
                "that is the symmetric absmax scale: use (max − min) / 15 per group",
            ),
        ],
    )
    expect_close(torch.as_tensor(zero).reshape(-1).float(), want_zero, 1e-6, "the zero points")
    if not torch.equal(q.reshape(-1).long(), want_q.reshape(-1).long()):
        raise CheckFailed(
            f"{(q.reshape(-1).long() != want_q.reshape(-1).long()).sum()} of {x.numel()} codes "
            "differ: q = clamp(round(x / scale) + zero, 0, 15) with its own group's scale and zero"
        )
