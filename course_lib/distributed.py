"""Data-parallel training for real, on CPU: the same few steps with one process or with DDP over gloo.

Taught in chapter 11 (scaling out). Run it as

    torchrun --nproc_per_node 2 -m course_lib.distributed --out ddp.json     # 2 processes, gloo
    python -m course_lib.distributed --out single.json               # 1 process, same global batch
    torchrun --nproc_per_node 2 -m course_lib.distributed --accelerate --out acc.json   # Accelerate
    torchrun --nproc_per_node 2 -m course_lib.distributed --fsdp --out fsdp.json   # FSDP2 (ZeRO-3)

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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from course_lib.data import load_jsonl
from course_lib.models import load_model
from course_lib.training import pack_tokens


def global_batches(
    tokenizer, steps: int, batch_size: int, block_size: int = 64
) -> list[torch.Tensor]:
    """The same `steps` global batches of clinic-note blocks in every process (no randomness)."""
    ids = [tokenizer(r["text"])["input_ids"] for r in load_jsonl("clinic_train")[:400]]
    blocks = pack_tokens(ids, block_size, eos_id=tokenizer.eos_token_id)
    if len(blocks) < steps * batch_size:
        raise ValueError(
            f"only {len(blocks)} blocks for {steps} steps × batch {batch_size}; ask for fewer"
        )
    return [blocks[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def run_accelerate(steps: int = 5, batch_size: int = 8, lr: float = 1e-3) -> list[float]:
    """The same training with 🤗 Accelerate: it sets up the process group and wraps the model in DDP."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    world, rank = accelerator.num_processes, accelerator.process_index
    if batch_size % world:
        raise ValueError(
            f"the global batch ({batch_size}) must split evenly over {world} processes"
        )
    torch.manual_seed(0)
    model, tok = load_model("causal")
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
    if dist.is_initialized():  # without this, a rank has been seen to hang at exit (gloo)
        dist.destroy_process_group()
    return losses


def _local_bytes(tensors) -> int:
    """Bytes this process holds of `tensors` (a DTensor counts only its local shard)."""
    return sum(getattr(t, "to_local", lambda: t)().nbytes for t in tensors)


def run_fsdp(steps: int = 5, batch_size: int = 8, lr: float = 1e-3) -> dict:
    """The same training with FSDP2 `fully_shard` (ZeRO-3: parameters, gradients, optimizer state sharded).

    Returns the global losses and, per rank, the bytes of parameters, gradients and AdamW moments it holds
    (its shards) next to the unsharded parameter bytes."""
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    if batch_size % world:
        raise ValueError(
            f"the global batch ({batch_size}) must split evenly over {world} processes"
        )
    torch.manual_seed(0)
    model, tok = load_model("causal")
    full = sum(p.nbytes for p in model.parameters())
    for block in model.model.layers:  # one shard group per decoder block, then the rest
        fully_shard(block)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for batch in global_batches(tok, steps, batch_size):
        shard = batch[rank::world]
        loss = model(input_ids=shard, labels=shard).loss
        loss.backward()  # reduce-scatter: each rank keeps its gradient shard
        opt.step()
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        losses.append((global_loss / world).item())
        if len(losses) < steps:
            opt.zero_grad(set_to_none=True)
    mine = {
        "params": _local_bytes(model.parameters()),
        "grads": _local_bytes(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer": _local_bytes(
            v for s in opt.state.values() for k, v in s.items() if k != "step"
        ),
    }
    per_rank: list = [None] * world
    dist.all_gather_object(per_rank, mine)
    dist.destroy_process_group()
    return {"losses": losses, "full_param_bytes": full, "per_rank": per_rank}


def run(steps: int = 5, batch_size: int = 8, lr: float = 1e-3) -> list[float]:
    """Train the base model `steps` steps (DDP when launched by torchrun); return the global loss per step."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if batch_size % world:
        raise ValueError(
            f"the global batch ({batch_size}) must split evenly over {world} processes"
        )
    torch.manual_seed(0)
    model, tok = load_model("causal")
    if world > 1:
        dist.init_process_group("gloo")
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for batch in global_batches(tok, steps, batch_size):
        shard = batch[rank::world]  # this process's rows of the global batch
        loss = model(input_ids=shard, labels=shard).loss
        loss.backward()  # DDP all-reduces (averages) the gradients here
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


LAUNCHER_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_",
    "ACCELERATE_",
)


def torchrun_command(
    nproc: int, flags: tuple[str, ...], steps: int, out: Path, port: int
) -> list[str]:
    """The torchrun command line that starts `nproc` training processes of this module on this machine."""
    if nproc < 1 or steps < 1:
        raise ValueError(f"nproc and steps must be >= 1, got {nproc} and {steps}")
    unknown = set(flags) - {"--accelerate", "--fsdp"}
    if unknown:
        raise ValueError(
            f"unknown flags {sorted(unknown)}: use --accelerate or --fsdp (or none for plain DDP)"
        )
    return [
        str(Path(sys.executable).with_name("torchrun")),
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "course_lib.distributed",
        "--out",
        str(out),
        "--steps",
        str(steps),
        *flags,
    ]


def _stop(proc: subprocess.Popen) -> None:
    """Kill a launcher and every process it started (workers outlive a killed torchrun otherwise)."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in [*family, proc]:
        try:
            p.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    proc.communicate()


def launch(
    *flags: str, nproc: int = 2, steps: int = 3, timeout: float = 60, tries: int = 2
) -> tuple[dict, float]:
    """Run `torchrun` on a free port; return rank 0's JSON result and the wall seconds of the successful try.

    A run that does not finish within `timeout` seconds is killed with all its workers and started again
    (up to `tries` times): on a heavily loaded machine a gloo rendezvous has been seen to hang."""
    from course_lib.data import ROOT

    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    for attempt in range(1, tries + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = Path(tempfile.mkdtemp()) / "result.json"
        start = time.perf_counter()
        proc = subprocess.Popen(
            torchrun_command(nproc, flags, steps, out, port),
            cwd=ROOT,
            env=dict(env, OMP_NUM_THREADS="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            continue
        if proc.returncode != 0:
            raise RuntimeError(
                f"torchrun {' '.join(flags)} failed (exit {proc.returncode}):\n{stderr[-2000:]}"
            )
        return json.loads(out.read_text()), time.perf_counter() - start
    raise RuntimeError(
        f"torchrun {' '.join(flags)} did not finish in {timeout:.0f} s, {tries} times"
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: run, and let rank 0 write {world_size, losses} to --out as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file for the losses (written by rank 0)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--accelerate", action="store_true", help="use 🤗 Accelerate instead of raw DDP"
    )
    ap.add_argument(
        "--fsdp", action="store_true", help="shard with FSDP2 fully_shard (needs torchrun)"
    )
    args = ap.parse_args(argv)
    if args.accelerate and args.fsdp:
        ap.error("choose one of --accelerate and --fsdp")
    torch.set_num_threads(1)
    if args.fsdp:
        result = run_fsdp(args.steps, args.batch_size)
    else:
        result = {
            "losses": (run_accelerate if args.accelerate else run)(args.steps, args.batch_size)
        }
    if int(os.environ.get("RANK", "0")) == 0:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"world_size": int(os.environ.get("WORLD_SIZE", "1")), **result}, f)
    if "RANK" in os.environ:
        # A worker has been seen to hang in interpreter teardown (a futex wait) after its work was done,
        # one launch in a few; the results are written, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
