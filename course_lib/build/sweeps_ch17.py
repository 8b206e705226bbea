"""Chapter 17's seed sweeps: rejection-sampling fine-tuning (STaR) against SFT on the generator's
data and a contaminated set; logit distillation against SFT on teacher samples; merges of LoRA
task adapters against the single adapters and a multi-task run.

Hyper-parameters are chapter 08's recipe (`sft.train_sft`: packed rows of 128 tokens, 8 rows a step,
warm-up + cosine, clipping at 1.0) at one untuned setting per experiment, stated in each config;
nothing is selected on the numbers reported. Built by `make sweep NAME=<name>`; taught in chapter 17.
"""

from __future__ import annotations

import copy
import random
from functools import lru_cache

from course_lib.sweeps import SweepSpec

SEEDS = (0, 1, 2)

# --- 1. synthetic data: rejection sampling, STaR, contamination -----------------------------
STAR = dict(pool=400, heldout=200, n=8, temperature=1.0, steps=30, lr=1e-3, rows_per_batch=8)
STAR_ARMS = (
    "policy (no training)",
    "self, verified (STaR)",
    "self, unfiltered",
    "generator (gold)",
    "generator + test leak",
)


@lru_cache(maxsize=1)
def star_setting():
    """Chapter 09's SFT policy, the arithmetic test prompts, a sampling pool of questions from the
    policy's own training prompts (as STaR samples its training set), and a held-out set of questions
    it never saw (in no instruction or preference split)."""
    from course_lib.data import load_jsonl
    from course_lib.models import load_model
    from course_lib.sft import user_text
    from course_lib.synthetic import all_arithmetic_prompts

    policy, tok = load_model("sft_policy")
    test = [r for r in load_jsonl("instructions_test") if r["skill"] == "arithmetic"]
    test_prompts = {user_text(r) for r in test}
    trained = {r["prompt"] for r in load_jsonl("preferences_train")}
    seen = trained | {r["prompt"] for r in load_jsonl("preferences_test")}
    seen |= {user_text(r) for s in ("train", "val") for r in load_jsonl(f"instructions_{s}")}
    space = all_arithmetic_prompts()
    pool = [qa for qa in space if qa[0] in trained and qa[0] not in test_prompts]
    unseen = [qa for qa in space if qa[0] not in seen | test_prompts]
    random.Random(17).shuffle(pool)
    random.Random(18).shuffle(unseen)
    return policy, tok, test, pool[: STAR["pool"]], unseen[: STAR["heldout"]]


@lru_cache(maxsize=3)
def star_samples(seed: int):
    """n samples per pool prompt from the policy, judged by the verifier."""
    from course_lib.synthetic import rejection_sample

    policy, tok, _, pool, _ = star_setting()
    return rejection_sample(
        policy, tok, [q for q, _ in pool], n=STAR["n"], temperature=STAR["temperature"], seed=seed
    )


def star_records(arm: str, seed: int) -> list[dict]:
    """The training set of an arm; every arm but the untrained policy has as many records as STaR accepted."""
    from course_lib.world.instructions import make_record

    _, _, test, pool, _ = star_setting()
    sampled = star_samples(seed)
    accepted = sampled.accepted()
    k = len(accepted)
    rng = random.Random(seed)
    if arm == "self, verified (STaR)":
        return accepted
    if arm == "self, unfiltered":
        return sampled.unfiltered(k, seed)
    gold = [make_record("arithmetic", q, "", a) for q, a in rng.sample(pool, k)]
    if arm == "generator (gold)":
        return gold
    if arm == "generator + test leak":
        return gold[: max(k - len(test), 0)] + [copy.deepcopy(r) for r in test[:k]]
    raise ValueError(f"unknown arm {arm!r}; arms are {STAR_ARMS}")


def run_star(arm: str, seed: int) -> dict[str, float]:
    """Train the policy on an arm's records; verified accuracy on the held-out and test prompts."""
    from course_lib.sft import train_sft, user_text
    from course_lib.synthetic import decontaminate, verified_accuracy

    policy, tok, test, pool, heldout = star_setting()
    sampled = star_samples(seed)
    out = {
        "sample_accuracy": sampled.sample_accuracy,
        "pass_at_n": sampled.pass_at_n,
        "accepted": len(sampled.accepted()),
    }
    model = policy
    if arm != "policy (no training)":
        records = star_records(arm, seed)
        kept, removed = decontaminate(records, [user_text(r) for r in test])
        out["removed_by_decontamination"] = removed
        model, _ = train_sft(
            policy,
            tok,
            records,
            lr=STAR["lr"],
            steps=STAR["steps"],
            rows_per_batch=STAR["rows_per_batch"],
            seed=seed,
        )
    out["heldout_accuracy"] = verified_accuracy(model, tok, [q for q, _ in heldout])
    out["test_accuracy"] = verified_accuracy(model, tok, [user_text(r) for r in test])
    return out


