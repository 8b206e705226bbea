"""Chapter 05's seed sweep: LoRA on the fp32 base vs QLoRA on the NF4 base, on the 80 new facts.

Taught in chapter 05 (QLoRA and quantization, section 7). One run is the lesson's recipe: r = 16 on
all linear layers, 150 steps, lr 5e-3, batch 16; the seed draws the adapters' A matrices and the
order of the batches. The lesson trains seed 0 live and places it among the shipped seeds
(`sweeps.place`). Rebuild with `make sweep NAME=ch05_lora_vs_qlora` (about 2 min on 2 cores).
"""

from __future__ import annotations

import warnings

import torch

from course_lib.sweeps import SweepSpec

ARMS = ("LoRA (fp32 base)", "QLoRA (NF4 base)")
CONFIG = dict(
    task="new_facts: 120 statements of 80 facts; probes in the trained phrasing and a paraphrase",
    lora=dict(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0),
    train=dict(lr=5e-3, max_steps=150, warmup_steps=15, batch_size=16),
    qlora_base=dict(quant_type="nf4", double_quant=True, compute_dtype="float32"),
    gradient_checkpointing=False,
    seed_controls="torch.manual_seed(seed) before the adapters are made; batch order seed",
)


def load_base(arm: str, device: str = "cpu"):
    """The frozen base of an arm: the fp32 model, or the NF4 + DQ model prepared for k-bit training."""
    from peft import prepare_model_for_kbit_training

    from course_lib.models import load_model

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {ARMS}")
    if arm == ARMS[0]:
        return load_model("causal", device=device)
    model, tok = load_model("4bit", device=device)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), tok


def run(arm: str, seed: int) -> dict[str, float]:
    """Train one arm with one seed; probe accuracies, loss on the statements, training seconds."""
    from peft import LoraConfig, get_peft_model

    from course_lib.data import load_jsonl
    from course_lib.evaluation import accuracy, choose_many, cross_entropy
    from course_lib.training import TrainConfig, text_batches, train

    warnings.filterwarnings("ignore", category=FutureWarning)
    facts = load_jsonl("new_facts")
    statements = [s for f in facts for s in f["statements"]]
    base, tok = load_base(arm)
    torch.manual_seed(seed)  # the adapters' initialisation
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **CONFIG["lora"]))
    t = CONFIG["train"]
    cfg = TrainConfig(
        lr=t["lr"], max_steps=t["max_steps"], warmup_steps=t["warmup_steps"], progress=False
    )
    hist = train(model, text_batches(tok, statements, t["batch_size"], seed=seed), cfg)
    answers = [f["answer"] for f in facts]
    out = {}
    for kind in ("probe_seen", "probe_paraphrase"):
        picks = choose_many(model, tok, [f[kind] for f in facts], [f["candidates"] for f in facts])
        out[kind] = accuracy(picks, answers)
    out["statement_loss"] = cross_entropy(model, tok, statements)
    out["train_seconds"] = hist.seconds
    return out


_SPECS = [
    SweepSpec(
        name="ch05_lora_vs_qlora",
        what="LoRA on the fp32 base vs QLoRA on the NF4 + DQ base: 80 new facts, 150 steps, 5 seeds",
        run=run,
        arms=ARMS,
        seeds=(0, 1, 2, 3, 4),
        config=CONFIG,
        code_files=(
            "build/sweeps_ch05.py",
            "training.py",
            "evaluation.py",
            "models.py",
            "qlora.py",
        ),
        chapter="05",
        check_arms=(ARMS[1],),
        rel_tol=0.02,
        abs_tol=0.04,  # accuracies on 80 facts: a tie may flip with the thread count (3 facts = 0.0375)
    )
]
# Registered once data/sweeps/ch05_lora_vs_qlora.json is built (the build is queued).
SWEEPS: list[SweepSpec] = _SPECS
