"""Tests of the course world (course_lib.world.entities), the solver
(course_lib.world.instructions.solve) and the gold reward that labels the preference data
(course_lib.world.preferences)."""

from __future__ import annotations

import math

import pytest

from course_lib.world.entities import (
    FACT_ATTRIBUTES,
    FEMALE_NAMES,
    FIRST_NAMES,
    NEW_FIRST_NAMES,
    PROFESSIONS,
    TOWNS,
    WORLD_SEED,
    Chooser,
    make_world,
)
from course_lib.world.instructions import FACT_QUESTIONS, solve
from course_lib.world.preferences import (
    CONCISE_WORDS,
    STYLES,
    gold_reward,
    is_correct,
    styled_response,
)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def person(world):
    return world.people[0]


@pytest.fixture(scope="module")
def town_q(person) -> str:
    return f"Where does {person.name} live?"


@pytest.fixture(scope="module")
def other_town(world, person) -> str:
    """A town that is a candidate answer (somebody lives there) but not the person's town."""
    return next(p.town for p in world.people + world.new_people if p.town != person.town)


# --- the world ------------------------------------------------------------------------------------


def test_make_world_is_deterministic(world):
    make_world.cache_clear()
    try:
        again = make_world()
        assert again == world, "make_world() built a different world after its cache was cleared"
        assert make_world(WORLD_SEED + 1) != world, "a different seed should give a different world"
    finally:
        make_world.cache_clear()
        make_world()  # leave the default world in the cache for later tests
    assert make_world() is make_world(), (
        "make_world() should be cached (the same object on every call)"
    )


def test_world_has_30_people_with_unique_first_names(world):
    assert len(world.people) == 30, (
        f"the world should have 30 corpus people, has {len(world.people)}"
    )
    firsts = [p.first for p in world.people]
    assert len(set(firsts)) == 30, (
        f"first names repeat ({sorted(firsts)}): stories use first names alone"
    )
    assert set(firsts) <= set(FIRST_NAMES), "a corpus person has a first name outside FIRST_NAMES"
    assert len({p.name for p in world.people}) == 30, "two corpus people share a full name"


def test_new_people_are_20_and_disjoint_from_the_corpus_people(world):
    assert len(world.new_people) == 20, (
        f"the world should have 20 new_facts people, has {len(world.new_people)}"
    )
    new_firsts = {p.first for p in world.new_people}
    assert len(new_firsts) == 20, "two new_facts people share a first name"
    assert new_firsts <= set(NEW_FIRST_NAMES), (
        "a new_facts person has a first name outside NEW_FIRST_NAMES"
    )
    assert not new_firsts & {p.first for p in world.people}, (
        "a new_facts person shares a first name with a corpus person: their facts would not be new"
    )
    assert not {p.name for p in world.new_people} & {p.name for p in world.people}, (
        "a new_facts person is also a corpus person"
    )


def test_people_have_consistent_pronouns_and_valid_facts(world):
    for p in world.people + world.new_people:
        expected = "she" if p.first in FEMALE_NAMES else "he"
        assert p.pronoun == expected, f"{p.name} has pronoun {p.pronoun!r}, expected {expected!r}"
        assert p.possessive == ("her" if expected == "she" else "his"), (
            f"{p.name} has the wrong possessive"
        )
        assert p.town in TOWNS and p.profession in PROFESSIONS, (
            f"{p.name} has an unknown town or profession"
        )


def test_world_person_lookup(world, person):
    assert world.person(person.name) is person, "world.person(name) did not find a corpus person"
    newbie = world.new_people[0]
    assert world.person(newbie.name) is newbie, (
        "world.person(name) should also find new_facts people"
    )
    with pytest.raises(ValueError, match="no person called"):
        world.person("Nobody Atall")


def test_residents_partition_the_people(world):
    everyone = [p for town in world.towns for p in world.residents(town)]
    assert sorted(p.name for p in everyone) == sorted(p.name for p in world.people), (
        "the residents of all towns should be exactly the corpus people, each once"
    )


def test_person_fact_returns_each_attribute(person):
    for attr in FACT_ATTRIBUTES:
        assert person.fact(attr) == getattr(person, attr), (
            f"Person.fact({attr!r}) returned the wrong value"
        )


@pytest.mark.parametrize("attr", ["name", "pet_name", "age", "Town", ""])
def test_person_fact_rejects_unknown_attributes(person, attr):
    with pytest.raises(ValueError) as info:
        person.fact(attr)
    assert "town" in str(info.value) and repr(attr) in str(info.value), (
        f"the error for Person.fact({attr!r}) should name the bad attribute and list the valid "
        f"ones: {info.value}"
    )