# --- 2. distillation -------------------------------------------------------------------------
DISTILL = dict(keep_layers=[0, 2], steps=80, lr=2e-3, rows_per_batch=8, alpha=0.0)
DISTILL_ARMS = ("SFT on gold", "SFT on teacher samples", "logit KD T=1", "logit KD T=2")


@lru_cache(maxsize=1)
def distill_setting():
    """Teacher (chat model), a 2-layer student cut from the base model, the data and the teacher's
    greedy replies to the training and test prompts."""
    from course_lib.data import load_jsonl
    from course_lib.distillation import drop_layers
    from course_lib.generation import generate
    from course_lib.models import load_model
    from course_lib.sft import user_text
    from course_lib.world.instructions import make_record

    teacher, tok = load_model("chat")
    base, _ = load_model("causal")
    student = drop_layers(base, DISTILL["keep_layers"])
    train = load_jsonl("instructions_train")
    test = load_jsonl("instructions_test")
    replies = generate(teacher, tok, [user_text(r) for r in train], chat=True, max_new_tokens=32)
    teacher_train = [
        make_record(r["skill"], r["instruction"], r["input"], y) for r, y in zip(train, replies)
    ]
    teacher_test = generate(
        teacher, tok, [user_text(r) for r in test], chat=True, max_new_tokens=32
    )
    return teacher, student, tok, train, teacher_train, test, teacher_test


def run_distill(arm: str, seed: int) -> dict[str, float]:
    """One student trained by an arm; its test exact match, agreement with the teacher, response CE."""
    from course_lib.distillation import response_loss, train_distill
    from course_lib.evaluation import exact_match
    from course_lib.generation import generate
    from course_lib.sft import exact_match_by_skill, user_text

    teacher, student, tok, train, teacher_train, test, teacher_test = distill_setting()
    common = dict(
        lr=DISTILL["lr"], steps=DISTILL["steps"], rows_per_batch=DISTILL["rows_per_batch"]
    )
    if arm == "SFT on gold":
        model, _ = train_distill(student, teacher, tok, train, method="sft", seed=seed, **common)
    elif arm == "SFT on teacher samples":
        model, _ = train_distill(
            student, teacher, tok, teacher_train, method="sft", seed=seed, **common
        )
    elif arm.startswith("logit KD T="):
        t = float(arm.split("=", 1)[1])
        model, _ = train_distill(
            student,
            teacher,
            tok,
            train,
            method="logit_kd",
            temperature=t,
            seed=seed,
            alpha=DISTILL["alpha"],
            **common,
        )
    else:
        raise ValueError(f"unknown arm {arm!r}; arms are {DISTILL_ARMS}")
    em = exact_match_by_skill(model, tok, test)
    replies = generate(model, tok, [user_text(r) for r in test], chat=True, max_new_tokens=32)
    out = {f"test_em_{k}": v for k, v in em.items()}
    out["agreement_with_teacher"] = exact_match(replies, teacher_test)
    out["response_ce"] = response_loss(model, tok, test)
    return out


# --- 3. merging ------------------------------------------------------------------------------
TASKS = ("rewrite", "classify", "arithmetic")
MERGE = dict(rank=8, lr=1e-2, steps=40, rows_per_batch=8, weights=1.0, density=0.5)
MERGE_ARMS = (
    "base",
    "single adapters",
    "multi-task",
    "task arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
)


@lru_cache(maxsize=1)
def merge_setting():
    """The base model and the train/test records of each task."""
    from course_lib.data import load_jsonl
    from course_lib.models import load_model

    base, tok = load_model("causal")
    train, test = load_jsonl("instructions_train"), load_jsonl("instructions_test")
    by = lambda rows, t: [r for r in rows if r["skill"] == t]  # noqa: E731
    return base, tok, {t: by(train, t) for t in TASKS}, {t: by(test, t) for t in TASKS}


