"""Chapter 03's seed sweeps: the full fine-tune's learning rate, and forgetting cures at the tuned one.

Both fine-tune the course base model on clinic notes with the lesson's recipe (40 optimizer steps
of 16 notes, warm-up 4, cosine to 0, clipping at 1.0, weight decay 0.01); a seed sets the order of
the notes (and the replay mix / Fisher batches). Every run reports the clinic loss it was tuned
for, the general-text loss it may lose, and the corpus fact recall, raw and calibrated
(`course_lib.forgetting.fact_recall`).

- `ch03_lr`: the learning-rate sweep. The learning rate of the baseline is chosen by `tuned_lr`
  on `clinic_tune` (clinic_val[200:300]), a split the lesson never reports.
- `ch03_cures`: at that learning rate, no clipping, EWC over three strengths, replay and
  freeze-tuning, each one change from the baseline.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from course_lib.sweeps import SweepSpec, load, summary

STEPS, BATCH, WARMUP, WEIGHT_DECAY = 40, 16, 4, 0.01
LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
LAMBDAS = (1e7, 1e8)  # with λ = 0 (the full fine-tune): a three-point λ curve
REPLAY_SHARE = 0.25
SEEDS = (0, 1, 2)
SPLITS = {
    "clinic": "clinic_val[:100]",
    "clinic_tune": "clinic_val[200:300] (selection only)",
    "general": "corpus_val[:100]",
    "fisher": "corpus_documents('train', 2000)[:512], batches of 8, 16 batches",
}


def lr_arm(lr: float) -> str:
    """The arm name of one learning rate of `ch03_lr`."""
    return f"lr={lr:.0e}"


@lru_cache(maxsize=1)
def _setting():
    """The base model, tokenizer and texts (loaded once per process)."""
    from course_lib.data import load_jsonl
    from course_lib.models import load_model
    from course_lib.world.datasets import corpus_documents

    model, tok = load_model("causal", device="cpu")
    clinic_val = [r["text"] for r in load_jsonl("clinic_val")]
    texts = {
        "train": [r["text"] for r in load_jsonl("clinic_train")],
        "clinic": clinic_val[:100],
        "clinic_tune": clinic_val[200:300],
        "general": [r["text"] for r in load_jsonl("corpus_val")][:100],
        "general_train": [d["text"] for d in corpus_documents("train", 2000)],
    }
    return model, tok, texts


def tuned_lr(record: dict | None = None) -> float:
    """The learning rate of `ch03_lr` with the lowest mean loss on clinic_tune (not reported)."""
    record = record or load("ch03_lr")
    return min(LRS, key=lambda lr: summary(record, lr_arm(lr), "clinic_tune").mean)


def fine_tune(
    lr: float, seed: int, clip: bool = True, lam: float = 0.0, replay: float = 0.0, top: int = -1
) -> dict[str, float]:
    """One clinic fine-tune of a fresh copy of the base model, and what it did to both domains."""
    from course_lib.evaluation import cross_entropy
    from course_lib.forgetting import ewc_loss, fact_recall, fisher_diagonal, replay_mix
    from course_lib.freezing import freeze_all_but_top
    from course_lib.training import TrainConfig, text_batches, train

    base, tok, texts = _setting()
    model = copy.deepcopy(base)
    data = texts["train"]
    if replay:
        data = replay_mix(data, texts["general_train"], replay_share=replay, seed=seed)
    if top >= 0:
        freeze_all_but_top(model, top)
    loss_fn = None
    if lam:
        general = text_batches(tok, texts["general_train"][:512], 8, seed=seed + 1)
        fisher = fisher_diagonal(model, general, n_batches=16)
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss_fn = ewc_loss(fisher, anchor, lam=lam)
    cfg = TrainConfig(
        lr=lr,
        max_steps=STEPS,
        warmup_steps=WARMUP,
        min_lr_ratio=0.0,
        max_grad_norm=1.0 if clip else None,
        weight_decay=WEIGHT_DECAY,
        progress=False,
    )
    hist = train(model, text_batches(tok, data, BATCH, seed=seed), cfg, loss_fn=loss_fn)
    recall = fact_recall(model, tok)
    out = {
        "clinic": cross_entropy(model, tok, texts["clinic"]),
        "general": cross_entropy(model, tok, texts["general"]),
        "recall": recall["raw"],
        "recall_calibrated": recall["calibrated"],
        "clipped_share": sum(g > 1.0 for g in hist.grad_norm) / STEPS,
        "first_grad_norm": hist.grad_norm[0],
        "train_seconds": hist.seconds,
    }
    if lam == 0 and not replay and top < 0 and clip:
        out["clinic_tune"] = cross_entropy(model, tok, texts["clinic_tune"])
    return out


def run_lr(arm: str, seed: int) -> dict[str, float]:
    """One arm of `ch03_lr`."""
    lr = {lr_arm(lr): lr for lr in LRS}[arm]
    return fine_tune(lr, seed)


CURES = (
    "no clipping",
    *(f"EWC λ={lam:.0e}" for lam in LAMBDAS),
    f"replay {REPLAY_SHARE:.0%}",
    "top 1 block + head",
)


def run_cure(arm: str, seed: int) -> dict[str, float]:
    """One arm of `ch03_cures`, at the learning rate `tuned_lr` picked from the shipped `ch03_lr`."""
    lr = tuned_lr()
    if arm == "no clipping":
        return fine_tune(lr, seed, clip=False)
    if arm.startswith("EWC"):
        return fine_tune(lr, seed, lam=float(arm.split("=")[1]))
    if arm.startswith("replay"):
        return fine_tune(lr, seed, replay=REPLAY_SHARE)
    if arm == "top 1 block + head":
        return fine_tune(lr, seed, top=1)
    raise KeyError(f"unknown arm {arm!r}; arms: {CURES}")


CONFIG = {
    "model": "course base model (data/base_model)",
    "steps": STEPS,
    "batch": BATCH,
    "warmup": WARMUP,
    "schedule": "warm-up + cosine to 0",
    "weight_decay": WEIGHT_DECAY,
    "max_grad_norm": 1.0,
    "splits": SPLITS,
    "seed sets": "order of the clinic notes; replay mix; Fisher batches (seed + 1)",
}
CODE = (
    "build/sweeps_ch03.py",
    "training.py",
    "forgetting.py",
    "freezing.py",
    "evaluation.py",
)

SWEEPS = [
    SweepSpec(
        name="ch03_lr",
        what="full fine-tune on clinic notes: learning-rate sweep (clinic vs general loss, recall)",
        run=run_lr,
        arms=tuple(lr_arm(lr) for lr in LRS),
        seeds=SEEDS,
        config={**CONFIG, "lrs": list(LRS)},
        code_files=CODE,
        chapter="03",
        check_arms=(lr_arm(1e-3),),
        rel_tol=0.03,
        abs_tol=0.03,
    ),
    SweepSpec(
        name="ch03_cures",
        what="forgetting cures and no clipping, at the learning rate tuned on clinic_tune",
        run=run_cure,
        arms=CURES,
        seeds=SEEDS,
        config={**CONFIG, "lr": "tuned_lr(load('ch03_lr'))", "lambdas": list(LAMBDAS)},
        code_files=CODE,
        chapter="03",
        check_arms=("top 1 block + head",),
        rel_tol=0.03,
        abs_tol=0.03,
        extra=lambda: {"lr": tuned_lr()},
    ),
]
