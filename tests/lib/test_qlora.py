"""Tests of course_lib.qlora: 4-bit loading on CPU, byte counts, fake quantization (step timing of
4-bit models: test_measure)."""

from __future__ import annotations

import pytest
import torch

from course_lib import qlora
from course_lib.models import load_model
from course_lib.quantization import bits_per_parameter, int4_values, nf4_values


@pytest.fixture(scope="module")
def base(base_model, tokenizer):
    return base_model, tokenizer


@pytest.fixture(scope="module")
def q4():
    return load_model("4bit", quant_type="nf4", double_quant=True)[0]


def test_4bit_model_linear_layers_are_4bit(q4):
    layer = q4.model.layers[0].mlp.up_proj
    assert type(layer).__name__ == "Linear4bit", (
        "every nn.Linear except the head should become Linear4bit"
    )
    assert layer.weight.dtype == torch.uint8 and layer.weight.quant_state.quant_type == "nf4"
    assert layer.weight.quant_state.nested, "double quantization was asked for"


def test_model_bytes(base, q4):
    model, _ = base
    fp32 = qlora.model_bytes(model)
    assert fp32["weights"] == model.get_memory_footprint(), (
        "parameters + buffers, tied weights once"
    )
    assert fp32["quant_state"] == 0
    four = qlora.model_bytes(q4)
    assert four["weights"] == q4.get_memory_footprint()
    lin = sum(w.numel() for w in qlora.linear_weights(model).values())
    linear_bits = 8 * (four["total"] - (fp32["total"] - 4 * lin)) / lin
    assert bits_per_parameter(4, 64, True) < linear_bits < bits_per_parameter(4, 64, True) + 0.2, (
        f"4-bit linear layers should cost ~4.13 bits/param plus code tables, got {linear_bits:.3f}"
    )


def test_format_mse_and_fake_quantize(base):
    model, _ = base
    nf4, int4 = qlora.format_mse(model, nf4_values()), qlora.format_mse(model, int4_values())
    assert 0 < nf4 < int4, f"NF4 should fit the weights better than Int4: {nf4:.2e} vs {int4:.2e}"
    twin = qlora.fake_quantize(model, nf4_values())
    w, w4 = (
        model.model.layers[0].self_attn.q_proj.weight,
        twin.model.layers[0].self_attn.q_proj.weight,
    )
    assert not torch.equal(w, w4) and (w - w4).pow(2).mean() < 1e-4, (
        "fake-quantized weights: close but changed"
    )
    assert torch.equal(model.model.embed_tokens.weight, twin.model.embed_tokens.weight), (
        "embeddings untouched"
    )


def test_model_bytes_rejects_non_models():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qlora.model_bytes({"w": torch.ones(2)})


def test_bad_inputs(base):
    with pytest.raises(ValueError, match="no floating-point"):
        qlora.linear_weights(torch.nn.Sequential(torch.nn.ReLU()))
