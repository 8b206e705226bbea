"""Chapter 12's seed sweep: learning against forgetting on the PEFT yardstick.

Full fine-tuning and LoRA q,v r=8, each at the three learning rates of `sweeps_peft.LR_GRID` and
three seeds, trained on the yardstick of `course_lib.comparison`
(clinic notes after the vocabulary stage). Each run reports the in-domain loss (clinic_val[:100])
and the general-text loss (100 validation documents of the pretraining corpus): one point of a
learning-vs-forgetting curve per (method, rate), so that forgetting is compared at matched
in-domain loss rather than between models trained to different places (Biderman et al. 2024).
Taught in chapter 12; rebuild with `make sweep NAME=ch12_forgetting`.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from course_lib.sweeps import SweepSpec

METHODS = ("full fine-tuning", "LoRA q,v r=8")
SEEDS = (0, 1, 2)
N_GENERAL = 100
# Smaller rates, so that each curve reaches the other's clinic losses without diverged runs: at
# the grid's rates full fine-tuning learns far more than LoRA can, and only a diverged run
# (lr 3e-3) lands near LoRA's best loss. Sweep `ch12_forgetting_low`.
LOW_LRS = {"full fine-tuning": (3e-5, 1e-4), "LoRA q,v r=8": (1e-3,)}


def _grid(low: bool | None = None) -> dict[str, tuple[str, float]]:
    """Arm name -> (method, rate): the lr grid of `sweeps_peft` (low=False), LOW_LRS (True), both."""
    from course_lib.build.sweeps_peft import LR_GRID

    grids = [LR_GRID, LOW_LRS] if low is None else [LOW_LRS if low else LR_GRID]
    return {f"{m} lr {lr:g}": (m, lr) for g in grids for m in METHODS for lr in g[m]}


@lru_cache(maxsize=1)
def general_texts() -> list[str]:
    """The general-text yardstick of forgetting: validation documents of the pretraining corpus."""
    from course_lib.world.datasets import corpus_documents

    return [d["text"] for d in corpus_documents("val", N_GENERAL)]


def run(arm: str, seed: int) -> dict[str, float]:
    """One (method, rate, seed): clinic loss and general-text loss after the yardstick's training."""
    from course_lib import comparison as C
    from course_lib.build.sweeps_peft import BUILDERS
    from course_lib.evaluation import cross_entropy

    torch.set_num_threads(1)
    method, lr = _grid()[arm]
    ys = C.yardstick()
    torch.manual_seed(seed)
    model = BUILDERS[method](ys.base)
    clinic = C.yardstick_loss(model, ys, lr, seed=seed)
    general = cross_entropy(model, ys.tokenizer, general_texts())
    return {"clinic_loss": clinic, "general_loss": general}


def references() -> dict[str, float]:
    """General-text loss of the base model before and after the yardstick's vocabulary stage."""
    from course_lib import comparison as C
    from course_lib.evaluation import cross_entropy
    from course_lib.models import load_model

    torch.set_num_threads(1)
    ys = C.yardstick()
    raw, tok = load_model("causal")
    return {
        "general_loss_base": cross_entropy(raw, tok, general_texts()),
        "general_loss_after_vocabulary_stage": cross_entropy(ys.base, tok, general_texts()),
        "clinic_loss_after_vocabulary_stage": ys.references["after the vocabulary stage"],
    }


SWEEPS = [
    SweepSpec(
        name="ch12_forgetting",
        what="learning vs forgetting on the yardstick: full FT and LoRA q,v r=8, 3 learning "
        "rates each: clinic loss and general-text loss",
        run=run,
        arms=tuple(_grid(low=False)),
        seeds=SEEDS,
        config={"methods": list(METHODS), "general_documents": N_GENERAL, "threads": 1},
        code_files=("comparison.py", "evaluation.py", "training.py", "build/sweeps_ch12.py"),
        chapter="12",
        check_arms=("LoRA q,v r=8 lr 0.01",),
        extra=references,
    ),
    SweepSpec(
        name="ch12_forgetting_low",
        what="ch12_forgetting at smaller learning rates (full FT 3e-5, 1e-4; LoRA 1e-3), so that "
        "the two curves overlap in clinic loss without diverged runs",
        run=run,
        arms=tuple(_grid(low=True)),
        seeds=SEEDS,
        config={"methods": list(METHODS), "general_documents": N_GENERAL, "threads": 1},
        code_files=("comparison.py", "evaluation.py", "training.py", "build/sweeps_ch12.py"),
        chapter="12",
        check_arms=("LoRA q,v r=8 lr 0.001",),
    ),
]
