"""Measuring models: parameters, bytes, time. Taught in chapters 03-05, used everywhere.

Each measurement has one home here, so every chapter counts the same way:

* parameters: `count_parameters` (a tied embedding/head matrix counted once), `trainable_share`;
* bytes: `tensor_bytes` (memory the tensors hold, each storage once), `folder_bytes` (files on
  disk), `saved_bytes` (what `torch.save` writes);
* time: `median_seconds` and `seconds_per_run` (repeated calls, optionally interleaved),
  `LapTimer` (between the steps of a loop you do not drive), `train_step_seconds` (forward +
  backward). All read one clock, `clock()`, which waits for queued CUDA work first: GPU kernels
  run asynchronously, and a clock read without `torch.cuda.synchronize()` stops too early.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

# --- parameters ---------------------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, shared (tied) tensors counted once; only `requires_grad` ones if asked."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters needs a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(trainable_only, bool):
        raise TypeError(f"trainable_only must be True or False, got {trainable_only!r}")
    unique = {id(p): p for p in model.parameters()}.values()  # parameters() yields a tied one once
    return sum(p.numel() for p in unique if p.requires_grad or not trainable_only)


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters), both from `count_parameters`; divide for the share."""
    return count_parameters(model, trainable_only=True), count_parameters(model)


# --- bytes --------------------------------------------------------------------------------------


def _tensors(tensors) -> list[torch.Tensor]:
    """The tensors of a module (parameters and buffers), a state dict, one tensor or an iterable."""
    if isinstance(tensors, nn.Module):
        return [*tensors.parameters(), *tensors.buffers()]
    if torch.is_tensor(tensors):
        return [tensors]
    if isinstance(tensors, Mapping):
        items = list(tensors.items())
    elif isinstance(tensors, Iterable) and not isinstance(tensors, (str, bytes)):
        items = list(enumerate(tensors))
    else:
        raise TypeError(
            "tensor_bytes needs a model, a state_dict, a tensor or an iterable of tensors, "
            f"got {type(tensors).__name__}"
        )
    for key, t in items:
        if not torch.is_tensor(t):
            raise TypeError(
                f"item {key!r} is a {type(t).__name__}, not a tensor: pass only tensors (a quantized "
                "module's packed parameters are not plain tensors: measure it with saved_bytes)"
            )
    return [t for _, t in items]


def tensor_bytes(tensors) -> int:
    """Bytes the tensors hold in memory, each storage counted once (tied weights, views).

    `tensors`: a model (its parameters and buffers), a state_dict, one tensor, or any iterable of
    tensors such as `model.parameters()` or the gradients."""
    seen: set[int] = set()
    total = 0
    for t in _tensors(tensors):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def folder_bytes(folder: str | Path, pattern: str = "*") -> int:
    """Total size in bytes of the files under `folder` (recursively) matching `pattern`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: pass the folder the files were saved to")
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def saved_bytes(obj) -> int:
    """Bytes `torch.save` writes for `obj` (a model: its state_dict): a checkpoint file's size.

    Unlike `tensor_bytes` this includes the file format's overhead and quantized modules' packed
    weights with their scales."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


# --- time ---------------------------------------------------------------------------------------


def clock() -> float:
    """`time.perf_counter()`, read after the GPU has finished its queued work (when CUDA is in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _check_runs(repeats: int, warmup: int) -> None:
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")


def seconds_per_run(
    fn: Callable[[], object] | Mapping[str, Callable[[], object]], repeats: int = 7, warmup: int = 1
) -> list[float] | dict[str, list[float]]:
    """Wall-clock seconds of each of `repeats` calls of `fn()`, after `warmup` untimed calls.

    Pass a dict {name: fn} to time several functions interleaved (A, B, A, B, ...), so that a busy
    machine slows each alike; you get a dict {name: [seconds, ...]} back."""
    _check_runs(repeats, warmup)
    fns = fn if isinstance(fn, Mapping) else {"": fn}
    if not fns:
        raise ValueError("pass at least one function, e.g. {'base': f, 'merged': g}")
    for name, f in fns.items():
        if not callable(f):
            raise TypeError(f"{name or 'fn'} must be a function of no arguments, got {f!r}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, f in fns.items():
            start = clock()
            f()
            elapsed = clock() - start
            if i >= warmup:
                times[name].append(elapsed)
    return times if isinstance(fn, Mapping) else times[""]


def median_seconds(
    fn: Callable[[], object] | Mapping[str, Callable[[], object]], repeats: int = 7, warmup: int = 1
) -> float | dict[str, float]:
    """Median wall-clock seconds of `fn()` over `repeats` calls after `warmup` untimed ones.

    A dict {name: fn} is timed interleaved (see `seconds_per_run`) and gives {name: median}."""
    runs = seconds_per_run(fn, repeats, warmup)
    if isinstance(runs, dict):
        return {name: statistics.median(t) for name, t in runs.items()}
    return statistics.median(runs)


class LapTimer:
    """Seconds between successive `lap()` calls, for a loop you do not drive yourself:
    `laps = LapTimer(); train(..., on_step=laps.lap); laps.seconds()` (the first lap starts
    when the timer is made)."""

    def __init__(self) -> None:
        self.stamps = [clock()]

    def lap(self, *_) -> None:
        """Mark the end of one lap (ignores its arguments, so it fits any callback)."""
        self.stamps.append(clock())

    def seconds(self) -> list[float]:
        """The length of every lap, in order."""
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def train_step_seconds(
    model: nn.Module | Mapping[str, nn.Module],
    batch: dict,
    repeats: int = 5,
    warmup: int = 0,
    bf16: bool = False,
) -> float | dict[str, float]:
    """Median seconds of one forward + backward pass over `batch` (no optimizer step).

    Each model runs in training mode and goes back to its own mode after; gradients are cleared
    after every pass. A dict {name: model} is timed interleaved and gives {name: median}.
    bf16: autocast the forward pass to bfloat16."""
    from course_lib.qlora import cpu_packed_layers
    from course_lib.training import batch_to_device

    models = model if isinstance(model, Mapping) else {"": model}
    if not models:
        raise ValueError("pass at least one model, e.g. {'LoRA': lora_model, 'QLoRA': qlora_model}")
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise TypeError("batch must be a dict of tensors with input_ids and labels (for the loss)")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name or 'model'} must be a torch.nn.Module, got {type(m).__name__}")
        if cpu_packed_layers(m):
            raise ValueError(
                f"{name or 'the model'} has 4-bit layers repacked for CPU inference (it was "
                "evaluated before): backward through them is not supported. Time a freshly "
                "loaded model."
            )

    def step(m: nn.Module) -> Callable[[], None]:
        device = next(m.parameters()).device
        on_device = batch_to_device(batch, device)

        def run() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = m(**on_device).loss
            if loss is None:
                raise ValueError("the model returned no loss: put labels in the batch")
            loss.backward()
            m.zero_grad(set_to_none=True)

        return run

    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.train()
    try:
        medians = median_seconds({n: step(m) for n, m in models.items()}, repeats, warmup)
    finally:
        for name, m in models.items():
            m.train(modes[name])
    return medians if isinstance(model, Mapping) else medians[""]
