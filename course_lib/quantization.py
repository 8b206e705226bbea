"""Weight quantization from scratch: absmax int8, blockwise 4-bit (Int4, FP4, NF4), double quantization.

Taught in chapter 05 (QLoRA and quantization): the functions between the export markers are the
lesson's `#| export course_lib.quantization` cells, copied verbatim (`make lib`). Every function
mirrors what `bitsandbytes.functional` does (int8_vectorwise_quant, quantize_blockwise,
quantize_4bit), so the chapter and tests/lib/test_quantization.py check codes and dequantized values
against it. NF4 follows Dettmers et al. 2023 (QLoRA, §3): 16 values at quantiles of N(0, 1), an
exact zero, normalised to [-1, 1].
"""

from __future__ import annotations

import torch


def check_table(values: torch.Tensor, blocksize: int) -> None:
    """Raise a clear error unless `values` is a 1-D code table in [-1, 1] and `blocksize` >= 1."""
    if not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize must be an integer >= 1, got {blocksize!r}")
    if not torch.is_tensor(values) or values.ndim != 1 or not 2 <= len(values) <= 256:
        shape = tuple(values.shape) if torch.is_tensor(values) else type(values).__name__
        raise ValueError(f"values must be a 1-D table of 2 to 256 entries, got {shape}")
    if values.abs().max() > 1 + 1e-6:
        raise ValueError(
            "the table must be normalised to [-1, 1] (divide by its largest magnitude)"
        )


# --- begin export: notebooks/05_qlora_quantization ---
def absmax_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization q = round(x / c), c = max|x| / (2^(bits-1) - 1).

    One c for the whole tensor, or one per slice with the max taken over `dim` (kept as size 1):
    dim=1 on a [out, in] weight gives one scale per row, LLM.int8()'s format."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be between 2 and 8 (the codes are int8), got {bits}")
    levels = 2 ** (bits - 1) - 1  # L: 127 for int8, 7 for int4
    absmax = x.abs().max() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = absmax.clamp(min=1e-12) / levels  # c (the clamp spares an all-zero x a division by 0)
    q = torch.round(x / scale).clamp(-levels, levels)  # the nearest integer in [-L, L]
    return q.to(torch.int8), scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x ≈ q · c."""
    return q.float() * scale


def int4_values() -> torch.Tensor:
    """bitsandbytes' Int4 table: the integers 7 … -7 (and -0), divided by 7."""
    return torch.tensor([7, 6, 5, 4, 3, 2, 1, 0, -0.0, -1, -2, -3, -4, -5, -6, -7]) / 7


def e2m1_values() -> torch.Tensor:
    """The OCP E2M1 (MXFP4) values built from their bits, ascending, divided by the largest (6)."""
    magnitudes = [
        m / 2 if e == 0 else 2 ** (e - 1) * (1 + m / 2)  # subnormal if e = 0, else normal
        for e in range(4)  # 2 exponent bits
        for m in range(2)  # 1 mantissa bit
    ]
    signed = sorted({s * v for s in (1, -1) for v in magnitudes})  # a set: +0 and -0 are one value
    return torch.tensor(signed) / max(magnitudes)


def fp4_values() -> torch.Tensor:
    """bitsandbytes' FP4 table in code order (0000 … 1111): 1 sign, 2 exponent, 1 mantissa bit."""
    table = []
    for sign in (1.0, -1.0):  # the first bit
        for e in range(4):  # the exponent field
            for m in range(2):  # the mantissa bit
                magnitude = m * 0.0625 if e == 0 else 2.0 ** (4 - e) * (1 + m / 2)
                table.append(sign * magnitude / 12.0)  # 12 = the largest magnitude (e=1, m=1)
    return torch.tensor(table)


def nf4_values(delta: float = 0.9677083) -> torch.Tensor:
    """The 16 NF4 values, ascending: 7 negative and 8 positive normal quantiles and 0, in [-1, 1]."""
    from scipy.stats import norm

    if not 0.5 < delta < 1:
        raise ValueError(f"delta must be in (0.5, 1): the quantile of 1 is infinite, got {delta}")
    positive = norm.ppf(torch.linspace(delta, 0.5, 9)[:-1].numpy())  # 8 quantiles > 0
    negative = -norm.ppf(torch.linspace(delta, 0.5, 8)[:-1].numpy())  # 7 quantiles < 0
    raw = torch.tensor(sorted([*negative, 0.0, *positive]), dtype=torch.float64)
    return (raw / raw.abs().max()).float()  # divide by Q_N(delta): the range is [-1, 1]


