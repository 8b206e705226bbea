"""Tests of course_lib.quantization against bitsandbytes: tables, codes, dequantized values, double quant."""

from __future__ import annotations

import bitsandbytes.functional as bnbf
import pytest
import torch

from course_lib.quantization import (
    absmax_dequantize,
    absmax_quantize,
    bits_per_parameter,
    dequantize_blockwise,
    double_quantize,
    e2m1_values,
    fp4_values,
    int4_values,
    nf4_values,
    pack_4bit,
    quantize_blockwise,
)

W = torch.randn(96, 64, generator=torch.Generator().manual_seed(0)) * 0.02


def test_absmax_int8_roundtrip():
    q, scale = absmax_quantize(W)
    assert q.dtype == torch.int8 and q.abs().max() == 127, "the largest |x| must map to ±127"
    err = (absmax_dequantize(q, scale) - W).abs().max()
    assert err <= scale / 2 + 1e-9, f"rounding error {err:.2e} exceeds half a step {scale / 2:.2e}"
    with pytest.raises(ValueError, match="bits"):
        absmax_quantize(W, bits=16)


def test_absmax_per_row_equals_bitsandbytes_int8_vectorwise():
    q, scale = absmax_quantize(W, dim=1)
    q_bnb, row_absmax, _ = bnbf.int8_vectorwise_quant(W.contiguous())
    assert scale.shape == (W.shape[0], 1), "dim=1: one scale per row, kept as a column"
    assert torch.equal(q, q_bnb), "per-row absmax int8 codes must equal LLM.int8()'s"
    assert torch.allclose(127 * scale.squeeze(1), row_absmax), "scale = max|row| / 127"
    assert (absmax_dequantize(q, scale) - W).abs().le(scale / 2 + 1e-9).all()


def test_e2m1_from_bits_equals_the_spec_table():
    spec = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6])  # OCP MX v1.0, E2M1 magnitudes
    assert torch.allclose(e2m1_values() * 6, torch.cat([-spec.flip(0)[:-1], spec]))


def test_tables_match_bitsandbytes():
    assert torch.equal(nf4_values(), bnbf.get_4bit_type("nf4", device="cpu")), (
        "NF4 values derived from normal quantiles must equal bitsandbytes' table bit for bit "
        "(a difference of 1e-7 already flips codes of weights near a midpoint)"
    )
    assert torch.allclose(fp4_values(), bnbf.get_4bit_type("fp4", device="cpu"), atol=1e-6), (
        "FP4 table (code order) must equal bitsandbytes'"
    )
    nf4 = nf4_values()
    assert len(nf4) == 16 and (nf4 == 0).sum() == 1 and nf4.min() == -1 and nf4.max() == 1, (
        "NF4: 16 values in [-1, 1] with exactly one zero"
    )


@pytest.mark.parametrize("kind,table", [("nf4", nf4_values), ("fp4", fp4_values)])
def test_blockwise_4bit_equals_bitsandbytes(kind, table):
    w = torch.randn(192, 512, generator=torch.Generator().manual_seed(5)) * 0.02
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type=kind)
    codes, absmax = quantize_blockwise(w, table(), 64)
    assert torch.allclose(absmax, state.absmax), "one absmax per block of 64 consecutive weights"
    ours = dequantize_blockwise(codes, absmax, table(), 64)
    theirs = bnbf.dequantize_4bit(packed, state)
    assert torch.allclose(ours, theirs, atol=1e-7), (
        f"{kind}: dequantized values differ from bitsandbytes"
    )
    if kind == "nf4":
        assert torch.equal(pack_4bit(codes), packed), "packed NF4 bytes must equal bitsandbytes'"


def test_int4_table_and_error_ordering():
    errs = {}
    for name, table in [
        ("int4", int4_values()),
        ("fp4", fp4_values()),
        ("e2m1", e2m1_values()),
        ("nf4", nf4_values()),
    ]:
        codes, absmax = quantize_blockwise(W, table, 64)
        errs[name] = (dequantize_blockwise(codes, absmax, table, 64) - W).pow(2).mean().item()
    assert errs["nf4"] < errs["e2m1"] < errs["int4"], (
        f"on normal weights expect NF4 < E2M1 < Int4, got {errs}"
    )
    # bitsandbytes' FP4 table has a big gap between 0.0052 and 0.1667: worse than Int4 on normal weights.
    assert errs["fp4"] > errs["int4"], (
        f"expected bitsandbytes' FP4 to lose to Int4 in MSE, got {errs}"
    )


def test_double_quant_matches_bitsandbytes_and_bits():
    w = torch.randn(128, 256, generator=torch.Generator().manual_seed(1))
    _, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    _, plain = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    codes, absmax2, offset = double_quantize(plain.absmax, state.state2.code, 256)
    assert torch.allclose(offset, state.offset), "the offset is the mean of the absmax values"
    assert torch.allclose(absmax2, state.state2.absmax), (
        "second-level absmax per block of 256 constants"
    )
    assert torch.equal(codes, state.absmax), "8-bit codes of the constants must equal bitsandbytes'"
    assert bits_per_parameter(4, 64) == 4.5
    assert bits_per_parameter(4, 64, double_quant=True) == pytest.approx(
        4 + 8 / 64 + 32 / (64 * 256)
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="normalised"):
        quantize_blockwise(W, torch.tensor([-2.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="blocksize"):
        quantize_blockwise(W, nf4_values(), 0)
