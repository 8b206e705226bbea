"""Instruction data (SFT) over five skills, and a solver that knows every answer.

Taught in chapter 02 (formats), chapter 08 (instruction tuning) and chapter 09
(the prompts that the policy answers and the gold reward scores).
"""

from __future__ import annotations

import re

from course_lib.world.documents import DAYS, review_text
from course_lib.world.entities import FACT_ATTRIBUTES, Chooser, World, make_world

SKILLS = ("fact", "arithmetic", "rewrite", "classify", "list")

FACT_QUESTIONS = {
    "town": ["Where does {name} live?", "In which town is the home of {name}?"],
    "profession": ["What does {name} do for a living?", "What is the job of {name}?"],
    "pet": ["What kind of pet does {name} have?", "Which animal does {name} keep as a pet?"],
    "food": ["What is the favourite food of {name}?", "Which dish does {name} like best?"],
}
OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
PAST = {
    "walks": "walked",
    "bakes": "baked",
    "paints": "painted",
    "plants": "planted",
    "visits": "visited",
    "cleans": "cleaned",
    "opens": "opened",
    "fixes": "fixed",
    "sells": "sold",
    "buys": "bought",
    "makes": "made",
    "feeds": "fed",
}
OBJECTS = {
    "walks": "to the market",
    "bakes": "a plum cake",
    "paints": "the old fence",
    "plants": "three roses",
    "visits": "the library",
    "cleans": "the kitchen",
    "opens": "the shop",
    "fixes": "the chair",
    "sells": "fresh eggs",
    "buys": "a red lamp",
    "makes": "a pot of soup",
    "feeds": "the goat",
}


def fact_pairs(w: World) -> list[tuple]:
    """Every (person, attribute) pair a fact question can ask about."""
    return [(p, a) for p in w.people for a in FACT_ATTRIBUTES]


def fact_question(ch: Chooser, pairs: list[tuple]) -> tuple[str, str]:
    """A question about one world fact (in one of its phrasings), and its answer."""
    p, attr = ch.choice(pairs)
    return ch.choice(FACT_QUESTIONS[attr]).format(name=p.name), p.fact(attr)


def arithmetic_question(ch: Chooser) -> tuple[str, str]:
    """A sum or difference of numbers up to 40, or a small product."""
    op = ch.choice(list(OPS))
    a, b = ch.randint(2, 40), ch.randint(1, 12)
    if op == "times":
        a = ch.randint(2, 9)
    return f"What is {a} {op} {b}?", str(OPS[op](a, b))


def instruction_example(ch: Chooser, w: World, skill: str, pairs: list[tuple]) -> dict:
    """One instruction/input/output record of the given skill."""
    inp = ""
    if skill == "fact":
        instr, out = fact_question(ch, pairs)
    elif skill == "arithmetic":
        instr, out = arithmetic_question(ch)
    elif skill == "rewrite":
        p = ch.choice(w.people)
        verb = ch.choice(sorted(PAST))
        instr = "Rewrite the sentence in the past tense."
        day = ch.choice(DAYS)
        inp = f"On {day}, {p.first} {verb} {OBJECTS[verb]}."
        out = f"On {day}, {p.first} {PAST[verb]} {OBJECTS[verb]}."
    elif skill == "classify":
        instr = "Is this review positive, negative or neutral?"
        inp, out = review_text(ch, ch.choice(w.products))
    elif skill == "list":
        a = ch.randint(1, 50)
        b = a + ch.randint(2, 6)
        if ch.chance(0.5):
            instr, out = f"List the numbers from {a} to {b}.", ", ".join(map(str, range(a, b + 1)))
        else:
            instr, out = f"Count down from {b} to {a}.", ", ".join(map(str, range(b, a - 1, -1)))
    else:
        raise ValueError(f"unknown skill {skill!r}; use one of {SKILLS}")
    return make_record(skill, instr, inp, out)


def make_record(skill: str, instruction: str, inp: str, output: str) -> dict:
    """An instruction record in both formats: Alpaca-style fields and chat messages."""
    user = instruction if not inp else f"{instruction}\n{inp}"
    return {
        "skill": skill,
        "instruction": instruction,
        "input": inp,
        "output": output,
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": output}],
    }


def solve(prompt: str, world: World | None = None) -> str | None:
    """The correct answer to a fact or arithmetic question, or None if not one."""
    w = world or make_world()
    m = re.fullmatch(r"What is (\d+) (plus|minus|times) (\d+)\?", prompt.strip())
    if m:
        return str(OPS[m.group(2)](int(m.group(1)), int(m.group(3))))
    attr_name = parse_fact_question(prompt)
    if attr_name is None:
        return None
    try:
        return w.person(attr_name[1]).fact(attr_name[0])
    except ValueError:
        return None


def parse_fact_question(prompt: str) -> tuple[str, str] | None:
    """(attribute, person name) if the prompt is one of the fact questions, else None."""
    for attr, templates in FACT_QUESTIONS.items():
        for template in templates:
            m = re.fullmatch(re.escape(template).replace(r"\{name\}", "(.+)"), prompt.strip())
            if m:
                return attr, m.group(1)
    return None
