"""QLoRA on a CPU: count a 4-bit model's bytes, fake-quantize weights, find CPU-repacked layers.

Taught in chapter 05 (QLoRA and quantization). Loading in 4 bits is `models.load_model("4bit")`
(transformers' `BitsAndBytesConfig`, bitsandbytes' `Linear4bit` layers); the from-scratch formats
come from `course_lib.quantization`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from course_lib.measure import tensor_bytes
from course_lib.quantization import dequantize_blockwise, quantize_blockwise


def linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight of every nn.Linear except the output head (tied to the embeddings), by module name."""
    out = {
        n: m.weight
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and not n.endswith("lm_head")
        and m.weight.dtype.is_floating_point
    }
    if not out:
        raise ValueError(
            "the model has no floating-point nn.Linear layers (is it already quantized?)"
        )
    return out


@torch.no_grad()
def format_mse(model: nn.Module, values: torch.Tensor, blocksize: int = 64) -> float:
    """Mean squared error over all linear weights after blockwise quantization with the table `values`."""
    total, count = 0.0, 0
    for w in linear_weights(model).values():
        codes, absmax = quantize_blockwise(w, values, blocksize)
        total += (
            (dequantize_blockwise(codes, absmax, values, blocksize) - w.float()).pow(2).sum().item()
        )
        count += w.numel()
    return total / count


@torch.no_grad()
def fake_quantize(model: nn.Module, values: torch.Tensor, blocksize: int = 64) -> nn.Module:
    """A copy of the model whose linear weights are replaced by their quantized-then-dequantized values."""
    twin = copy.deepcopy(model)
    for w in linear_weights(twin).values():
        codes, absmax = quantize_blockwise(w, values, blocksize)
        w.copy_(dequantize_blockwise(codes, absmax, values, blocksize).to(w.dtype))
    return twin


def _quant_state_tensors(state) -> list[torch.Tensor]:
    """The tensors of a bitsandbytes QuantState (absmax, code, nested state, offset)."""
    tensors = []
    for value in vars(state).values():
        if torch.is_tensor(value):
            tensors.append(value)
        elif type(value).__name__ == "QuantState":
            tensors += _quant_state_tensors(value)
    return tensors


def model_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes held by the model's tensors, split for a 4-bit model: 'weights' (parameters and
    buffers, `measure.tensor_bytes`), 'quant_state' (4-bit block constants and code tables), 'total'."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_bytes needs a torch.nn.Module, got {type(model).__name__}")
    weights = tensor_bytes(model)
    states = [
        p.quant_state for p in model.parameters() if getattr(p, "quant_state", None) is not None
    ]
    state = tensor_bytes([t for s in states for t in _quant_state_tensors(s)])
    return {"weights": weights, "quant_state": state, "total": weights + state}


def cpu_packed_layers(model: nn.Module) -> list[str]:
    """Names of 4-bit layers that bitsandbytes has repacked for CPU inference (AVX512-BF16 CPUs only).

    bitsandbytes 0.50 repacks a Linear4bit's weight the first time it runs in eval mode on an input
    without gradient; from then on it uses a bf16 inference kernel with no backward, so training
    through that layer silently gets no gradient. Evaluate after training, or reload the model."""
    return [
        n
        for n, p in model.named_parameters()
        if getattr(getattr(p, "quant_state", None), "packing_format_for_cpu", False)
    ]