def quantize_blockwise(
    x: torch.Tensor, values: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (uint8 indices into `values`, the shape of x) and one absmax per block of `blocksize`
    consecutive entries: each entry divided by its block's max |x| and rounded to the nearest value."""
    check_table(values, blocksize)  # clear errors for a bad table or block size
    flat = x.reshape(-1).float()
    padded = torch.cat([flat, flat.new_zeros((-len(flat)) % blocksize)])  # fill the last block
    absmax = padded.view(-1, blocksize).abs().amax(dim=1)  # c_b, one per block
    scale = absmax.clamp(min=1e-38).repeat_interleave(blocksize)[: len(flat)]
    scaled = (flat / scale).clamp(-1, 1)
    order = torch.argsort(values, stable=True)  # positions of the table's values, ascending
    bounds = (values[order[:-1]] + values[order[1:]]) / 2  # midpoints between neighbours
    codes = order[torch.bucketize(scaled, bounds)]  # nearest value, as an index into `values`
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
    """Two 4-bit codes per byte, the first in the high nibble: a [n/2, 1] uint8 tensor."""
    flat = codes.reshape(-1).to(torch.uint8)
    if flat.max() > 15:
        raise ValueError("4-bit codes must be in 0..15")
    if len(flat) % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])  # an odd count: pad the last byte
    return ((flat[::2] << 4) | flat[1::2]).unsqueeze(1)


def bits_per_parameter(
    bits: int = 4, blocksize: int = 64, double_quant: bool = False, blocksize2: int = 256
) -> float:
    """Storage per weight: the code plus its share of the block constants (fp32, or 8-bit + fp32)."""
    if double_quant:
        return bits + 8 / blocksize + 32 / (blocksize * blocksize2)
    return bits + 32 / blocksize


def double_quantize(absmax: torch.Tensor, code: torch.Tensor, blocksize: int = 256):
    """Quantize the block constants themselves (QLoRA §3): subtract their mean, then 8-bit
    blockwise with the table `code`. Returns (codes, absmax of the absmax blocks, offset)."""
    offset = absmax.mean()  # all absmax are > 0: centring uses both halves of the signed code
    codes, absmax2 = quantize_blockwise(absmax - offset, code, blocksize)
    return codes, absmax2, offset


# --- end export ---


# GGUF's Q4_1 blocks (chapter 13): the 4-bit format of the real model's file, decoded from its bytes.
def check_q4_1_bytes(raw) -> torch.Tensor:
    """Raw Q4_1 bytes as a uint8 tensor whose last axis holds whole 20-byte blocks (else a clear error)."""
    import numpy as np

    if isinstance(raw, np.ndarray):
        raw = torch.from_numpy(np.array(raw))  # a copy: the GGUF reader's arrays are read-only
    if not torch.is_tensor(raw) or raw.dtype != torch.uint8 or raw.ndim < 1:
        kind = raw.dtype if torch.is_tensor(raw) else type(raw).__name__
        raise TypeError(f"Q4_1 data must be raw bytes (a uint8 array or tensor), got {kind}")
    if raw.shape[-1] == 0 or raw.shape[-1] % 20:
        raise ValueError(
            f"the last axis must hold whole 20-byte Q4_1 blocks, got {raw.shape[-1]} bytes "
            "(pass a tensor's `.data` from gguf.GGUFReader, whose type is Q4_1)"
        )
    return raw


# --- begin export: notebooks/13_real_model ---
Q4_1_BLOCK, Q4_1_BYTES = 32, 20  # weights per block; bytes per block (d, m, 16 bytes of codes)


def dequantize_q4_1(raw) -> torch.Tensor:
    """GGUF Q4_1 bytes [..., k*20] -> float32 weights [..., k*32]: w = d * q + m in every block.

    A block is d (fp16), m (fp16), then 16 bytes: byte j holds q_j in its low 4 bits and q_(j+16)
    in its high 4 bits, so the block's first 16 weights come from the low halves."""
    raw = check_q4_1_bytes(raw)  # uint8, whole blocks on the last axis
    blocks = raw.reshape(-1, Q4_1_BYTES)
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()  # [n, 1] the step
    m = blocks[:, 2:4].contiguous().view(torch.float16).float()  # [n, 1] the minimum
    packed = blocks[:, 4:]  # [n, 16]
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1).float()  # [n, 32] codes 0..15
    return (d * q + m).reshape(*raw.shape[:-1], -1)


# --- end export ---
