"""Facts in the prompt vs facts in the weights: probe accuracy, and a fine-tune's accuracy curve
over training steps together with what it costs (general loss, recall of facts it knew).

Taught in chapter 01 (section 6 and its paraphrase-augmentation exercise); the shipped seed
sweep `ch01_fact_injection` (course_lib/build/sweeps_ch01.py) runs `injection_curve`.
"""

from __future__ import annotations

import copy
from typing import Sequence

from course_lib.evaluation import choose_many, cross_entropy
from course_lib.prompting import retrieval_prompt
from course_lib.training import TrainConfig, text_batches, train

PHRASINGS = ("seen", "paraphrase")


def probe_hits(model, tokenizer, facts: Sequence[dict], phrasing: str = "seen", with_facts=False):
    """1/0 per fact: does the model rank the true answer first after the probe? With
    `with_facts` the fact's statements are pasted before the probe (oracle retrieval)."""
    if phrasing not in PHRASINGS:
        raise ValueError(f"phrasing must be one of {PHRASINGS}, got {phrasing!r}")
    if not facts:
        raise ValueError("facts is empty: pass records of data/new_facts.jsonl")
    probes = [f[f"probe_{phrasing}"] for f in facts]
    if with_facts:
        probes = [retrieval_prompt(f["statements"], p) for f, p in zip(facts, probes)]
    picks = choose_many(model, tokenizer, probes, [f["candidates"] for f in facts])
    return [int(p == f["answer"]) for p, f in zip(picks, facts)]


def split_by_person(facts: Sequence[dict], n_dev_people: int = 10) -> tuple[list, list]:
    """(dev, test) facts: the first `n_dev_people` people (in file order) choose hyper-parameters,
    the others are reported. Splitting by person keeps all of one person's facts on one side."""
    people = list(dict.fromkeys(f["person"] for f in facts))
    if not 0 < n_dev_people < len(people):
        raise ValueError(
            f"n_dev_people must be between 1 and {len(people) - 1}, got {n_dev_people}"
        )
    dev_people = set(people[:n_dev_people])
    return [f for f in facts if f["person"] in dev_people], [
        f for f in facts if f["person"] not in dev_people
    ]


def injection_curve(
    model,
    tokenizer,
    texts: Sequence[str],
    facts: Sequence[dict],
    lr: float,
    checkpoints: Sequence[int],
    seed: int = 0,
    batch_size: int = 16,
    general_texts: Sequence[str] | None = None,
    cost_at: Sequence[int] | None = None,
) -> dict[int, dict]:
    """Fine-tune a copy of `model` on `texts` for max(checkpoints) steps (warm-up 10 %, cosine);
    at each checkpoint record the per-fact hits in both phrasings and, if `general_texts` are
    given, at the checkpoints `cost_at` (default: all) the general-domain loss (nats/token) and
    the recall of the corpus's own facts: what the injection costs."""
    from course_lib.build.base_model import corpus_fact_recall

    if not checkpoints or min(checkpoints) < 1:
        raise ValueError(f"checkpoints must be positive step numbers, got {list(checkpoints)}")
    steps = max(checkpoints)
    tuned, curve = copy.deepcopy(model), {}

    def record(m, step):
        if step in checkpoints:
            m.eval()
            curve[step] = {k: probe_hits(m, tokenizer, facts, k) for k in PHRASINGS}
            if general_texts and (cost_at is None or step in cost_at):
                curve[step]["general_loss"] = cross_entropy(m, tokenizer, list(general_texts))
                curve[step]["old_fact_recall"] = corpus_fact_recall(m, tokenizer)
            m.train()

    config = TrainConfig(lr=lr, max_steps=steps, warmup_steps=max(1, steps // 10), progress=False)
    train(
        tuned, text_batches(tokenizer, list(texts), batch_size, seed=seed), config, on_step=record
    )
    return curve
