"""Activation memory (the tensors autograd saves for backward) and the time a training step takes.

Taught in chapter 03 (gradient checkpointing trades time for activation memory);
chapter 11 uses the same measurement to check its memory calculator.

On a CPU there is no `torch.cuda.max_memory_allocated`, so the activations are counted
directly: a `saved_tensors_hooks` pack hook sees every tensor autograd keeps for the
backward pass; their storages are summed once each, leaving out the model's own
parameters and buffers (they exist whether you train or not).
"""

from __future__ import annotations

import statistics
import time

import torch


def _batch_on(model: torch.nn.Module, batch: dict) -> dict:
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise TypeError(
            "batch must be a dict of tensors with at least input_ids (and labels for a loss)"
        )
    device = next(model.parameters()).device
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def saved_activation_bytes(model: torch.nn.Module, batch: dict, bf16: bool = False) -> int:
    """Bytes of the tensors autograd saves for backward during one forward pass (parameters excluded)."""
    batch = _batch_on(model, batch)
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    device = next(model.parameters()).device
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
    ):
        loss = model(**batch).loss
    if loss is None or not loss.requires_grad:
        raise ValueError(
            "the forward pass built no graph: pass labels in the batch and keep some "
            "parameters trainable (requires_grad=True)"
        )
    return sum(saved.values())


def train_step_seconds(
    model: torch.nn.Module, batch: dict, repeats: int = 5, bf16: bool = False
) -> float:
    """Median wall-clock seconds of one forward + backward pass over `batch` (gradients cleared after)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    batch = _batch_on(model, batch)
    device = next(model.parameters()).device
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)