def test_chooser_adds_up_log_probabilities():
    ch = Chooser(0)
    ch.choice("abcd")
    assert math.isclose(ch.logp, -math.log(4)), "choice among 4 should add log(1/4)"
    ch.logp = 0.0
    ch.randint(1, 6)
    assert math.isclose(ch.logp, -math.log(6)), "randint(1, 6) should add log(1/6)"
    ch.logp = 0.0
    ch.shuffled(range(5))
    assert math.isclose(ch.logp, -math.log(120)), "a shuffle of 5 items should add log(1/5!)"
    ch.logp = 0.0
    ch.sample(range(5), 2)
    assert math.isclose(ch.logp, -math.log(20)), "an ordered sample of 2 of 5 should add log(1/20)"
    ch.logp = 0.0
    hit = ch.chance(0.25)
    assert math.isclose(ch.logp, math.log(0.25 if hit else 0.75)), (
        "chance(p) should add log p or log(1-p)"
    )
    ch.logp = 0.0
    item = ch.weighted(["a", "b"], [1, 3])
    assert math.isclose(ch.logp, math.log(0.25 if item == "a" else 0.75)), (
        "weighted() added the wrong log-prob"
    )
    with pytest.raises(ValueError, match="empty"):
        ch.choice([])


def test_chooser_is_reproducible():
    a, b = Chooser(7), Chooser(7)
    assert [a.randint(0, 100) for _ in range(20)] == [b.randint(0, 100) for _ in range(20)], (
        "two Choosers with the same seed made different choices"
    )


# --- the solver -----------------------------------------------------------------------------------


def test_solve_answers_every_fact_question_for_every_person(world):
    for p in world.people + world.new_people:
        for attr, templates in FACT_QUESTIONS.items():
            for template in templates:
                q = template.format(name=p.name)
                assert solve(q, world) == p.fact(attr), (
                    f"solve({q!r}) gave {solve(q, world)!r}, expected {p.fact(attr)!r}"
                )
                assert solve(f"  {q} \n", world) == p.fact(attr), (
                    f"solve should ignore surrounding spaces: {q!r}"
                )


@pytest.mark.parametrize(
    "prompt, answer",
    [
        ("What is 7 plus 5?", "12"),
        ("What is 3 minus 10?", "-7"),
        ("What is 6 times 7?", "42"),
        ("What is 40 minus 12?", "28"),
        ("What is 0 times 9?", "0"),
    ],
)
def test_solve_arithmetic(prompt, answer):
    assert solve(prompt) == answer, f"solve({prompt!r}) gave {solve(prompt)!r}, expected {answer!r}"


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "Hello",
        "What is 7 divided by 5?",
        "What is seven plus five?",
        "What is 7 plus 5",
        "Where does Nobody Atall live?",
        "Rewrite the sentence in the past tense.",
    ],
)
def test_solve_returns_none_for_other_text(prompt):
    assert solve(prompt) is None, (
        f"solve({prompt!r}) should be None (not a fact or arithmetic question)"
    )


def test_solve_needs_the_full_name(person):
    q = f"Where does {person.first} live?"
    assert solve(q) is None, f"solve({q!r}) should be None: questions name people in full"


# --- the gold reward ------------------------------------------------------------------------------


def test_gold_reward_exact_values(town_q, person, other_town):
    t = person.town
    cases = {
        f"{t}.": 2.0,  # plain correct
        f"The answer is {t}.": 2.0,
        f"Sure, happy to help! The answer is {t}.": 2.5,  # polite correct: +0.5
        f"Obviously it is {t}. Think next time.": 0.5,  # rude correct: 2.0 - 1.5
        f"{other_town}.": -1.0,  # wrong
        f"Sure! It is {other_town}. Thank you for asking.": -0.5,  # polite but wrong
        "I do not know, sorry.": -0.5,  # evasive
    }
    for response, expected in cases.items():
        got = gold_reward(town_q, response)
        assert got == expected, (
            f"gold_reward({town_q!r}, {response!r}) = {got}, hand-computed {expected}"
        )


def test_both_evasive_styles_score_the_same(town_q):
    a = "I do not know, sorry."
    b = "I am not sure about that. You could ask someone else."
    assert gold_reward(town_q, b) == gold_reward(town_q, a) == -0.5, (
        f"the two evasive responses of styled_response score {gold_reward(town_q, a)} and "
        f"{gold_reward(town_q, b)}; an evasive answer is not polite and should score -0.5"
    )


