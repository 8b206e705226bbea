"""Deployment helpers: merge a LoRA adapter, save and reload it without peft, measure size and latency, int8.

Taught in chapter 10 (evaluation and deployment). The int8 part has two versions: a from-scratch
per-channel absmax weight quantizer (`quantize_per_channel`, `Int8Linear`, `quantize_linears`) and
PyTorch's dynamic quantization (`torch_dynamic_int8`, which wraps the deprecated but still shipped
`torch.ao.quantization.quantize_dynamic` with per-channel weights).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def merge_adapter(peft_model) -> nn.Module:
    """A plain transformers model with the active LoRA adapter folded into its weights (peft's merge_and_unload)."""
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


def load_plain(folder: str | Path):
    """Reload a saved model and tokenizer with plain transformers (no peft import needed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: save the model there with save_model first")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def folder_bytes(folder: str | Path, pattern: str = "*") -> int:
    """Total size in bytes of the files in `folder` matching `pattern` (e.g. '*.safetensors')."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the model's state_dict serialised with torch.save (tied weights counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"state_dict_bytes needs an nn.Module, got {type(model).__name__}")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def tensor_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers in memory (shared tensors counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"tensor_bytes needs an nn.Module, got {type(model).__name__}")
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` runs after `warmup` untimed runs."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (row): scale_i = max_j |w_ij| / 127, q = round(w / scale)."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError("w must be a 2-D weight tensor [out_features, in_features]")
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(w.detach() / scale).clamp(-127, 127).to(torch.int8), scale


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """w ≈ q · scale (scale has one entry per row)."""
    if q.dtype != torch.int8 or scale.shape != (q.shape[0], 1):
        raise ValueError("q must be int8 [out, in] and scale [out, 1] (from quantize_per_channel)")
    return q.float() * scale


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
    """PyTorch dynamic quantization of every nn.Linear: int8 per-channel weights, activations quantized per call."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"torch_dynamic_int8 needs an nn.Module, got {type(model).__name__}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