@lru_cache(maxsize=3)
def task_adapters(seed: int):
    """One LoRA adapter per task (its task vector) and the multi-task adapter (3x the steps)."""
    from course_lib.merging import lora_task_vectors
    from course_lib.sft import train_sft

    base, tok, train, _ = merge_setting()
    kw = dict(method="lora", lora_rank=MERGE["rank"], lr=MERGE["lr"], seed=seed)
    kw["rows_per_batch"] = MERGE["rows_per_batch"]
    vectors = {}
    for t in TASKS:
        model, _ = train_sft(base, tok, train[t], steps=MERGE["steps"], **kw)
        vectors[t] = lora_task_vectors(model, "default")
    mixed = [r for t in TASKS for r in train[t]]
    multi, _ = train_sft(base, tok, mixed, steps=MERGE["steps"] * len(TASKS), **kw)
    return vectors, lora_task_vectors(multi, "default")


def merge_scores(model, tok, test) -> dict[str, float]:
    """Response CE and exact match on each task's test records."""
    from course_lib.distillation import response_loss
    from course_lib.sft import exact_match_by_skill

    out = {}
    for t in TASKS:
        out[f"ce_{t}"] = response_loss(model, tok, test[t])
        out[f"em_{t}"] = exact_match_by_skill(model, tok, test[t])["all"]
    return out


def run_merge(arm: str, seed: int) -> dict[str, float]:
    """Scores of the base, each single adapter on its own task, the multi-task adapter, or a merge."""
    import torch

    from course_lib.merging import add_task_vector, merge_task_vectors

    base, tok, _, test = merge_setting()
    prefix = "base_model.model."
    if arm == "base":
        return merge_scores(base, tok, test)
    vectors, multi = task_adapters(seed)
    if arm == "single adapters":
        out = {}
        for t in TASKS:
            scores = merge_scores(
                add_task_vector(copy.deepcopy(base), vectors[t], prefix), tok, test
            )
            out.update({k: v for k, v in scores.items() if k.endswith(t)})
        return out
    if arm == "multi-task":
        return merge_scores(add_task_vector(copy.deepcopy(base), multi, prefix), tok, test)
    method = {"task arithmetic": "task_arithmetic"}.get(arm, arm)
    if method not in ("task_arithmetic", "ties", "dare_linear", "dare_ties"):
        raise ValueError(f"unknown arm {arm!r}; arms are {MERGE_ARMS}")
    torch.manual_seed(seed)  # DARE's masks
    merged = merge_task_vectors(
        method, [vectors[t] for t in TASKS], [MERGE["weights"]] * len(TASKS), MERGE["density"]
    )
    return merge_scores(add_task_vector(copy.deepcopy(base), merged, prefix), tok, test)


SWEEPS = [
    SweepSpec(
        name="ch17_star",
        what="rejection-sampling fine-tuning of chapter 09's SFT policy on its own verified arithmetic "
        "answers vs unfiltered samples, the generator's gold data, and gold data with the test leaked",
        run=run_star,
        arms=STAR_ARMS,
        seeds=SEEDS,
        config={
            **STAR,
            "model": "sft_policy (data/rlhf/sft_policy)",
            "verifier": "preferences.is_correct",
            "selection": "none: one untuned setting",
        },
        code_files=("synthetic.py", "sft.py", "generation.py", "build/sweeps_ch17.py"),
        chapter="17",
        check_arms=("policy (no training)",),
        rel_tol=0.1,
        abs_tol=0.04,
    ),
    SweepSpec(
        name="ch17_distill",
        what="teacher (chat) -> 2-layer student cut from the base model: SFT on gold, SFT on "
        "teacher samples (sequence-level KD), logit KD at T=1 and T=2, same steps and batches",
        run=run_distill,
        arms=DISTILL_ARMS,
        seeds=SEEDS,
        config={
            **DISTILL,
            "teacher": "chat",
            "student": "base model, layers [0, 2]",
            "selection": "none: one untuned setting",
        },
        code_files=("distillation.py", "sft.py", "training.py", "build/sweeps_ch17.py"),
        chapter="17",
        check_arms=("SFT on gold",),
        rel_tol=0.1,
        abs_tol=0.04,
    ),
    SweepSpec(
        name="ch17_merging",
        what="LoRA task adapters (rewrite, classify, arithmetic) merged by task arithmetic, TIES, "
        "DARE vs each single adapter and a multi-task adapter with the summed steps",
        run=run_merge,
        arms=MERGE_ARMS,
        seeds=SEEDS,
        config={
            **MERGE,
            "tasks": list(TASKS),
            "multi_task_steps": MERGE["steps"] * len(TASKS),
            "selection": "none: weights 1, density 0.5, untuned",
        },
        code_files=("merging.py", "sft.py", "distillation.py", "build/sweeps_ch17.py"),
        chapter="17",
        check_arms=("base",),
        rel_tol=0.05,
        abs_tol=0.02,
    ),
]
