"""One call that scores a causal language model (or a peft-wrapped one) on every course task.

Taught in chapter 10 (evaluation); chapter 12 uses it to put every method in one table.
Tasks: general-text and clinic cross-entropy (lower is better), exact match on held-out
instructions per skill, new-fact recall in the trained and a paraphrased phrasing (multiple
choice by log-probability), and the mean gold reward of greedy answers to preference prompts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from course_lib.data import load_jsonl
from course_lib.evaluation import accuracy, choose_many, cross_entropy
from course_lib.generation import generate
from course_lib.sft import exact_match_by_skill
from course_lib.world.preferences import gold_reward


def fact_recall(model, tokenizer, facts: list[dict], phrasing: str = "seen") -> float:
    """Share of new facts whose answer the model ranks first after the probe ('seen' or 'paraphrase')."""
    if phrasing not in ("seen", "paraphrase"):
        raise ValueError(f"phrasing must be 'seen' or 'paraphrase', got {phrasing!r}")
    prompts = [f[f"probe_{phrasing}"] for f in facts]
    return accuracy(
        choose_many(model, tokenizer, prompts, [f["candidates"] for f in facts]),
        [f["answer"] for f in facts],
    )


def mean_gold_reward(model, tokenizer, prompts: list[str], max_new_tokens: int = 100) -> float:
    """The gold reward of the model's greedy answers, averaged over the prompts (chapter 10).

    100 new tokens, as chapter 09 evaluates: room for the longest training answer (98 tokens), so
    that an answer is judged complete rather than cut (a 24-token budget used to truncate)."""
    replies = generate(model, tokenizer, prompts, chat=True, max_new_tokens=max_new_tokens)
    return sum(gold_reward(p, r) for p, r in zip(prompts, replies)) / len(prompts)


def stratified(records: Sequence[dict], n: int, key: str = "skill") -> list[dict]:
    """n records (all if there are fewer) taken in turn from each `key` group, in file order within
    a group: every group is present as soon as n ≥ the number of groups, and the groups stay balanced."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if any(key not in r for r in records):
        raise ValueError(
            f"every record needs the key {key!r} to stratify by (e.g. 'skill', 'attribute')"
        )
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r[key]].append(r)
    picked: list[dict] = []
    while len(picked) < min(n, len(records)):
        for group in groups.values():  # one round: the next record of every group with one left
            if group and len(picked) < n:
                picked.append(group.pop(0))
    if n >= len(groups):
        missing = set(groups) - {r[key] for r in picked}
        assert not missing, f"stratified subset lost the groups {sorted(missing)}"
    return picked


def evaluate_all(model, tokenizer, n: int = 100) -> dict[str, float]:
    """Every course task on `n` held-out examples of each (`n` ≥ 5); returns a flat dict of scores.

    The instructions are a skill-stratified subset (the test file is sorted by skill, so its first
    `n` would be fact questions only) and the new facts an attribute-stratified one; both assert that
    every group is present. The other files are in random order and are cut at `n`.
    """
    if not isinstance(n, int) or n < 5:
        raise ValueError(f"n must be an int >= 5 (examples per task), got {n!r}")
    scores = {
        "general CE": cross_entropy(
            model, tokenizer, [r["text"] for r in load_jsonl("corpus_val")[:n]]
        ),
        "clinic CE": cross_entropy(
            model, tokenizer, [r["text"] for r in load_jsonl("clinic_val")[:n]]
        ),
    }
    instructions = load_jsonl("instructions_test")
    subset = stratified(instructions, n)
    skills = {r["skill"] for r in instructions}
    assert {r["skill"] for r in subset} == skills, "every skill must be scored for every n >= 5"
    em = exact_match_by_skill(model, tokenizer, subset)
    scores.update({f"EM {skill}": value for skill, value in em.items()})
    all_facts = load_jsonl("new_facts")
    facts = stratified(all_facts, n, key="attribute")  # towns, professions, pets, foods in turn
    assert {f["attribute"] for f in facts} == {f["attribute"] for f in all_facts}, (
        "every fact attribute must be probed for every n >= 5"
    )
    scores["facts seen"] = fact_recall(model, tokenizer, facts, "seen")
    scores["facts paraphrase"] = fact_recall(model, tokenizer, facts, "paraphrase")
    scores["gold reward"] = mean_gold_reward(model, tokenizer, held_out_questions(n))
    return scores


def held_out_questions(n: int) -> list[str]:
    """The first n distinct questions of preferences_test that no training pair asks (chapter 10).

    About a third of the test pairs' prompts also occur in preferences_train; scoring those would
    measure recall of training questions (chapter 09 deduplicates the same way)."""
    seen = {r["prompt"] for r in load_jsonl("preferences_train")}
    fresh = [p for p in dict.fromkeys(r["prompt"] for r in load_jsonl("preferences_test"))]
    fresh = [p for p in fresh if p not in seen]
    if not isinstance(n, int) or not 0 < n <= len(fresh):
        raise ValueError(f"n must be an int in [1, {len(fresh)}] (held-out questions), got {n!r}")
    return fresh[:n]
