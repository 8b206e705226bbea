"""Model merging from scratch: task vectors, task arithmetic, TIES (trim, elect sign, disjoint
merge), DARE (drop and rescale), and weight interpolation (WiSE-FT).

Taught in chapter 17 (synthetic data, distillation and merging). A *task vector* is what
fine-tuning added to the weights, τ = θ_ft − θ_0; for a LoRA adapter it is ΔW = scaling · B @ A
per adapted layer. Merges combine several task vectors into one; the functions here act on lists
of same-shaped tensors exactly like `peft.utils.merge_utils` (and therefore like peft's
`add_weighted_adapter`), which the chapter checks.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

MAJORITY_METHODS = ("total", "frequency")


def _stack(
    tensors: Sequence[torch.Tensor], weights: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked task tensors [k, ...] and weights shaped to broadcast against them."""
    if isinstance(tensors, torch.Tensor) or not tensors:
        raise TypeError("tensors must be a non-empty list of task tensors (one per task)")
    if len(weights) != len(tensors):
        raise ValueError(f"{len(tensors)} task tensors but {len(weights)} weights: give one each")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"task tensors must share one shape, got {sorted(shapes)}")
    stacked = torch.stack(list(tensors))
    w = torch.as_tensor(list(weights), dtype=stacked.dtype, device=stacked.device)
    return stacked, w.view(-1, *([1] * (stacked.dim() - 1)))


def _check_density(density: float) -> None:
    """density is the share of entries kept, in (0, 1]."""
    if not 0 < density <= 1:
        raise ValueError(f"density (share of entries kept) must be in (0, 1], got {density}")


def task_arithmetic(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ_i w_i τ_i: the weighted sum of task vectors (Ilharco et al. 2023)."""
    stacked, w = _stack(tensors, weights)
    return (stacked * w).sum(0)


def trim(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """TIES step 1: keep the `density` share of entries with the largest |value|, zero the rest."""
    _check_density(density)
    if density == 1:
        return tensor
    k = int(density * tensor.numel())
    keep = torch.zeros(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
    keep[tensor.abs().reshape(-1).topk(k).indices] = 1
    return tensor * keep.view_as(tensor)


def elect_sign(stacked: torch.Tensor, method: str = "total") -> torch.Tensor:
    """TIES step 2: per entry, the sign with the larger total mass ("total": sign of Σ τ_i) or the
    more votes ("frequency": sign of Σ sign τ_i), ties to +; returns the mask of agreeing entries."""
    if method not in MAJORITY_METHODS:
        raise ValueError(f"method must be one of {MAJORITY_METHODS}, got {method!r}")
    mass = stacked.sum(0) if method == "total" else stacked.sign().sum(0)
    elected = torch.where(mass >= 0, 1, -1)
    return stacked.sign() == elected


def disjoint_merge(weighted: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """TIES step 3: average, per entry, only the task values that agree with the elected sign."""
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)


def ties(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    method: str = "total",
) -> torch.Tensor:
    """TIES-merging (Yadav et al. 2023): trim each task vector, elect a sign per entry on the trimmed
    (unweighted) vectors, then average the weighted values that agree with it."""
    trimmed = [trim(t, density) for t in tensors]
    stacked, w = _stack(trimmed, weights)
    return disjoint_merge(stacked * w, elect_sign(stacked, method))


def dare(tensor: torch.Tensor, density: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DARE (Yu et al. 2024): drop each entry with probability 1 − density and rescale the kept ones
    by 1/density, so the expectation is unchanged; `mask` (0/1) replaces the random draw."""
    _check_density(density)
    if density == 1:
        return tensor
    if mask is None:
        mask = torch.bernoulli(torch.full_like(tensor, density))
    elif mask.shape != tensor.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} differs from tensor {tuple(tensor.shape)}"
        )
    return tensor * mask / density


def dare_linear(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    masks: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """DARE on each task vector, then task arithmetic."""
    masks = masks or [None] * len(tensors)
    return task_arithmetic([dare(t, density, m) for t, m in zip(tensors, masks)], weights)


def dare_ties(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    method: str = "total",
    masks: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """DARE on each task vector, then TIES's sign election and disjoint merge (no trimming)."""
    masks = masks or [None] * len(tensors)
    dropped = [dare(t, density, m) for t, m in zip(tensors, masks)]
    stacked, w = _stack(dropped, weights)
    return disjoint_merge(stacked * w, elect_sign(stacked, method))


MERGES = ("task_arithmetic", "ties", "dare_linear", "dare_ties")


def merge_tensors(
    method: str,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float = 1.0,
    majority: str = "total",
) -> torch.Tensor:
    """One merge by name (`MERGES`) of same-shaped task tensors."""
    if method == "task_arithmetic":
        return task_arithmetic(tensors, weights)
    if method == "ties":
        return ties(tensors, weights, density, majority)
    if method == "dare_linear":
        return dare_linear(tensors, weights, density)
    if method == "dare_ties":
        return dare_ties(tensors, weights, density, majority)
    raise ValueError(f"unknown merge {method!r}; choose one of {MERGES}")


def lora_task_vectors(peft_model, adapter: str) -> dict[str, torch.Tensor]:
    """The task vector of one LoRA adapter of a peft model: {layer name: ΔW = scaling·B@A}, in the
    model's module order."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            out[name] = module.get_delta_weight(adapter).detach().clone()
    if not out:
        raise ValueError(f"no LoRA layer holds an adapter named {adapter!r}")
    return out


def merge_task_vectors(
    method: str,
    vectors: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float],
    density: float = 1.0,
    majority: str = "total",
) -> dict[str, torch.Tensor]:
    """Merge task vectors layer by layer (same layer names in every vector), in the first's order."""
    names = list(vectors[0])
    if any(set(v) != set(names) for v in vectors):
        raise ValueError("every task vector must cover the same layers")
    return {
        n: merge_tensors(method, [v[n] for v in vectors], weights, density, majority) for n in names
    }


@torch.no_grad()
def add_task_vector(
    model: nn.Module, vector: Mapping[str, torch.Tensor], prefix: str = ""
) -> nn.Module:
    """Add ΔW to the `.weight` of each named layer of a plain (un-adapted) model, in place.

    Layer names from a peft model ("base_model.model.model.layers.0...") are matched after
    stripping `prefix`."""
    modules = dict(model.named_modules())
    for name, delta in vector.items():
        key = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        if key not in modules:
            raise KeyError(f"layer {key!r} not in the model (strip the peft prefix with prefix=)")
        modules[key].weight += delta.to(modules[key].weight.dtype)
    return model


@torch.no_grad()
def interpolate(base: nn.Module, finetuned: nn.Module, alpha: float) -> nn.Module:
    """WiSE-FT (Wortsman et al. 2022): a copy of `base` with weights (1 − α)·θ_base + α·θ_ft."""
    import copy

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (0 = base, 1 = fine-tuned), got {alpha}")
    theta_ft = dict(finetuned.named_parameters())  # tied weights appear once here
    mixed = copy.deepcopy(base)
    params = dict(mixed.named_parameters())
    if set(theta_ft) != set(params):
        raise ValueError("base and finetuned must have the same architecture (same parameters)")
    for name, value in params.items():
        value.copy_(torch.lerp(value, theta_ft[name].to(value.dtype), alpha))
    return mixed
