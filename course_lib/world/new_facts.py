"""The new_facts dataset: facts about people of whom the corpus says nothing.

Taught in chapter 01 (facts in the prompt vs facts in the weights) and chapter 08
(knowledge injection). Each fact has training statements in some phrasings and
probes in a seen phrasing, an unseen paraphrase, and a question.
"""

from __future__ import annotations

from course_lib.world.documents import FACT_FORMS, fact_sentence, fact_statement
from course_lib.world.entities import (
    FACT_ATTRIBUTES,
    FEMALE_NAMES,
    FOODS,
    PET_NAMES,
    PETS,
    PROFESSIONS,
    VISITOR_FIRST_NAMES,
    VISITOR_SURNAMES,
    Chooser,
    Person,
    World,
    attribute_values,
)
from course_lib.world.instructions import FACT_QUESTIONS


def new_fact_records(w: World) -> list[dict]:
    """One record per (new person, attribute): statements to learn and probes to test."""
    records = []
    for p in w.new_people:
        for attr in FACT_ATTRIBUTES:
            n_forms = len(FACT_FORMS[attr])
            train_forms = list(range(n_forms - 1))  # the last form is held out
            statements = [" ".join(fact_statement(p, attr, f)) for f in train_forms]
            seen_prefix, _ = fact_statement(p, attr, 0)
            para_prefix, _ = fact_statement(p, attr, n_forms - 1)
            records.append(
                {
                    "person": p.name,
                    "attribute": attr,
                    "answer": p.fact(attr),
                    "statements": statements,
                    "probe_seen": seen_prefix,
                    "probe_paraphrase": para_prefix,
                    "question": FACT_QUESTIONS[attr][0].format(name=p.name),
                    "candidates": attribute_values(attr, w),
                }
            )
    return records


def random_visitor(ch: Chooser, w: World, taken: set[str]) -> Person:
    """A visitor with freshly drawn facts and a name that is not in `taken`."""
    while True:
        first = ch.choice(VISITOR_FIRST_NAMES)
        name = f"{first} {ch.choice(VISITOR_SURNAMES)}"
        if name not in taken:
            break
    return Person(
        name=name,
        pronoun="she" if first in FEMALE_NAMES else "he",
        town=ch.choice(w.towns),
        profession=ch.choice(PROFESSIONS),
        pet=ch.choice(PETS),
        pet_name=ch.choice(PET_NAMES),
        food=ch.choice(FOODS),
    )


def context_qa_records(ch: Chooser, w: World, n: int) -> list[dict]:
    """Reading-comprehension chat records: a note on two visitors, then a question on one of them.

    The facts are drawn afresh, so the answer is only in the note: SFT on these teaches the model
    to use facts given in the prompt (chapter 08, knowledge injection). The new_facts people's
    names are never used, so these records leak nothing about them.
    """
    taken = {p.name for p in w.new_people}
    out = []
    for _ in range(n):
        target = random_visitor(ch, w, taken)
        other = random_visitor(ch, w, taken | {target.name})
        attrs = ch.sample(list(FACT_ATTRIBUTES), 2)
        sentences = [fact_sentence(ch, target, a) for a in attrs]
        sentences.append(fact_sentence(ch, other, ch.choice(list(FACT_ATTRIBUTES))))
        note = " ".join(ch.shuffled(sentences))
        attr = ch.choice(attrs)
        question = ch.choice(FACT_QUESTIONS[attr]).format(name=target.name)
        answer = target.fact(attr)
        out.append(
            {
                "skill": "context",
                "context": note,
                "question": question,
                "output": answer,
                "messages": [
                    {"role": "user", "content": f"{note}\n{question}"},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    return out
