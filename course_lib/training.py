"""A small, readable training loop: AdamW, warm-up + cosine, clipping, accumulation, bf16.

Taught in chapter 01 (pretraining) and chapter 03 (full fine-tuning, line by line);
every later chapter reuses it. The HF Trainer does the same job in chapter 03.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm as auto_tqdm

from course_lib.formats import IGNORE_INDEX


def progress_bar(iterable, desc: str, enabled: bool = True):
    """A progress bar: a widget in JupyterLab; plain text when COURSE_PLAIN_PROGRESS=1
    (set while notebooks are executed for committing, so outputs stay small)."""
    if os.environ.get("COURSE_PLAIN_PROGRESS") == "1":
        return text_tqdm(iterable, desc=desc, disable=not enabled, mininterval=10, ncols=80)
    return auto_tqdm(iterable, desc=desc, disable=not enabled)


@dataclass
class TrainConfig:
    """Settings of `train`; the defaults suit the course's small models."""

    lr: float = 1e-3
    max_steps: int = 100  # optimizer steps (each = grad_accum micro-batches)
    warmup_steps: int | None = None  # None: 10 % of max_steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    grad_accum: int = 1
    bf16: bool = False  # autocast the forward pass to bfloat16
    eval_every: int = 0  # 0: evaluate only at the end (if eval_fn is given)
    log_every: int = 10
    checkpoint_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.warmup_steps is None:
            self.warmup_steps = self.max_steps // 10
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(
                f"warmup_steps must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}"
            )
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(
                f"max_grad_norm must be > 0 (or None for no clipping), got {self.max_grad_norm}"
            )
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class History:
    """What happened during training, ready for plotting."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval: list[float] = field(default_factory=list)
    seconds: float = 0.0


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """The learning-rate multiplier at `step`: linear warm-up, then cosine to min_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norms."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def _forever(batches: Iterable[dict]):
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("the training data yielded no batches")


def batch_to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with every tensor moved to `device` (other values kept as they are)."""
    if not isinstance(batch, dict):
        raise TypeError(
            f"each batch must be a dict of tensors (e.g. input_ids, labels), "
            f"got {type(batch).__name__}"
        )
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(
    model: torch.nn.Module,
    batches: Iterable[dict],
    config: TrainConfig,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] | None = None,
    on_step: Callable[[torch.nn.Module, int], None] | None = None,
) -> History:
    """Train `model` on `batches` (re-iterated as needed) and return the history.

    By default the loss is `model(**batch).loss` (HF models); pass `loss_fn`
    for anything else. `eval_fn(model)` returns one number, e.g. validation loss.
    `on_step(model, step)` runs after each optimizer step, before the gradients are
    cleared (AdaLoRA's rank update needs them).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError("config must be a course_lib.training.TrainConfig")
    device = next(model.parameters()).device
    opt = make_optimizer(model, config.lr, config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, config.warmup_steps, config.max_steps, config.min_lr_ratio)
    )
    hist, data, start = History(), _forever(batches), time.perf_counter()
    model.train()
    bar = progress_bar(range(config.max_steps), "training", config.progress)
    for step in bar:
        total = 0.0
        for _ in range(config.grad_accum):
            batch = batch_to_device(next(data), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                loss = loss_fn(model, batch) if loss_fn else model(**batch).loss
            (loss / config.grad_accum).backward()  # average over the micro-batches
            total += loss.item() / config.grad_accum
        params = [p for p in model.parameters() if p.grad is not None]
        limit = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, limit)
        hist.lr.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()  # per optimizer step, not per epoch
        if on_step:
            on_step(model, step + 1)
        opt.zero_grad(set_to_none=True)
        hist.steps.append(step + 1)
        hist.loss.append(total)
        hist.grad_norm.append(float(norm))
        last = step + 1 == config.max_steps
        if eval_fn and ((config.eval_every and (step + 1) % config.eval_every == 0) or last):
            hist.eval_steps.append(step + 1)
            model.eval()
            hist.eval.append(float(eval_fn(model)))
            model.train()
        if (step + 1) % config.log_every == 0 or last:
            bar.set_postfix(loss=f"{total:.3f}")
        if config.checkpoint_dir and (
            last or (config.eval_every and (step + 1) % config.eval_every == 0)
        ):
            save_checkpoint(model, opt, step + 1, config.checkpoint_dir)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


def save_checkpoint(
    model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, folder: str
) -> Path:
    """Save model and optimizer state to folder/step-N.pt (resume with torch.load)."""
    path = Path(folder) / f"step-{step}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict()}, path)
    return path


def pack_tokens(
    token_lists: Iterable[list[int]],
    block_size: int,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Concatenate documents (each wrapped in bos/eos if given) and cut into equal blocks."""
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    flat: list[int] = []
    for ids in token_lists:
        flat += ([bos_id] if bos_id is not None and (not ids or ids[0] != bos_id) else []) + list(
            ids
        )
        flat += [eos_id] if eos_id is not None else []
    n = len(flat) // block_size
    if n == 0:
        raise ValueError(f"only {len(flat)} tokens: not enough for one block of {block_size}")
    return torch.tensor(flat[: n * block_size]).view(n, block_size)


class EpochBatches:
    """Batches over n items in a new shuffled order each pass (seed + pass number), the last partial batch
    dropped; `make(indices)` builds one batch. Every batch iterator of the course is one of these."""

    def __init__(self, n: int, batch_size: int, seed: int, make: Callable[[list[int]], dict]):
        if not 1 <= batch_size <= n:
            raise ValueError(
                f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}"
            )
        self.n, self.batch_size, self.seed, self.make, self.epoch = n, batch_size, seed, make, 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=g).tolist()
        for i in range(0, self.n - self.batch_size + 1, self.batch_size):
            yield self.make(order[i : i + self.batch_size])


def lm_batches(blocks: torch.Tensor, batch_size: int, seed: int = 0) -> Iterable[dict]:
    """Shuffled causal-LM batches {input_ids, labels} from packed blocks, reshuffled each pass."""
    if blocks.ndim != 2:
        raise ValueError(
            f"blocks must be 2-D [n_blocks, block_size], got shape {tuple(blocks.shape)}"
        )
    if not 1 <= batch_size <= len(blocks):
        raise ValueError(
            f"batch_size must be in [1, {len(blocks)}] (the number of blocks), got {batch_size}"
        )

    def make(rows: list[int]) -> dict:
        x = blocks[rows]
        return {"input_ids": x, "labels": x.clone()}

    return EpochBatches(len(blocks), batch_size, seed, make)


def text_batches(
    tokenizer,
    texts: list[str],
    batch_size: int,
    max_length: int = 128,
    seed: int = 0,
    add_eos: bool = True,
) -> Iterable[dict]:
    """Shuffled, padded causal-LM batches of whole texts; padding is masked out of the loss."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if not 1 <= batch_size <= len(texts):
        raise ValueError(
            f"batch_size must be in [1, {len(texts)}] (the number of texts), got {batch_size}"
        )
    suffix = tokenizer.eos_token if add_eos else ""

    def make(rows: list[int]) -> dict:
        enc = tokenizer(
            [texts[j] + suffix for j in rows],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels,
        }

    return EpochBatches(len(texts), batch_size, seed, make)
