"""course_lib.distributed: DDP over 2 CPU processes (torchrun, gloo) takes the same steps as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.data import ROOT


def _clean_env() -> dict:
    """The environment without launcher variables other tests (accelerate, TRL) may have left behind."""
    launcher = (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "GROUP_RANK",
        "ROLE_RANK",
        "TORCHELASTIC_",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(launcher) and not k.startswith("ACCELERATE_")
    }
    return dict(env, OMP_NUM_THREADS="1")


def _run(cmd, out: Path, extra=()) -> list[float]:
    proc = subprocess.run(
        cmd + ["-m", "course_lib.distributed", "--out", str(out), "--steps", "4", *extra],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}"
    return json.loads(out.read_text())["losses"]


def test_ddp_and_accelerate_match_single_process(tmp_path):
    from course_lib.distributed import launch

    ddp = launch(steps=4)[0]["losses"]  # torchrun, killed and retried if it hangs
    acc = launch("--accelerate", steps=4)[0]["losses"]
    fsdp = launch("--fsdp", steps=4)[0]
    single = _run([sys.executable], tmp_path / "single.json")
    assert len(ddp) == len(single) == 4
    worst = max(abs(a - b) for a, b in zip(ddp, single))
    assert worst < 1e-4, (
        f"DDP losses {ddp} drift from single-process {single} (max diff {worst:.2e}): "
        "are gradients averaged (not summed) and does each rank take its own rows?"
    )
    worst_acc = max(abs(a - b) for a, b in zip(acc, single))
    assert worst_acc < 1e-4, f"Accelerate under torchrun drifts from one process: {acc} vs {single}"
    worst_fsdp = max(abs(a - b) for a, b in zip(fsdp["losses"], single))
    assert worst_fsdp < 1e-4, (
        f"FSDP (fully_shard) drifts from one process: {fsdp['losses']} vs {single}"
    )
    for rank in fsdp["per_rank"]:
        share = rank["params"] / fsdp["full_param_bytes"]
        assert 0.45 < share < 0.55, (
            f"each of 2 FSDP ranks should hold about half the parameters, got {share:.2f}"
        )
        assert rank["optimizer"] == 2 * rank["params"], (
            "AdamW moments are sharded like the parameters"
        )
    assert single[-1] < single[0] - 1, "training should lower the clinic loss within 4 steps"


def test_uneven_split_is_refused():
    from course_lib import distributed

    os.environ["WORLD_SIZE"] = "3"
    try:
        with pytest.raises(ValueError, match="split evenly"):
            distributed.run(steps=1, batch_size=8)
    finally:
        del os.environ["WORLD_SIZE"]


def test_torchrun_command_validates_flags(tmp_path):
    from course_lib import distributed

    cmd = distributed.torchrun_command(2, ("--fsdp",), 3, tmp_path / "x.json", 29500)
    assert cmd[1:3] == ["--nproc_per_node", "2"] and cmd[-1] == "--fsdp", (
        f"unexpected command {cmd}"
    )
    with pytest.raises(ValueError, match="unknown flags"):
        distributed.torchrun_command(2, ("--deepspeed",), 3, tmp_path / "x.json", 29500)
    with pytest.raises(ValueError, match=">= 1"):
        distributed.torchrun_command(0, (), 3, tmp_path / "x.json", 29500)


def test_launch_kills_a_run_that_takes_too_long(tmp_path, monkeypatch):
    import time

    import psutil

    from course_lib import distributed

    monkeypatch.setattr(distributed.tempfile, "mkdtemp", lambda: str(tmp_path))
    with pytest.raises(RuntimeError, match="did not finish"):
        distributed.launch(steps=1, timeout=0.5, tries=1)
    time.sleep(0.5)
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            left.append(proc.info["pid"])
    assert not left, f"the launcher or workers of a stopped run are still alive: {left}"
    with pytest.raises(ValueError, match="tries"):
        distributed.launch(tries=0)
