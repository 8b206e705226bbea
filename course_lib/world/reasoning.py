"""Multi-step arithmetic with the working shown, and its verifier: the reasoning task of chapter 14.

A question chains two or three additions and subtractions of small numbers ("What is 7 plus 5
minus 3?"); a worked answer states every intermediate result, then the final one ("7 plus 5 is
12. 12 minus 3 is 9. The answer is 9."). The verifier reads only the final answer, as RLVR
verifiers do; `working_is_valid` checks the steps too, to see whether correct answers come from
correct working, and `fully_correct` (both) is the step-checking verifier RL can be rewarded by.
Prompts are generated in code, seeded (no data file). Taught in chapter 14.
"""

from __future__ import annotations

import random
import re
from typing import Collection

OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b}
QUESTION = re.compile(r"What is (\d+(?: (?:plus|minus) \d+)+)\?")
FINAL = re.compile(r"answer is (-?\d+)")
STEP = re.compile(r"(-?\d+) (plus|minus) (\d+) is (-?\d+)")


def question(rng: random.Random, steps: int = 2, largest: int = 9) -> str:
    """A chained question of `steps` operations on numbers 1..largest, never going below 0."""
    if steps < 1 or largest < 2:
        raise ValueError(f"need steps >= 1 and largest >= 2, got {steps}, {largest}")
    value = rng.randint(1, largest)
    words = [str(value)]
    for _ in range(steps):
        b = rng.randint(1, largest)
        op = "minus" if value - b >= 0 and rng.random() < 0.5 else "plus"
        value = OPS[op](value, b)
        words += [op, str(b)]
    return f"What is {' '.join(words)}?"


def parse(prompt: str) -> tuple[int, list[tuple[str, int]]]:
    """(first number, [(op, number), …]) of a chained question; ValueError if it is not one."""
    m = QUESTION.fullmatch(prompt.strip())
    if m is None:
        raise ValueError(f"not a chained arithmetic question: {prompt!r}")
    tokens = m.group(1).split()
    return int(tokens[0]), [(tokens[i], int(tokens[i + 1])) for i in range(1, len(tokens), 2)]


def worked_answer(prompt: str) -> str:
    """The answer with its working: one sentence per step, then 'The answer is N.'."""
    value, ops = parse(prompt)
    sentences = []
    for op, b in ops:
        new = OPS[op](value, b)
        sentences.append(f"{value} {op} {b} is {new}.")
        value = new
    return " ".join(sentences + [f"The answer is {value}."])


def solve(prompt: str) -> int:
    """The true result of a chained question."""
    value, ops = parse(prompt)
    for op, b in ops:
        value = OPS[op](value, b)
    return value


def final_answer(response: str) -> int | None:
    """The number after the last 'answer is' in a response, or None."""
    found = FINAL.findall(response)
    return int(found[-1]) if found else None


def is_correct(prompt: str, response: str) -> bool:
    """The verifier: the final answer equals the true result (the working is not checked)."""
    return final_answer(response) == solve(prompt)


def fully_correct(prompt: str, response: str) -> bool:
    """The process verifier: the final answer is right and so is every step of the working."""
    return is_correct(prompt, response) and working_is_valid(prompt, response)


def working_is_valid(prompt: str, response: str) -> bool:
    """Every step of the working is right and they follow the question in order."""
    value, ops = parse(prompt)
    steps = STEP.findall(response)
    if len(steps) != len(ops):
        return False
    for (a, op, b, result), (want_op, want_b) in zip(steps, ops):
        if (int(a), op, int(b)) != (value, want_op, want_b) or int(result) != OPS[op](
            value, want_b
        ):
            return False
        value = int(result)
    return True


def questions(
    n: int, seed: int, steps: int = 2, largest: int = 9, exclude: Collection[str] = ()
) -> list[str]:
    """n distinct chained questions, seeded, none of them in `exclude` (e.g. a held-out set)."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    banned = set(exclude)
    for _ in range(50 * n):
        q = question(rng, steps, largest)
        if q not in banned:
            out.setdefault(q)
        if len(out) == n:
            return list(out)
    raise ValueError(f"could not find {n} distinct questions with steps={steps}, largest={largest}")


def records(
    n: int, seed: int, steps: int = 2, largest: int = 9, exclude: Collection[str] = ()
) -> list[dict]:
    """SFT records (chat messages) of worked answers, none of whose questions is in `exclude`."""
    return [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": worked_answer(q)},
            ]
        }
        for q in questions(n, seed, steps, largest, exclude)
    ]
