"""Data-parallel training for real, on CPU: the same few steps with one process or with DDP over gloo.

Taught in chapter 11 (scaling out). Run it as

    torchrun --nproc_per_node 2 -m course_lib.distributed --out ddp.json     # 2 processes, gloo
    python -m course_lib.distributed --out single.json                       # 1 process, same global batch
    torchrun --nproc_per_node 2 -m course_lib.distributed --accelerate --out acc.json   # same, via Accelerate

(`accelerate launch --cpu --num_processes 2` starts ONE process on CPU unless MPI is set up: with
--cpu it uses its simple launcher. Under torchrun, `Accelerator()` finds the process group itself.)

Each step uses a global batch of fixed-length blocks of clinic notes; with DDP every process takes
every world_size-th row, computes its own mean loss and gradients, and DDP averages the gradients
(all-reduce) before the optimizer step. Because every row has the same number of tokens, the average
of the per-process mean losses is the single process's mean loss, and the two runs take the same steps.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist

from .base_model import load_base_model
from .data import load_jsonl
from .training import pack_tokens


def global_batches(tokenizer, steps: int, batch_size: int, block_size: int = 64) -> list[torch.Tensor]:
    """The same `steps` global batches of clinic-note blocks in every process (no randomness)."""
    ids = [tokenizer(r["text"])["input_ids"] for r in load_jsonl("clinic_train")[:400]]
    blocks = pack_tokens(ids, block_size, eos_id=tokenizer.eos_token_id)
    if len(blocks) < steps * batch_size:
        raise ValueError(f"only {len(blocks)} blocks for {steps} steps × batch {batch_size}; ask for fewer")
    return [blocks[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def run_accelerate(steps: int = 5, batch_size: int = 8, lr: float = 1e-3) -> list[float]:
    """The same training written with 🤗 Accelerate: it sets up the process group and wraps the model in DDP."""
    from accelerate import Accelerator
    accelerator = Accelerator(cpu=True)
    world, rank = accelerator.num_processes, accelerator.process_index
    if batch_size % world:
        raise ValueError(f"the global batch ({batch_size}) must split evenly over {world} processes")
    torch.manual_seed(0)
    model, tok = load_base_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model, opt = accelerator.prepare(model, opt)
    losses = []
    for batch in global_batches(tok, steps, batch_size):
        shard = batch[rank::world]
        loss = model(input_ids=shard, labels=shard).loss
        accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(accelerator.reduce(loss.detach(), reduction="mean").item())
    accelerator.end_training()
    return losses


def run(steps: int = 5, batch_size: int = 8, lr: float = 1e-3) -> list[float]:
    """Train the base model `steps` steps (DDP when launched by torchrun); return the global loss per step."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if batch_size % world:
        raise ValueError(f"the global batch ({batch_size}) must split evenly over {world} processes")
    torch.manual_seed(0)
    model, tok = load_base_model()
    if world > 1:
        dist.init_process_group("gloo")
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for batch in global_batches(tok, steps, batch_size):
        shard = batch[rank::world]                       # this process's rows of the global batch
        loss = model(input_ids=shard, labels=shard).loss
        loss.backward()                                  # DDP all-reduces (averages) the gradients here
        opt.step()
        opt.zero_grad(set_to_none=True)
        global_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(global_loss)
            global_loss /= world
        losses.append(global_loss.item())
    if world > 1:
        dist.destroy_process_group()
    return losses


def main(argv: list[str] | None = None) -> None:
    """Command line: run, and let rank 0 write {world_size, losses} to --out as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file for the losses (written by rank 0)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--accelerate", action="store_true", help="use 🤗 Accelerate instead of raw DDP")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    losses = (run_accelerate if args.accelerate else run)(args.steps, args.batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"world_size": int(os.environ.get("WORLD_SIZE", "1")), "losses": losses}, f)


if __name__ == "__main__":
    main()
