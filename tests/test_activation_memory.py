"""Tests of course_lib.activation_memory: counting saved activations and timing a step."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from course_lib.activation_memory import saved_activation_bytes, train_step_seconds


class Square(torch.nn.Module):
    """y = (x W)^2: autograd saves x (for W's gradient) and x W (for the square)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4, 4))

    def forward(self, input_ids, labels=None):
        h = input_ids @ self.w
        out = type("Out", (), {})()
        out.loss = (h**2).sum()
        return out


def tiny_lm(layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(cfg)


def lm_batch(rows: int = 4, length: int = 32) -> dict:
    x = torch.randint(0, 40, (rows, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": x, "labels": x.clone()}


def test_counts_exactly_the_saved_tensors_and_not_the_parameters():
    x = torch.randn(3, 4)
    got = saved_activation_bytes(Square(), {"input_ids": x})
    assert got == 2 * 3 * 4 * 4, (
        f"expected x and xW (2 x 12 floats = 96 bytes), got {got}: "
        "parameters must not be counted, each storage once"
    )


def test_activation_bytes_grow_with_the_batch():
    m = tiny_lm()
    small, big = saved_activation_bytes(m, lm_batch(2)), saved_activation_bytes(m, lm_batch(8))
    assert 3.5 < big / small < 4.5, (
        f"4x the rows should save about 4x the activations, got {big / small:.2f}x"
    )


def test_checkpointing_saves_less():
    m = tiny_lm(layers=4)
    m.train()
    plain = saved_activation_bytes(m, lm_batch())
    m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    ckpt = saved_activation_bytes(m, lm_batch())
    m.activation_checkpointing_disable()
    assert ckpt < plain / 2, (
        f"checkpointing should keep far fewer activations ({ckpt} vs {plain} bytes)"
    )


def test_train_step_seconds_is_positive_and_clears_gradients():
    m = tiny_lm()
    s = train_step_seconds(m, lm_batch(), repeats=2)
    assert 0 < s < 10, f"one tiny step should take well under 10 s, got {s}"
    assert all(p.grad is None for p in m.parameters()), "gradients must be cleared after timing"


def test_bad_inputs():
    m = tiny_lm()
    with pytest.raises(TypeError, match="input_ids"):
        saved_activation_bytes(m, [1, 2])
    with pytest.raises(ValueError, match="pass labels"):
        saved_activation_bytes(m, {"input_ids": lm_batch()["input_ids"]})
    with pytest.raises(ValueError, match="repeats must be"):
        train_step_seconds(m, lm_batch(), repeats=0)
