"""The new_facts dataset: facts about people of whom the corpus says nothing.

Taught in chapter 01 (facts in the prompt vs facts in the weights) and chapter 08
(knowledge injection). Each fact has training statements in some phrasings and
probes in a seen phrasing, an unseen paraphrase, and a question.
"""
from __future__ import annotations

from .instructions import FACT_QUESTIONS
from .text import FACT_FORMS, fact_statement
from .world import FACT_ATTRIBUTES, World, attribute_values


def new_fact_records(w: World) -> list[dict]:
    """One record per (new person, attribute): statements to learn and probes to test."""
    records = []
    for p in w.new_people:
        for attr in FACT_ATTRIBUTES:
            n_forms = len(FACT_FORMS[attr])
            train_forms = list(range(n_forms - 1))        # the last form is held out
            statements = [" ".join(fact_statement(p, attr, f)) for f in train_forms]
            seen_prefix, _ = fact_statement(p, attr, 0)
            para_prefix, _ = fact_statement(p, attr, n_forms - 1)
            records.append({
                "person": p.name, "attribute": attr, "answer": p.fact(attr),
                "statements": statements,
                "probe_seen": seen_prefix, "probe_paraphrase": para_prefix,
                "question": FACT_QUESTIONS[attr][0].format(name=p.name),
                "candidates": attribute_values(attr, w),
            })
    return records
