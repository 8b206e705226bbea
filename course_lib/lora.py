"""LoRA from scratch: a low-rank update ΔW = (α/r)·B·A beside a frozen linear layer.

Taught in chapter 04 (LoRA, the math); reused in chapters 05, 06, 10 and 12. Shapes follow
PyTorch's `nn.Linear` (weight [out, in]) and peft: A is [r, in], B is [out, r], so
ΔW = B @ A has the weight's shape [out, in]. B starts at zero, so the adapted model starts
exactly at the base model (Hu et al. 2021, §4.1).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


class LoRALinear(nn.Module):
    """y = base(x) + scaling · (dropout(x) @ Aᵀ) @ Bᵀ, with the base layer frozen."""

    def __init__(
        self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"rank r must be a positive integer, got {r!r}")
        if r > min(base.in_features, base.out_features):
            raise ValueError(
                f"rank r={r} exceeds min(in, out) = {min(base.in_features, base.out_features)}: "
                "a low-rank update must have r < the layer's dimensions"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.base, self.r, self.alpha, self.merged = base, r, alpha, False
        for p in base.parameters():
            p.requires_grad_(False)
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default for A
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling · B @ A, shape [out, in] like the base weight."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """Add ΔW into the base weight: afterwards the layer costs what the base layer costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ΔW again, restoring the base weight (up to float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, merged={self.merged}"


def _targets(model: nn.Module, target_modules: Iterable[str]) -> list[str]:
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.split(".")[-1] in target_modules
    ]
    if not names:
        linear = sorted(
            {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        raise ValueError(
            f"no nn.Linear named {sorted(target_modules)} in the model; its linear layers are {linear}"
        )
    return names


def inject_lora(
    model: nn.Module,
    target_modules: Iterable[str] = ("q_proj", "v_proj"),
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    rslora: bool = False,
) -> nn.Module:
    """Freeze every parameter and wrap each target nn.Linear in a LoRALinear (in place)."""
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    target_modules = tuple(target_modules)
    names = _targets(model, target_modules)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout, rslora))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRALinear modules of a model, by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA update and put the plain nn.Linear back (in place): a base-shaped model."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    return model


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters), tied weights counted once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@torch.no_grad()
def copy_from_peft(model: nn.Module, peft_model: nn.Module, adapter: str = "default") -> None:
    """Copy peft's lora_A/lora_B weights into the LoRALinear layers of `model` (same module names)."""
    ours = lora_layers(model)
    copied = 0
    for name, module in peft_model.named_modules():
        if (
            hasattr(module, "lora_A")
            and isinstance(getattr(module, "lora_A"), nn.ModuleDict)
            and adapter in module.lora_A
        ):
            key = name.replace("base_model.model.", "", 1)
            if key not in ours:
                raise ValueError(
                    f"peft adapts {key!r} but the from-scratch model has no LoRA layer there"
                )
            ours[key].lora_A.copy_(module.lora_A[adapter].weight)
            ours[key].lora_B.copy_(module.lora_B[adapter].weight)
            copied += 1
    if copied != len(ours):
        raise ValueError(
            f"copied {copied} peft layers into {len(ours)} LoRA layers: target the same modules"
        )
