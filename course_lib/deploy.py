"""Deployment helpers: merge a LoRA adapter, save it for plain transformers, int8 weights.

Taught in chapter 10 (evaluation and deployment); the saved folder loads back with
`models.load_model("causal", folder)` (no peft needed), sizes and latency are measured with
`course_lib.measure`. The int8 part has two versions: a from-scratch per-channel absmax weight
quantizer (chapter 05's `absmax_quantize` per row: `quantize_per_channel`, `Int8Linear`,
`quantize_linears`) and
PyTorch's dynamic quantization (`torch_dynamic_int8`, which wraps the deprecated but still shipped
`torch.ao.quantization.quantize_dynamic` with per-channel weights).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from course_lib.quantization import absmax_dequantize, absmax_quantize


def merge_adapter(peft_model) -> nn.Module:
    """A plain transformers model with the active LoRA adapter folded into its weights.

    peft's merge_and_unload."""
    if not hasattr(peft_model, "merge_and_unload"):
        raise TypeError(
            "merge_adapter needs a peft model (peft.get_peft_model / PeftModel.from_pretrained), "
            f"got {type(peft_model).__name__}"
        )
    return peft_model.merge_and_unload()


def save_model(model: nn.Module, tokenizer, folder: str | Path) -> Path:
    """Save a plain transformers model (safetensors) and its tokenizer to `folder`; returns the folder."""
    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"save_model needs a transformers model, got {type(model).__name__}")
    if hasattr(model, "peft_config"):
        raise ValueError(
            "this is still a peft model: merge it first with merge_adapter (merge_and_unload)"
        )
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (row): scale_i = max_j |w_ij| / 127, q = round(w / scale)."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError("w must be a 2-D weight tensor [out_features, in_features]")
    return absmax_quantize(w.detach(), bits=8, dim=1)


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """w ≈ q · scale (scale has one entry per row)."""
    if q.dtype != torch.int8 or scale.shape != (q.shape[0], 1):
        raise ValueError("q must be int8 [out, in] and scale [out, 1] (from quantize_per_channel)")
    return absmax_dequantize(q, scale)


class Int8Linear(nn.Module):
    """A linear layer that stores int8 weights and one fp32 scale per output row (weight-only int8)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Int8Linear wraps an nn.Linear, got {type(linear).__name__}")
        q, scale = quantize_per_channel(linear.weight)
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x W^T with W dequantized on the fly (scale applied to the output columns)."""
        out = (x @ self.q.to(x.dtype).T) * self.scale.T
        return out if self.bias is None else out + self.bias


def quantize_linears(model: nn.Module, skip: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """A copy of `model` whose nn.Linear layers (except names containing `skip`) are Int8Linear."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_linears needs an nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not any(s in name for s in skip):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, Int8Linear(module))
    return model


def torch_dynamic_int8(model: nn.Module) -> nn.Module:
    """PyTorch dynamic quantization of every nn.Linear: int8 per-channel weights, int8 activations.

    The activations are quantized on the fly, per call."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"torch_dynamic_int8 needs an nn.Module, got {type(model).__name__}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
