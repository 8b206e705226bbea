"""Tests of course_lib.lora: shapes, zero start, scaling, merge, and equality with peft."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from course_lib.lora import (
    LoRALinear,
    copy_from_peft,
    inject_lora,
    lora_layers,
    merge_lora,
)
from course_lib.measure import count_parameters


def test_shapes_zero_start_and_scaling():
    base = torch.nn.Linear(12, 20)
    layer = LoRALinear(base, r=4, alpha=8)
    assert layer.lora_A.shape == (4, 12) and layer.lora_B.shape == (20, 4), (
        "A must be [r, in] and B [out, r] so that B @ A has the weight's shape [out, in]"
    )
    x = torch.randn(3, 12)
    assert torch.equal(layer(x), base(x)), (
        "B starts at zero: the adapted layer must equal the base layer"
    )
    assert layer.scaling == 2.0, "scaling is alpha / r"
    assert LoRALinear(torch.nn.Linear(12, 20), r=4, alpha=8, rslora=True).scaling == 4.0, (
        "rsLoRA: alpha / sqrt(r)"
    )
    assert not base.weight.requires_grad, "the base weight must be frozen"


def test_forward_equals_the_delta_weight_and_merge_roundtrip():
    torch.manual_seed(1)
    layer = LoRALinear(torch.nn.Linear(12, 20), r=4, alpha=8)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(5, 12)
    want = x @ (layer.base.weight + layer.delta_weight()).T + layer.base.bias
    assert torch.allclose(layer(x), want, atol=1e-5), "forward must add x @ (scaling * B A)^T"
    before = layer.base.weight.clone()
    out = layer(x)
    layer.merge()
    assert torch.allclose(layer(x), out, atol=1e-5), "merged output must equal the unmerged one"
    layer.unmerge()
    assert torch.allclose(layer.base.weight, before, atol=1e-6), (
        "unmerge must restore the base weight"
    )


def test_bad_inputs(tiny_llama):
    with pytest.raises(ValueError, match="positive integer"):
        LoRALinear(torch.nn.Linear(4, 4), r=0, alpha=1)
    with pytest.raises(ValueError, match="exceeds"):
        LoRALinear(torch.nn.Linear(4, 4), r=8, alpha=1)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(torch.nn.Conv1d(4, 4, 1), r=1, alpha=1)
    with pytest.raises(ValueError, match="linear layers are"):
        inject_lora(tiny_llama(vocab=50, hidden=32, heads=4), ["query"])


def test_equal_to_peft_outputs_and_gradients(tiny_llama):
    ours = inject_lora(tiny_llama(vocab=50, hidden=32, heads=4), ["q_proj", "v_proj"], r=4, alpha=8)
    theirs = get_peft_model(
        tiny_llama(vocab=50, hidden=32, heads=4),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj"],
            lora_dropout=0.0,
            init_lora_weights=True,
        ),
    )
    with torch.no_grad():  # a non-zero B on peft's side, then copy both A and B
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    copy_from_peft(ours, theirs)
    ids = torch.randint(0, 50, (2, 7))
    lo, lt = ours(input_ids=ids, labels=ids), theirs(input_ids=ids, labels=ids)
    assert torch.allclose(lo.logits, lt.logits, atol=1e-5), "same A and B must give peft's outputs"
    lo.loss.backward()
    lt.loss.backward()
    for name, layer in lora_layers(ours).items():
        peft_layer = theirs.get_submodule("base_model.model." + name)
        assert torch.allclose(
            layer.lora_B.grad, peft_layer.lora_B["default"].weight.grad, atol=1e-5
        ), f"gradient of B differs from peft at {name}"
    assert count_parameters(ours, trainable_only=True) == sum(
        p.numel() for p in theirs.parameters() if p.requires_grad
    ), "trainable parameter counts must equal peft's"


def test_merge_lora_gives_a_plain_model(tiny_llama):
    model = inject_lora(
        tiny_llama(vocab=50, hidden=32, heads=4), ["q_proj", "v_proj", "o_proj"], r=2, alpha=4
    )
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B, std=0.1)
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        merged = merge_lora(copy.deepcopy(model))
        after = merged(input_ids=ids).logits
    assert not lora_layers(merged), "merge_lora must remove every LoRA layer"
    assert torch.allclose(before, after, atol=1e-5), "merging must not change the outputs"
