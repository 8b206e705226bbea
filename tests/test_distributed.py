"""course_lib.distributed: DDP over 2 CPU processes (torchrun, gloo) takes the same steps as one process."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.paths import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict:
    """The environment without launcher variables other tests (accelerate, TRL) may have left behind."""
    launcher = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher) and not k.startswith("ACCELERATE_")}
    return dict(env, OMP_NUM_THREADS="1")


def _run(cmd, out: Path, extra=()) -> list[float]:
    proc = subprocess.run(cmd + ["-m", "course_lib.distributed", "--out", str(out), "--steps", "4", *extra],
                          cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}"
    return json.loads(out.read_text())["losses"]


def _torchrun() -> list[str]:
    return [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port())]


def test_ddp_and_accelerate_match_single_process(tmp_path):
    ddp = _run(_torchrun(), tmp_path / "ddp.json")
    acc = _run(_torchrun(), tmp_path / "acc.json", ["--accelerate"])
    single = _run([sys.executable], tmp_path / "single.json")
    assert len(ddp) == len(single) == 4
    worst = max(abs(a - b) for a, b in zip(ddp, single))
    assert worst < 1e-4, f"DDP losses {ddp} drift from single-process {single} (max diff {worst:.2e}): " \
                         "are gradients averaged (not summed) and does each rank take its own rows?"
    worst_acc = max(abs(a - b) for a, b in zip(acc, single))
    assert worst_acc < 1e-4, f"Accelerate under torchrun drifts from one process: {acc} vs {single}"
    assert single[-1] < single[0] - 1, "training should lower the clinic loss within 4 steps"


def test_uneven_split_is_refused():
    from course_lib import distributed
    os.environ["WORLD_SIZE"] = "3"
    try:
        with pytest.raises(ValueError, match="split evenly"):
            distributed.run(steps=1, batch_size=8)
    finally:
        del os.environ["WORLD_SIZE"]
