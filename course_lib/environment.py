"""One call at the top of every notebook: seeds, device, offline mode, quiet logs, versions.

Taught in chapter 00 (environment check).
"""

from __future__ import annotations

import logging
import os
import random
import warnings

OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline() -> None:
    """Tell every Hugging Face library to never touch the network."""
    os.environ.update(OFFLINE_VARS)


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA)."""
    import numpy as np
    import torch

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def quiet() -> None:
    """Silence the libraries' info logs and the warnings that do not concern students."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for msg in (
        ".*kernels.*",
        ".*TypedStorage.*",
        ".*pin_memory.*",
        ".*generation flags.*",
        ".*is_gradient_checkpointing.*",
    ):  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=msg)


def versions() -> dict[str, str]:
    """Versions of the libraries the course is built on."""
    import importlib.metadata as md
    import sys

    out = {"python": sys.version.split()[0]}
    for name in (
        "torch",
        "transformers",
        "peft",
        "trl",
        "datasets",
        "evaluate",
        "bitsandbytes",
        "accelerate",
        "tokenizers",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def setup(seed: int = 0, verbose: bool = True):
    """Seeds, device (CUDA if present, else CPU), offline mode, quiet logs; returns the device."""
    set_offline()
    if os.environ.get("COURSE_BLOCK_NETWORK") == "1":
        from course_lib.course.netguard import block_network

        block_network()
    import torch

    quiet()
    set_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if verbose:
        v = versions()
        print(
            f"device: {device} | threads: {torch.get_num_threads()} | seed: {seed} | offline: yes"
        )
        print(" | ".join(f"{k} {val}" for k, val in v.items()))
    return device
