"""Seed sweeps of chapter 01 (COURSE_DESIGN §10), shipped in data/sweeps/ and placed by the lesson.

* `ch01_fact_injection`: fine-tuning the 80 new facts, accuracy over training steps for three
  learning rates × 3 data orders; the learning rate is chosen on the dev people, the curve is
  reported on the test people; the cost in general loss and in recall of the corpus's facts.
* `ch01_classifier_lr`: the review classifier's learning rate, chosen on reviews_val and
  reported on reviews_test, × 3 seeds (head initialisation and data order).
* `ch01_clinic`: the clinic fine-tune of section 4 (gain on clinic notes, forgetting of the
  general corpus) × 3 data orders.

Build: `make sweep NAME=ch01_fact_injection` (etc.); each file states its build time.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from course_lib.sweeps import SweepSpec

FACT_STEPS = (20, 40, 80, 160)
COST_STEPS = (40, 160)  # where the general loss and old-fact recall are measured
FACT_LRS = {"lr=3e-4": 3e-4, "lr=1e-3": 1e-3, "lr=3e-3": 3e-3}
CLF_LRS = {"lr=1e-4": 1e-4, "lr=5e-4": 5e-4, "lr=2e-3": 2e-3}
CLF_STEPS = 100
CLINIC = {"lr": 1e-3, "max_steps": 60, "warmup_steps": 6, "batch_size": 16}


@lru_cache(maxsize=1)
def _base():
    from course_lib.models import load_model

    return load_model("causal")


@lru_cache(maxsize=1)
def _general_texts() -> tuple[str, ...]:
    from course_lib.world.datasets import corpus_documents

    return tuple(d["text"] for d in corpus_documents("val", 100))


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def run_fact_injection(arm: str, seed: int) -> dict[str, float]:
    """Accuracy of the fact fine-tune at each checkpoint (dev/test people × seen/paraphrase)."""
    from course_lib.data import load_jsonl
    from course_lib.fact_injection import injection_curve

    model, tok = _base()
    facts = load_jsonl("new_facts")
    texts = [s for f in facts for s in f["statements"]]
    curve = injection_curve(
        model,
        tok,
        texts,
        facts,
        FACT_LRS[arm],
        FACT_STEPS,
        seed,
        general_texts=_general_texts(),
        cost_at=COST_STEPS,
    )
    people = list(dict.fromkeys(f["person"] for f in facts))
    dev = [f["person"] in set(people[:10]) for f in facts]
    out = {}
    for step, rec in curve.items():
        for kind in ("seen", "paraphrase"):
            hits = rec[kind]
            out[f"dev_{kind}_{step}"] = _mean([h for h, d in zip(hits, dev) if d])
            out[f"test_{kind}_{step}"] = _mean([h for h, d in zip(hits, dev) if not d])
        if step in COST_STEPS:
            out[f"general_loss_{step}"] = rec["general_loss"]
            out[f"old_fact_recall_{step}"] = rec["old_fact_recall"]
    return out


def run_classifier(arm: str, seed: int) -> dict[str, float]:
    """Review classifier fine-tuned CLF_STEPS steps at one learning rate: val and test accuracy."""
    from course_lib.classification import label_batches, predict_labels
    from course_lib.data import load_jsonl
    from course_lib.evaluation import accuracy
    from course_lib.models import load_model
    from course_lib.training import TrainConfig, train

    clf, tok = load_model("classifier")  # the head is drawn from torch's seed (set per run)
    train_rows = load_jsonl("reviews_train")
    config = TrainConfig(
        lr=CLF_LRS[arm], max_steps=CLF_STEPS, warmup_steps=CLF_STEPS // 10, progress=False
    )
    train(clf, label_batches(tok, train_rows, batch_size=32, seed=seed), config)
    out = {}
    for split in ("val", "test"):
        rows = load_jsonl(f"reviews_{split}")
        pred = predict_labels(clf, tok, [r["text"] for r in rows])
        out[f"{split}_accuracy"] = accuracy(pred, [r["label"] for r in rows])
    return out


def run_clinic(arm: str, seed: int) -> dict[str, float]:
    """Clinic-notes fine-tune: clinic and general loss (nats/token) before and after."""
    from course_lib.data import load_jsonl
    from course_lib.evaluation import cross_entropy
    from course_lib.training import TrainConfig, text_batches, train

    model, tok = _base()
    clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
    clinic_val = [r["text"] for r in load_jsonl("clinic_val")]
    general = list(_general_texts())
    tuned = copy.deepcopy(model)
    config = TrainConfig(
        lr=CLINIC["lr"],
        max_steps=CLINIC["max_steps"],
        warmup_steps=CLINIC["warmup_steps"],
        progress=False,
    )
    train(tuned, text_batches(tok, clinic_train, CLINIC["batch_size"], seed=seed), config)
    return {
        "clinic_loss": cross_entropy(tuned, tok, clinic_val),
        "general_loss": cross_entropy(tuned, tok, general),
    }


SWEEPS = [
    SweepSpec(
        name="ch01_fact_injection",
        what="full fine-tune on the 80 new facts' statements: probe accuracy over steps, "
        "general loss and corpus-fact recall, per learning rate",
        run=run_fact_injection,
        arms=tuple(FACT_LRS),
        seeds=(0, 1, 2),
        config={
            "steps": list(FACT_STEPS),
            "cost_steps": list(COST_STEPS),
            "lrs": FACT_LRS,
            "batch_size": 16,
            "dev_people": 10,
        },
        code_files=("fact_injection.py", "training.py", "evaluation.py", "build/sweeps_ch01.py"),
        chapter="01",
        check_arms=("lr=1e-3",),
        abs_tol=0.051,  # one fact of 40 may flip between 1 and 2 torch threads
    ),
    SweepSpec(
        name="ch01_classifier_lr",
        what="review classifier, 100 steps: accuracy on reviews_val (to choose) and reviews_test",
        run=run_classifier,
        arms=tuple(CLF_LRS),
        seeds=(0, 1, 2),
        config={
            "steps": CLF_STEPS,
            "lrs": CLF_LRS,
            "batch_size": 32,
            "warmup_steps": CLF_STEPS // 10,
        },
        code_files=("classification.py", "training.py", "build/sweeps_ch01.py"),
        chapter="01",
        check_arms=("lr=5e-4",),
    ),
    SweepSpec(
        name="ch01_clinic",
        what="clinic-notes fine-tune of section 4: clinic and general loss after 60 steps",
        run=run_clinic,
        arms=("lr=1e-3",),
        seeds=(0, 1, 2),
        config=CLINIC,
        code_files=("training.py", "evaluation.py", "build/sweeps_ch01.py"),
        chapter="01",
    ),
]
