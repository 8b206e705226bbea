"""Weight quantization from scratch: absmax int8, blockwise 4-bit (Int4, FP4, NF4), double quantization.

Taught in chapter 05 (QLoRA and quantization). Every function mirrors what
`bitsandbytes.functional` does (quantize_blockwise / quantize_4bit), so the chapter can check
codes and dequantized values against it. NF4 follows Dettmers et al. 2023 (QLoRA, §3):
16 values at quantiles of N(0, 1), an exact zero, normalised to [-1, 1].
"""

from __future__ import annotations

import torch

NF4_OFFSET = 0.9677083  # the outermost quantile used by QLoRA / bitsandbytes


def absmax_quantize(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization of a whole tensor: q = round(x · (2^(b-1)-1) / max|x|)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be between 2 and 8, got {bits}")
    levels = 2 ** (bits - 1) - 1
    scale = x.abs().max().clamp(min=1e-12) / levels
    return torch.round(x / scale).clamp(-levels, levels).to(torch.int8), scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x ≈ q · scale."""
    return q.float() * scale


def nf4_values(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values: 8 positive and 7 negative normal quantiles plus an exact 0, scaled to [-1, 1]."""
    from scipy.stats import norm

    if not 0.5 < offset < 1:
        raise ValueError(f"offset must be in (0.5, 1), got {offset}")
    positive = norm.ppf(torch.linspace(offset, 0.5, 9)[:-1].numpy())  # 8 values
    negative = -norm.ppf(torch.linspace(offset, 0.5, 8)[:-1].numpy())  # 7 values
    values = torch.tensor(sorted([*positive, 0.0, *negative]), dtype=torch.float64)
    return (values / values.abs().max()).float()


def fp4_values() -> torch.Tensor:
    """bitsandbytes' FP4 table in code order (bit patterns 0000 … 1111): 1 sign, 2 exponent, 1 mantissa bit.

    Exponent field e = 1, 2, 3 gives 2^(4-e) · (1 + m/2) (8, 12 / 4, 6 / 2, 3); e = 0 is
    subnormal, m · 0.0625; normalised by the largest value, 12. (This differs from the OCP
    E2M1 format of MXFP4, whose magnitudes are 0, 0.5, 1, 1.5, 2, 3, 4, 6.)
    """
    table = []
    for sign in (1.0, -1.0):
        for e in range(4):
            for m in range(2):
                magnitude = m * 0.0625 if e == 0 else 2.0 ** (4 - e) * (1 + m / 2)
                table.append(sign * magnitude / 12.0)
    return torch.tensor(table)


def e2m1_values() -> torch.Tensor:
    """The OCP E2M1 (MXFP4) values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, divided by 6 (15 distinct values)."""
    magnitudes = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    return torch.cat([magnitudes, -magnitudes[1:]]) / 6


def int4_values() -> torch.Tensor:
    """bitsandbytes' Int4 table: the integers 7 … -7 (and -0), divided by 7."""
    return torch.tensor([7, 6, 5, 4, 3, 2, 1, 0, -0.0, -1, -2, -3, -4, -5, -6, -7]) / 7


def quantize_blockwise(
    x: torch.Tensor, values: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (indices into `values`, uint8) and per-block absmax: each block of `blocksize`
    consecutive elements is divided by its own max |x| and every entry rounded to the nearest value."""
    if blocksize < 1:
        raise ValueError(f"blocksize must be >= 1, got {blocksize}")
    if values.ndim != 1 or not 2 <= len(values) <= 256:
        raise ValueError(
            f"values must be a 1-D table of 2 to 256 entries, got shape {tuple(values.shape)}"
        )
    if values.abs().max() > 1 + 1e-6:
        raise ValueError(
            "the table must be normalised to [-1, 1] (divide by its largest magnitude)"
        )
    flat = x.reshape(-1).float()
    padded = torch.cat([flat, flat.new_zeros((-len(flat)) % blocksize)])
    absmax = padded.view(-1, blocksize).abs().amax(dim=1)
    scale = absmax.clamp(min=1e-38).repeat_interleave(blocksize)[: len(flat)]
    scaled = (flat / scale).clamp(-1, 1)
    order = torch.argsort(values, stable=True)
    bounds = (values[order[:-1]] + values[order[1:]]) / 2
    codes = order[torch.bucketize(scaled, bounds)]
    return codes.to(torch.uint8).reshape(x.shape), absmax


def dequantize_blockwise(
    codes: torch.Tensor, absmax: torch.Tensor, values: torch.Tensor, blocksize: int = 64
) -> torch.Tensor:
    """x ≈ values[code] · absmax of its block."""
    flat = values[codes.reshape(-1).long()]
    scale = absmax.repeat_interleave(blocksize)[: len(flat)]
    if len(scale) != len(flat):
        raise ValueError(
            f"{len(absmax)} absmax values cannot cover {len(flat)} codes with blocksize {blocksize}"
        )
    return (flat * scale).reshape(codes.shape)


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble (bitsandbytes' storage layout)."""
    flat = codes.reshape(-1).to(torch.uint8)
    if flat.max() > 15:
        raise ValueError("4-bit codes must be in 0..15")
    if len(flat) % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return ((flat[::2] << 4) | flat[1::2]).unsqueeze(1)


def double_quantize(absmax: torch.Tensor, code: torch.Tensor, blocksize: int = 256):
    """Quantize the absmax constants themselves (QLoRA §3): subtract their mean, then 8-bit
    blockwise with `code`. Returns (codes, absmax of the absmax blocks, offset)."""
    offset = absmax.mean()
    codes, absmax2 = quantize_blockwise(absmax - offset, code, blocksize)
    return codes, absmax2, offset


def bits_per_parameter(
    bits: int = 4, blocksize: int = 64, double_quant: bool = False, blocksize2: int = 256
) -> float:
    """Storage per weight: the code plus its share of the block constants (fp32, or 8-bit + fp32)."""
    if double_quant:
        return bits + 8 / blocksize + 32 / (blocksize * blocksize2)
    return bits + 32 / blocksize