def test_gold_reward_arithmetic_exact_values():
    q = "What is 3 minus 10?"
    assert gold_reward(q, "-7.") == 2.0, "the correct negative answer should score 2.0"
    assert gold_reward(q, "7.") == -1.0, "dropping the minus sign is a wrong answer"
    assert gold_reward(q, "It is 17.") == -1.0, "17 is wrong even though it ends in 7"
    assert gold_reward("What is 6 times 7?", "The answer is 42.") == 2.0, "42 is the right product"


def test_gold_reward_orders_the_qualities(town_q, person, other_town):
    t = person.town
    r = lambda text: gold_reward(town_q, text)  # noqa: E731
    assert r(f"{t}.") > r(f"{other_town}."), "a correct answer must beat a wrong one"
    assert r(f"Sure, happy to help! The answer is {t}.") > r(f"The answer is {t}."), (
        "a polite correct answer must beat a plain correct one"
    )
    assert r(f"Obviously it is {t}. Think next time.") < r(f"It is {t}."), (
        "rudeness must be penalised"
    )
    assert r("I do not know, sorry.") > r(f"It is {other_town}."), (
        "admitting ignorance must beat a wrong answer"
    )


def test_gold_reward_penalises_each_word_beyond_twelve(town_q, person):
    t = person.town
    twelve = f"The answer to your question about this person is {t}, I believe."  # 12 words
    assert gold_reward(town_q, twelve) == 2.0, f"{CONCISE_WORDS} words should cost nothing"
    assert gold_reward(town_q, twelve[:-1] + " today.") == 1.9, "13 words should cost 0.1"
    assert gold_reward(town_q, twelve[:-1] + " for certain today.") == 1.7, (
        "15 words should cost 0.3"
    )
    verbose = styled_response(Chooser(0), t, "verbose")  # 38 words, polite: 2.5 - 2.6
    assert gold_reward(town_q, verbose) == -0.1, (
        f"the verbose style (38 words, polite, correct) should score 2.5 - 26 * 0.1 = -0.1, got "
        f"{gold_reward(town_q, verbose)}"
    )


def test_hedging_over_candidates_is_not_correct(town_q, person, other_town, world):
    for response in (
        f"{person.town} or {other_town}.",
        f"It is {other_town}, or maybe {person.town}.",
        ", ".join(TOWNS) + ".",
    ):
        assert not is_correct(town_q, response), (
            f"{response!r} lists several towns: that is not a correct answer"
        )
        assert gold_reward(town_q, response) < 0, f"hedging ({response!r}) must not be rewarded"
    q = "What is 7 plus 5?"
    for response in ("It is 12 or 13.", "11, 12 or 13.", "12 (or 21)."):
        assert not is_correct(q, response), (
            f"{response!r} gives several numbers: that is not correct"
        )
        assert gold_reward(q, response) == -1.0, (
            f"numeric hedging ({response!r}) must score as wrong"
        )


def test_hedging_with_a_world_value_nobody_has_is_not_correct(person):
    q = f"What does {person.name} do for a living?"
    response = f"{person.profession} or cook."
    assert not is_correct(q, response), (
        f"{response!r} hedges between two professions but counts as correct"
    )


def test_each_style_prefers_the_right_answer(town_q, person, other_town):
    ch = Chooser(3)
    for style in STYLES:
        if style == "evasive":
            continue
        right = gold_reward(town_q, styled_response(ch, person.town, style))
        wrong = gold_reward(town_q, styled_response(ch, other_town, style))
        assert right > wrong, (
            f"in the {style!r} style the correct answer ({right}) must beat the wrong one ({wrong})"
        )
    with pytest.raises(ValueError, match="style"):
        styled_response(ch, "x", "sarcastic")


@pytest.mark.parametrize(
    "prompt, response",
    [
        ("What is 7 plus 5?", None),
        ("What is 7 plus 5?", 12),
        ("What is 7 plus 5?", ["12"]),
        (None, "12"),
        (b"What is 7 plus 5?", "12"),
    ],
)
def test_gold_reward_rejects_non_strings(prompt, response):
    with pytest.raises(TypeError, match="two strings"):
        gold_reward(prompt, response)


def test_gold_reward_on_an_unsolvable_prompt_explains(person):
    prompt = "Write a poem about the sea."
    with pytest.raises(ValueError) as info:
        gold_reward(prompt, "The sea is blue.")
    message = str(info.value)
    assert "cannot solve" in message and prompt in message and "fact or arithmetic" in message, (
        f"the error for an unsolvable prompt should quote it and say which prompts work: {message}"
    )
