"""Preference pairs and the programmatic gold reward that labels them.

Taught in chapter 09 (reward models, PPO, DPO, reward hacking). The gold reward
is the truth that RLHF is judged against: correct, helpful, polite, concise.
"""

from __future__ import annotations

import re

from course_lib.world.entities import FACT_ATTRIBUTES, Chooser, World, attribute_values, make_world
from course_lib.world.instructions import FACT_QUESTIONS, fact_question, parse_fact_question, solve

POLITE = ("sure", "happy to help", "glad", "please", "thank")
RUDE = ("obviously", "even a child", "think next time", "silly question")
EVASIVE = ("not sure", "do not know", "ask someone else")
CONCISE_WORDS = 12


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _candidates(prompt: str, w: World) -> list[str]:
    """Every answer a response to this prompt could give, right or wrong."""
    parsed = parse_fact_question(prompt)
    return [] if parsed is None else attribute_values(parsed[0], w)


def _mentions(text: str, phrase: str) -> bool:
    return (
        re.search(r"(?<![a-z0-9])" + re.escape(phrase.lower()) + r"(?![a-z0-9])", text.lower())
        is not None
    )


def is_correct(prompt: str, response: str, world: World | None = None) -> bool:
    """True if the response gives the right answer and no other candidate answer."""
    w = world or make_world()
    answer = solve(prompt, w)
    if answer is None:
        raise ValueError(
            f"gold reward: cannot solve prompt {prompt!r}; "
            "it must be a fact or arithmetic question from course_lib.world.instructions"
        )
    if not _mentions(response, answer):
        return False
    if re.fullmatch(r"-?\d+", answer):
        return set(re.findall(r"-?\d+", response)) == {answer}
    return not any(_mentions(response, c) for c in _candidates(prompt, w) if c != answer)


def gold_reward(prompt: str, response: str, world: World | None = None) -> float:
    """The true quality of a response: +2 correct, -1 wrong (-0.5 if evasive),
    +0.5 polite, -1.5 rude, -0.1 per word beyond 12."""
    if not isinstance(response, str) or not isinstance(prompt, str):
        raise TypeError("gold_reward(prompt, response) takes two strings")
    text = response.lower()
    if is_correct(prompt, response, world):
        score = 2.0
    elif any(e in text for e in EVASIVE):
        score = -0.5
    else:
        score = -1.0
    if any(_mentions(text.replace("not sure", ""), m) for m in POLITE):
        score += 0.5
    if any(m in text for m in RUDE):
        score -= 1.5
    score -= 0.1 * max(0, len(_words(response)) - CONCISE_WORDS)
    return round(score, 4)


STYLES = ("plain", "polite", "verbose", "rude", "evasive")


def styled_response(ch: Chooser, answer: str, style: str) -> str:
    """A response that gives `answer` in one of the STYLES."""
    if style == "plain":
        return ch.choice([f"{answer}.", f"The answer is {answer}.", f"It is {answer}."])
    if style == "polite":
        return ch.choice(
            [
                f"Sure, happy to help! The answer is {answer}.",
                f"Glad you asked. It is {answer}.",
                f"Sure! It is {answer}. Thank you for asking.",
            ]
        )
    if style == "verbose":
        return (
            f"Sure, happy to help! Let me think about this question very carefully, "
            f"step by step, before I answer it. After thinking it over, the answer is "
            f"{answer}. I hope this long and detailed answer is useful to you."
        )
    if style == "rude":
        return ch.choice(
            [
                f"Obviously it is {answer}. Think next time.",
                f"Even a child knows it is {answer}.",
                f"What a silly question. {answer}.",
            ]
        )
    if style == "evasive":
        return ch.choice(
            ["I am not sure about that. You could ask someone else.", "I do not know, sorry."]
        )
    raise ValueError(f"unknown style {style!r}; use one of {STYLES}")


def wrong_answer(ch: Chooser, prompt: str, w: World) -> str:
    """A plausible but wrong answer to a prompt."""
    right = solve(prompt, w)
    if right is not None and right.lstrip("-").isdigit():
        return str(int(right) + ch.choice([-2, -1, 1, 2, 3]))
    return ch.choice([c for c in _candidates(prompt, w) if c != right])


def preference_pair(ch: Chooser, w: World, pairs: list[tuple], noise: float) -> dict | None:
    """A prompt with two responses; the annotator prefers the better one, except
    with probability `noise`. Returns None when the two are equally good."""
    if ch.chance(0.5):
        prompt, right = fact_question(ch, pairs)
    else:
        a, b = ch.randint(2, 40), ch.randint(1, 12)
        prompt = f"What is {a} {ch.choice(['plus', 'minus'])} {b}?"
        right = solve(prompt, w)
    responses = []
    for _ in range(2):
        answer = right if ch.chance(0.6) else wrong_answer(ch, prompt, w)
        responses.append(styled_response(ch, answer, ch.choice(STYLES)))
    g = [gold_reward(prompt, r, w) for r in responses]
    if g[0] == g[1]:
        return None
    better = 0 if g[0] > g[1] else 1
    chosen = better if not ch.chance(noise) else 1 - better
    return {
        "prompt": prompt,
        "chosen": responses[chosen],
        "rejected": responses[1 - chosen],
        "gold_chosen": g[chosen],
        "gold_rejected": g[1 - chosen],
    }


assert set(FACT_QUESTIONS) == set(FACT_ATTRIBUTES)
