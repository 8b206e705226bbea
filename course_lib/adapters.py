"""Bottleneck adapters from scratch: h ↦ h + up(act(down(h))), beside a frozen model.

Taught in chapter 06 (adapters). An adapter is a small two-layer network with a residual
connection (Houlsby et al. 2019). The up-projection starts at zero, so a fresh adapter is the
identity and the adapted model starts exactly at the base model. Placements on the course's
LlamaForCausalLM (each decoder layer has a `self_attn` and an `mlp` sublayer):

- "houlsby":  an adapter on the output of the attention and of the MLP sublayer (2 per layer);
- "pfeiffer": an adapter on the output of the MLP sublayer only (1 per layer);
- "parallel": an adapter beside the MLP, fed the MLP's input, its output added (He et al. 2022).

Each sublayer is wrapped in an `AdapterSlot` that holds named adapters; `set_active_adapter`
switches among them at run time (or turns them all off). Unlike LoRA, nothing can be merged.

BottleneckAdapter, between the export markers, is the lesson's `#| export course_lib.adapters`
cell, copied verbatim (`make lib`); the input checks and the placement machinery live only here.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
# placement -> ((sublayer attribute, "sequential" | "parallel"), ...)
PLACEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "houlsby": (("self_attn", "sequential"), ("mlp", "sequential")),
    "pfeiffer": (("mlp", "sequential"),),
    "parallel": (("mlp", "parallel"),),
}


def check_adapter_args(d_model: int, bottleneck: int, activation: str) -> None:
    """Raise a clear error unless 1 <= bottleneck <= d_model are integers and `activation` is known."""
    for name, value in [("d_model", d_model), ("bottleneck", bottleneck)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if bottleneck > d_model:
        raise ValueError(
            f"bottleneck={bottleneck} is wider than d_model={d_model}: an adapter "
            "projects DOWN, choose a bottleneck smaller than the hidden size"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")


# --- begin export: notebooks/06_adapters ---
class BottleneckAdapter(nn.Module):
    """forward(h) = h + scale · up(act(down(h))); the up-projection starts at zero (identity)."""

    def __init__(self, d_model: int, bottleneck: int, activation: str = "relu", scale: float = 1.0):
        super().__init__()
        check_adapter_args(d_model, bottleneck, activation)
        self.d_model, self.bottleneck, self.scale = d_model, bottleneck, float(scale)
        self.down = nn.Linear(d_model, bottleneck)  # random (the default init)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)  # a zero up-projection: the adapter starts
        nn.init.zeros_(self.up.bias)  # as the identity map

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's branch without the residual: scale · up(act(down(x)))."""
        return self.scale * self.up(self.act(self.down(x)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.delta(h)  # the residual

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, bottleneck={self.bottleneck}, scale={self.scale:g}"


# --- end export ---


def adapter_param_count(d_model: int, bottleneck: int, n_adapters: int = 1) -> int:
    """Parameters of `n_adapters` bottleneck adapters, biases included: n · (2·d·m + d + m)."""
    for name, value in [
        ("d_model", d_model),
        ("bottleneck", bottleneck),
        ("n_adapters", n_adapters),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n_adapters * (2 * d_model * bottleneck + d_model + bottleneck)


class AdapterSlot(nn.Module):
    """A frozen sublayer (attention or MLP) with named adapters on its output; one is active at a time."""

    def __init__(self, sublayer: nn.Module):
        super().__init__()
        if isinstance(sublayer, AdapterSlot):
            raise TypeError(
                "this sublayer is already wrapped in an AdapterSlot: add adapters to that slot"
            )
        self.sublayer = sublayer
        self.adapters = nn.ModuleDict()
        self.modes: dict[str, str] = {}
        self.active: str | None = None

    def add(self, name: str, adapter: BottleneckAdapter, mode: str) -> None:
        """Store `adapter` under `name`, applied "sequential"ly (after) or in "parallel" (beside)."""
        if mode not in ("sequential", "parallel"):
            raise ValueError(f"mode must be 'sequential' or 'parallel', got {mode!r}")
        self.adapters[name], self.modes[name] = adapter, mode

    def forward(self, *args, **kwargs):
        out = self.sublayer(*args, **kwargs)
        if self.active is None or self.active not in self.adapters:
            return out
        h = out[0] if isinstance(out, tuple) else out  # attention returns (output, weights)
        adapter = self.adapters[self.active]
        if self.modes[self.active] == "sequential":
            h = adapter(h)  # h + delta(h): after the sublayer
        else:
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            h = h + adapter.delta(x)  # beside it, fed the sublayer's input
        return (h, *out[1:]) if isinstance(out, tuple) else h

    def extra_repr(self) -> str:
        return f"active={self.active!r}, adapters={dict(self.modes)}"


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    layers = [m for m in model.modules() if hasattr(m, "self_attn") and hasattr(m, "mlp")]
    if not layers:
        raise ValueError(
            "no decoder layers with .self_attn and .mlp found: add_adapter expects a "
            "Llama-style model such as the course's base model"
        )
    return layers


def adapter_slots(model: nn.Module) -> dict[str, AdapterSlot]:
    """The AdapterSlot modules of a model, by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, AdapterSlot)}


def adapter_names(model: nn.Module) -> list[str]:
    """The names of the adapters added to `model`, in the order they were added."""
    names: list[str] = []
    for slot in adapter_slots(model).values():
        names += [n for n in slot.adapters if n not in names]
    return names


def add_adapter(
    model: nn.Module,
    name: str,
    placement: str = "houlsby",
    bottleneck: int = 16,
    activation: str = "relu",
    scale: float = 1.0,
) -> nn.Module:
    """Freeze the base, add adapter `name` at `placement` in every decoder layer, make it active."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"adapter name must be a word like 'clinic' (letters, digits, _), got {name!r}"
        )
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose one of {sorted(PLACEMENTS)}")
    if name in adapter_names(model):
        raise ValueError(f"the model already has an adapter named {name!r}; pick another name")
    if not any(isinstance(m, AdapterSlot) for m in model.modules()):
        for p in model.parameters():
            p.requires_grad_(False)
    layers = _decoder_layers(model)
    d_model = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(d_model, int):
        raise ValueError(
            "the model has no config.hidden_size: add_adapter needs the hidden size of a "
            "Hugging Face model such as the course's LlamaForCausalLM"
        )
    for layer in layers:
        for attr, mode in PLACEMENTS[placement]:
            slot = getattr(layer, attr)
            if not isinstance(slot, AdapterSlot):
                slot = AdapterSlot(slot)
                setattr(layer, attr, slot)
            ref = next(slot.sublayer.parameters())
            slot.add(
                name,
                BottleneckAdapter(d_model, bottleneck, activation, scale).to(ref.device, ref.dtype),
                mode,
            )
    set_active_adapter(model, name)
    return model


def set_active_adapter(model: nn.Module, name: str | None) -> None:
    """Route every slot through adapter `name` (None: the base model); only that adapter is trainable."""
    names = adapter_names(model)
    if not names:
        raise ValueError("the model has no adapters: call add_adapter(model, name, ...) first")
    if name is not None and name not in names:
        raise ValueError(f"no adapter named {name!r}; the model has {names}")
    for slot in adapter_slots(model).values():
        slot.active = name
        for adapter_name, adapter in slot.adapters.items():
            adapter.requires_grad_(adapter_name == name)


def adapter_params(model: nn.Module, name: str) -> int:
    """The number of parameters of adapter `name`, summed over all its slots."""
    if name not in adapter_names(model):
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    return sum(
        p.numel()
        for slot in adapter_slots(model).values()
        if name in slot.adapters
        for p in slot.adapters[name].parameters()
    )
