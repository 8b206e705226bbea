"""Seed sweep of chapter 16 (COURSE_DESIGN §10), shipped in data/sweeps/ and placed by the lesson.

* `ch16_rag_vs_ft`: chapter 01's fact fine-tune (the 80 new facts' statements, lr 1e-3, the rate
  chapter 01 chose on its dev people) for 40 or 160 steps × 3 data orders; each tuned model then
  answers the probes alone, after BM25's top-1 or top-3 notes, and after the oracle's note: retrieval
  vs fine-tuning vs both, per phrasing, on chapter 01's dev and test people.

Build: `make sweep NAME=ch16_rag_vs_ft`; the file states its build time.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from course_lib.sweeps import SweepSpec

RAG_FT = {"lr": 1e-3, "batch_size": 16, "ks": [1, 3], "dev_people": 10}
RAG_FT_STEPS = {"40 steps": 40, "160 steps": 160}


@lru_cache(maxsize=1)
def _setting():
    from course_lib.data import load_jsonl
    from course_lib.models import load_model
    from course_lib.retrieval import BM25, tokenize, world_notes

    model, tok = load_model("causal")
    notes = world_notes()
    return model, tok, notes, BM25([tokenize(n["text"]) for n in notes]), load_jsonl("new_facts")


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def run_rag_vs_ft(arm: str, seed: int) -> dict[str, float]:
    """Probe accuracy of the fine-tuned model without and with retrieved notes (dev/test people)."""
    import torch

    from course_lib.retrieval import answer_hits, gold_note, retrieved_prompts
    from course_lib.training import TrainConfig, text_batches, train

    model, tok, notes, index, facts = _setting()
    steps = RAG_FT_STEPS[arm]
    torch.manual_seed(seed)
    tuned = copy.deepcopy(model)
    texts = [s for f in facts for s in f["statements"]]
    config = TrainConfig(
        lr=RAG_FT["lr"], max_steps=steps, warmup_steps=max(1, steps // 10), progress=False
    )
    train(tuned, text_batches(tok, texts, RAG_FT["batch_size"], seed=seed), config)
    tuned.eval()
    people = list(dict.fromkeys(f["person"] for f in facts))
    dev = [f["person"] in set(people[: RAG_FT["dev_people"]]) for f in facts]
    out = {}
    for form in ("probe_seen", "probe_paraphrase"):
        kind = form.removeprefix("probe_")
        prompts = {
            f"k{k}": retrieved_prompts(facts, form, index, notes, k) for k in [0] + RAG_FT["ks"]
        }
        prompts["oracle"] = [notes[gold_note(f, notes)]["text"] + " " + f[form] for f in facts]
        for name, ps in prompts.items():
            hits = answer_hits(tuned, tok, facts, ps)
            out[f"dev_{kind}_{name}"] = _mean([h for h, d in zip(hits, dev) if d])
            out[f"test_{kind}_{name}"] = _mean([h for h, d in zip(hits, dev) if not d])
    return out


SWEEPS = [
    SweepSpec(
        name="ch16_rag_vs_ft",
        what="fact fine-tune (40 or 160 steps) then probes alone, after BM25 top-1/top-3 notes, "
        "after the oracle note: retrieval vs fine-tuning vs both",
        run=run_rag_vs_ft,
        arms=tuple(RAG_FT_STEPS),
        seeds=(0, 1, 2),
        config={**RAG_FT, "steps": RAG_FT_STEPS},
        code_files=("retrieval.py", "training.py", "evaluation.py", "build/sweeps_ch16.py"),
        chapter="16",
        check_arms=("40 steps",),
    ),
]


JUDGE = {"pairs_per_seed": 40, "bias_pairs_per_kind": 20, "judge": "smollm2"}
JUDGE_ARMS = ("pairwise", "pointwise", "bias")


@lru_cache(maxsize=1)
def _smollm2():
    from course_lib.models import load_model

    return load_model("smollm2")


def judge_sample(seed: int) -> list[dict]:
    """Sample `seed` of the judge sweep: the seed-th block of 40 gold-ordered test pairs."""
    from course_lib.data import load_jsonl
    from course_lib.judges import gold_pairs

    n = JUDGE["pairs_per_seed"]
    return gold_pairs(load_jsonl("preferences_test"))[seed * n : (seed + 1) * n]


def run_judges(arm: str, seed: int) -> dict[str, float]:
    """SmolLM2 as a judge on one sample of pairs: agreement with the gold reward, position bias
    (pairwise), pointwise with and without the right answer given, and bias on constructed pairs."""
    from course_lib import judges
    from course_lib.world.instructions import solve

    model, tok = _smollm2()

    def both_orders(pairs):
        q, x, y = ([p[k] for p in pairs] for k in ("question", "x", "y"))
        return judges.pairwise_logodds(model, tok, q, x, y), judges.pairwise_logodds(
            model, tok, q, y, x
        )

    if arm == "pairwise":
        pairs = judge_sample(seed)
        ab, ba = both_orders(pairs)
        out = judges.position_bias(ab, ba)
        for name, s in (
            ("x_first", ab),
            ("y_first", -ba),
            ("swapped", judges.swap_and_average(ab, ba)),
        ):
            out[f"agree_{name}"] = _mean(judges.agreement((s > 0).tolist(), pairs))
        return out
    if arm == "pointwise":
        pairs, out = judge_sample(seed), {}
        for name, ref in (("plain", False), ("reference", True)):
            s = {}
            for side in ("x", "y"):
                prompts = [
                    judges.pointwise_prompt(
                        tok, p["question"], p[side], solve(p["question"]) if ref else None
                    )
                    for p in pairs
                ]
                s[side] = judges.verdict_logodds(model, tok, prompts, ("yes", "no"))
            out[f"agree_{name}"] = _mean(judges.agreement((s["x"] > s["y"]).tolist(), pairs))
        return out
    out = {}
    for kind in judges.BIAS_KINDS:
        pairs = judges.bias_pairs(kind, JUDGE["bias_pairs_per_kind"], seed)
        ab, ba = both_orders(pairs)
        for name, s in (
            ("x_first", ab),
            ("y_first", -ba),
            ("swapped", judges.swap_and_average(ab, ba)),
        ):
            out[f"{kind}_picks_worse_{name}"] = _mean([float(v > 0) for v in s])
    return out


SWEEPS.append(
    SweepSpec(
        name="ch16_judges",
        what="SmolLM2-135M-Instruct as a judge: 3 disjoint samples of 40 test pairs (pairwise in "
        "both orders, pointwise with and without the right answer) and 20 constructed verbosity / "
        "politeness pairs per seed",
        run=run_judges,
        arms=JUDGE_ARMS,
        seeds=(0, 1, 2),
        config=JUDGE,
        code_files=("judges.py", "build/sweeps_ch16.py"),
        chapter="16",
        check_arms=("pairwise",),
    )
)
