"""Full fine-tuning helpers: gradient accumulation, fp16 loss scaling, Trainer batch lists, early stopping.

Taught in chapter 03 (full fine-tuning): accumulation over micro-batches gives the
large batch's gradient (when each micro-batch loss is weighted by its share of the
tokens); the Trainer is fed exactly the loop's batches; early stopping watches the
validation loss.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from course_lib.formats import IGNORE_INDEX


def first_batches(batches: Iterable[dict], n: int) -> list[dict]:
    """The first `n` batches of an iterable of batches, re-iterating it (new epochs) as needed."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    out: list[dict] = []
    while len(out) < n:
        before = len(out)
        for batch in batches:
            out.append(batch)
            if len(out) == n:
                break
        if len(out) == before:
            raise ValueError("batches yielded nothing: pass a non-empty iterable of batches")
    return out


def rows_of(batches: Sequence[dict]) -> list[dict]:
    """Split batches into one dict per example, in order (a Trainer dataset that,
    read sequentially with the same batch size, gives back the same batches)."""
    rows: list[dict] = []
    for batch in batches:
        if not isinstance(batch, dict) or "input_ids" not in batch:
            raise TypeError("each batch must be a dict of tensors with input_ids")
        size = len(batch["input_ids"])
        rows += [{k: v[i] for k, v in batch.items()} for i in range(size)]
    return rows


def split_batch(batch: dict, n_micro: int) -> list[dict]:
    """Cut a batch into `n_micro` equal micro-batches along the first dimension."""
    size = len(batch["input_ids"])
    if not isinstance(n_micro, int) or n_micro < 1 or size % n_micro:
        raise ValueError(f"n_micro must divide the batch size {size}, got {n_micro!r}")
    step = size // n_micro
    return [{k: v[i : i + step] for k, v in batch.items()} for i in range(0, size, step)]


def predicted_tokens(batch: dict) -> int:
    """How many tokens a causal-LM batch predicts: labels after the shift that are not -100."""
    if "labels" not in batch:
        raise ValueError("the batch has no labels: nothing is predicted")
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every trainable parameter's .grad (zeros where it is None)."""
    return {
        n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def accumulated_gradients(
    model: torch.nn.Module, micro_batches: Sequence[dict], weighting: str = "mean"
) -> dict[str, torch.Tensor]:
    """The gradient after backward() on every micro-batch, each loss scaled before backward.

    weighting="mean": loss / k (right when every micro-batch has the same number of tokens);
    "tokens": loss * tokens_i / total_tokens (right always: the large batch's per-token mean);
    "none": the loss as is (the classic bug: a gradient k times too large).
    """
    if weighting not in ("mean", "tokens", "none"):
        raise ValueError(f"weighting must be 'mean', 'tokens' or 'none', got {weighting!r}")
    if not micro_batches:
        raise ValueError("micro_batches is empty")
    k = len(micro_batches)
    total = sum(predicted_tokens(b) for b in micro_batches) if weighting == "tokens" else 0
    model.zero_grad(set_to_none=True)
    for batch in micro_batches:
        loss = model(**batch).loss
        if weighting == "tokens":
            scale = predicted_tokens(batch) / total
        else:
            scale = 1 / k if weighting == "mean" else 1.0
        (loss * scale).backward()
    grads = gradients(model)
    model.zero_grad(set_to_none=True)
    return grads


def batch_gradients(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The gradient of the model's loss on one (large) batch."""
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    grads = gradients(model)
    model.zero_grad(set_to_none=True)
    return grads


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest |a - b| over all entries of two gradient dicts with the same keys."""
    if a.keys() != b.keys():
        raise ValueError("the two gradient dicts name different parameters")
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def should_stop(eval_losses: Sequence[float], patience: int, min_delta: float = 0.0) -> bool:
    """Early stopping: True when the last `patience` evaluations all failed to beat the best
    earlier one by more than `min_delta`."""
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    if min_delta < 0:
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
    losses = list(eval_losses)
    if len(losses) <= patience:
        return False
    best_before = min(losses[:-patience])
    return all(x > best_before - min_delta for x in losses[-patience:])


def decay_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the trainable parameters that get weight decay: matrices (ndim >= 2), not biases or norms."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"need a torch.nn.Module, got {type(model).__name__}")
    return [n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]


def check_amp_step_args(micro_batches: Sequence[dict], scaler, max_norm: float) -> None:
    """Clear errors for `amp_accumulation_step`'s arguments (taught in chapter 03, section 3b)."""
    if isinstance(micro_batches, dict) or not micro_batches:
        raise ValueError("micro_batches must be a non-empty list of batches (dicts of tensors)")
    if not isinstance(scaler, torch.amp.GradScaler):
        raise TypeError(
            f"scaler must be a torch.amp.GradScaler (e.g. GradScaler('cpu')), got "
            f"{type(scaler).__name__}"
        )
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")


# --- begin export: notebooks/03_full_finetuning ---
def amp_accumulation_step(model, micro_batches, optimizer, scaler, scheduler=None, max_norm=1.0):
    """One optimizer step of fp16 autocast + GradScaler over k equal micro-batches, in order."""
    check_amp_step_args(micro_batches, scaler, max_norm)
    device_type, k = next(model.parameters()).device.type, len(micro_batches)
    for batch in micro_batches:  # per micro-batch: backward on the SCALED loss
        with torch.autocast(device_type, dtype=torch.float16):
            loss = model(**batch).loss / k  # the sum of k means / k = the large batch's mean
        scaler.scale(loss).backward()  # .grad accumulates S x the gradient
    scaler.unscale_(optimizer)  # once: .grad /= S, note any inf/NaN
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # on the TRUE gradient
    scaler.step(optimizer)  # optimizer.step(), skipped if an inf/NaN was found
    scaler.update()  # halve S on overflow, double after 2000 clean steps
    if scheduler is not None:
        scheduler.step()  # once per optimizer step, not per micro-batch
    optimizer.zero_grad(set_to_none=True)  # once, after the step
    return float(norm)


# --- end export ---
