"""LoRA from scratch: a low-rank update ΔW = (α/r)·B·A beside a frozen linear layer.

Taught in chapter 04 (LoRA, the math); reused in chapters 05, 06, 10 and 12. Shapes follow
PyTorch's `nn.Linear` (weight [out, in]) and peft: A is [r, in], B is [out, r], so
ΔW = B @ A has the weight's shape [out, in]. B starts at zero, so the adapted model starts
exactly at the base model (Hu et al. 2021, §4.1).

LoRALinear and its merge methods, between the export markers, are the lesson's
`#| export course_lib.lora` cells, copied verbatim (`make lib`); `check_lora_args` and the
model-level helpers (inject_lora, lora_layers, merge_lora, copy_from_peft) live only here.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

import course_lib


def check_lora_args(base: nn.Module, r: int, dropout: float) -> None:
    """Raise a clear error unless `base` is an nn.Linear, 1 <= r <= min(in, out), 0 <= dropout < 1."""
    if not isinstance(base, nn.Linear):
        raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"rank r must be a positive integer, got {r!r}")
    if r > min(base.in_features, base.out_features):
        raise ValueError(
            f"rank r={r} exceeds min(in, out) = {min(base.in_features, base.out_features)}: "
            "a low-rank update must have r < the layer's dimensions"
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


# --- begin export: notebooks/04_lora ---
class LoRALinear(nn.Module):
    """y = base(x) + scaling · B A dropout(x): a frozen nn.Linear plus a low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout=0.0, rslora=False):
        super().__init__()
        check_lora_args(base, r, dropout)
        self.base, self.r, self.alpha, self.merged = base.requires_grad_(False), r, alpha, False
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        like = dict(dtype=base.weight.dtype, device=base.weight.device)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like))  # [r, in]
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **like))  # [out, r], zero
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default for A
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:  # ΔW already sits in base.weight (merge, below)
            return out
        return out + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)


@course_lib.add_to_class(LoRALinear)
def delta_weight(self) -> torch.Tensor:
    """ΔW = scaling · B @ A, shape [out, in] like the base weight."""
    return self.scaling * (self.lora_B @ self.lora_A)


@course_lib.add_to_class(LoRALinear)
@torch.no_grad()
def merge(self) -> None:
    """Add ΔW into the base weight: afterwards the layer costs what the base layer costs."""
    if not self.merged:
        self.base.weight += self.delta_weight()
        self.merged = True


@course_lib.add_to_class(LoRALinear)
@torch.no_grad()
def unmerge(self) -> None:
    """Subtract ΔW again, restoring the base weight (up to float rounding)."""
    if self.merged:
        self.base.weight -= self.delta_weight()
        self.merged = False


# --- end export ---


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
