"""Tests of the course datasets (course_lib.world.datasets and the generators behind it).

Every dataset is generated from one seeded world, so the committed files in data/ must be
exactly what the generator writes, and every label must follow from the world's rules.
"""

from __future__ import annotations

import collections
import math
import re
from pathlib import Path

import pytest

from course_lib.data import DATA_DIR, load_jsonl
from course_lib.world.datasets import (
    ANNOTATOR_NOISE,
    HELD_OUT_FACT_SHARE,
    SIZES,
    build_all,
    clinic_notes,
    corpus_documents,
    preferences,
    write_all,
)
from course_lib.world.documents import (
    LABELS,
    NEGATIVE,
    NEGATORS,
    NEUTRAL,
    POSITIVE,
    SYMPTOMS,
    TAILS,
    review_text,
)
from course_lib.world.entities import (
    FACT_ATTRIBUTES,
    GENERIC_ASPECTS,
    PRODUCT_KINDS,
    Chooser,
    make_world,
)
from course_lib.world.instructions import FACT_QUESTIONS, SKILLS, parse_fact_question, solve
from course_lib.world.preferences import gold_reward

COMMITTED = sorted(p.name for p in DATA_DIR.glob("*.jsonl")) + ["world.json"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def contains_word(text: str, word: str) -> bool:
    """Case-sensitive whole-word search (so "Nell" does not match "Cornell")."""
    return re.search(r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z])", text) is not None


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def built() -> dict[str, list]:
    return build_all()


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regenerated_data")
    write_all(out)
    return out


# --- regeneration ---------------------------------------------------------------------------------


def test_committed_data_files_are_all_there():
    assert len(COMMITTED) == len(SIZES) + 2, (
        f"data/ should hold one .jsonl file per SIZES entry plus new_facts.jsonl and world.json, "
        f"found {COMMITTED}: run `make data`"
    )


def test_regeneration_writes_exactly_the_committed_file_set(regenerated):
    written = sorted(p.name for p in regenerated.iterdir())
    assert written == sorted(COMMITTED), (
        f"write_all() writes {written} but data/ holds {sorted(COMMITTED)}: a dataset was added or "
        "removed without regenerating the committed data"
    )


@pytest.mark.parametrize("name", COMMITTED)
def test_regeneration_is_byte_identical(regenerated, name):
    new, old = (regenerated / name).read_bytes(), (DATA_DIR / name).read_bytes()
    assert new == old, (
        f"regenerating the data changed {name}: the generator is no longer deterministic, or the "
        "committed file is stale (run `make data` and commit the result)"
    )


def test_build_all_twice_gives_equal_datasets(built):
    again = build_all()
    assert list(again) == list(built), (
        "build_all() returned its files in a different order the second time"
    )
    for stem in built:
        assert again[stem] == built[stem], (
            f"two calls of build_all() gave different {stem}: the generator is not deterministic"
        )


# --- sizes and splits -----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", [s for s in SIZES if not s.startswith("instructions")])
def test_dataset_sizes_match_SIZES(stem):
    n = len(load_jsonl(stem))
    assert n == SIZES[stem], f"{stem}.jsonl has {n} records but SIZES says {SIZES[stem]}"


def test_new_facts_has_one_record_per_new_person_and_attribute(world):
    records = load_jsonl("new_facts")
    assert len(records) == len(world.new_people) * len(FACT_ATTRIBUTES), (
        f"new_facts.jsonl has {len(records)} records, expected one per (new person, attribute)"
    )
    for r in records:
        truth = world.person(r["person"]).fact(r["attribute"])
        assert r["answer"] == truth, f"new_facts answer for {r['person']}/{r['attribute']} is wrong"
        assert r["answer"] in r["candidates"], (
            f"the answer {r['answer']!r} is missing from its candidates"
        )
        assert r["question"] and solve(r["question"], world) == truth, (
            f"the question {r['question']!r} does not resolve to the record's answer"
        )


def _fact_counts(world) -> dict[str, int]:
    """How many (person, attribute) facts each instructions split may ask about."""
    total = len(world.people) * len(FACT_ATTRIBUTES)
    held = int(total * HELD_OUT_FACT_SHARE)
    return {"train": total - held, "val": held // 4, "test": held - held // 4}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_instruction_sizes_follow_the_per_skill_shares(split, world):
    records = load_jsonl(f"instructions_{split}")
    per_skill = SIZES[f"instructions_{split}"] // len(SKILLS)
    phrasings = {len(v) for v in FACT_QUESTIONS.values()}
    assert len(phrasings) == 1, (
        "the test assumes every attribute has equally many question phrasings"
    )
    fact_cap = _fact_counts(world)[split] * phrasings.pop()
    counts = collections.Counter(r["skill"] for r in records)
    expected = {s: per_skill for s in SKILLS} | {"fact": min(per_skill, fact_cap)}
    assert dict(counts) == expected, (
        f"instructions_{split} has {dict(counts)} records per skill, expected {expected} "
        f"(SIZES/{len(SKILLS)} each; fact questions capped at {fact_cap} = facts x phrasings)"
    )
    assert len(records) == sum(expected.values()), (
        f"instructions_{split} has the wrong number of records"
    )


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_reviews_are_balanced_over_the_three_labels(split):
    records = load_jsonl(f"reviews_{split}")
    counts = collections.Counter(r["label"] for r in records)
    n = len(records)
    assert set(counts) == set(LABELS), (
        f"reviews_{split} has labels {set(counts)}, expected {set(LABELS)}"
    )
    for label, c in counts.items():
        assert n // 3 <= c <= n // 3 + 1, (
            f"reviews_{split} has {c} {label} reviews out of {n}: the three labels are not balanced"
        )


def _key(r: dict) -> str:
    return r["instruction"] + "\n" + r["input"]


def test_instructions_never_repeat_within_or_across_splits():
    keys = {s: [_key(r) for r in load_jsonl(f"instructions_{s}")] for s in ("train", "val", "test")}
    for split, ks in keys.items():
        dup = [k for k, c in collections.Counter(ks).items() if c > 1]
        assert not dup, (
            f"instructions_{split} repeats {len(dup)} instruction+input pairs, e.g. {dup[0]!r}"
        )
    train = set(keys["train"])
    for split in ("val", "test"):
        leaked = [k for k in keys[split] if k in train]
        assert not leaked, (
            f"instructions_{split} repeats {len(leaked)} train instruction+input pairs, "
            f"e.g. {leaked[0]!r}: evaluation would reward memorisation"
        )
    both = set(keys["val"]) & set(keys["test"])
    assert not both, f"instructions_val and instructions_test share {len(both)} records"


def _asked_facts(records: list[dict], key: str = "instruction") -> set[tuple[str, str]]:
    out = set()
    for r in records:
        parsed = parse_fact_question(r[key])
        if parsed is not None:
            out.add((parsed[1], parsed[0]))  # (person, attribute)
    return out


def test_val_and_test_fact_questions_ask_only_about_held_out_facts():
    asked = {
        s: _asked_facts([r for r in load_jsonl(f"instructions_{s}") if r["skill"] == "fact"])
        for s in ("train", "val", "test")
    }
    for s, facts in asked.items():
        assert facts, f"instructions_{s} has no fact question that parse_fact_question understands"
    for split in ("val", "test"):
        seen = asked[split] & asked["train"]
        assert not seen, (
            f"instructions_{split} asks about {len(seen)} facts that train also asks about, "
            f"e.g. {sorted(seen)[0]}: they must be held out"
        )
    assert not asked["val"] & asked["test"], "val and test ask about the same held-out facts"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fact_and_arithmetic_outputs_are_the_true_answers(split, world):
    for r in load_jsonl(f"instructions_{split}"):
        if r["skill"] in ("fact", "arithmetic"):
            assert r["output"] == solve(r["instruction"], world), (
                f"instructions_{split}: {r['instruction']!r} has output {r['output']!r} but the "
                f"solver says {solve(r['instruction'], world)!r}"
            )
        assert r["messages"][-1] == {"role": "assistant", "content": r["output"]}, (
            "the chat form of a record must end with the assistant giving the output"
        )


# --- preferences ----------------------------------------------------------------------------------


def _agreement(records: list[dict]) -> float:
    return sum(r["gold_chosen"] > r["gold_rejected"] for r in records) / len(records)


def _three_sigma(p: float, n: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("split", ["train", "test"])
def test_preference_labels_agree_with_gold_at_the_noise_rate(split):
    records = load_jsonl(f"preferences_{split}")
    ties = [r for r in records if r["gold_chosen"] == r["gold_rejected"]]
    assert not ties, f"preferences_{split} has {len(ties)} ties: equally good pairs must be dropped"
    p, n = 1 - ANNOTATOR_NOISE, len(records)
    share = _agreement(records)
    assert abs(share - p) <= _three_sigma(p, n), (
        f"in preferences_{split} the chosen response is gold-better in {share:.3f} of {n} pairs; "
        f"with ANNOTATOR_NOISE={ANNOTATOR_NOISE} it should be {p:.2f} +- {_three_sigma(p, n):.3f}"
    )


@pytest.mark.parametrize("split", ["train", "test"])
def test_preference_gold_scores_are_the_gold_reward(split, world):
    for r in load_jsonl(f"preferences_{split}"):
        for side in ("chosen", "rejected"):
            g = gold_reward(r["prompt"], r[side], world)
            assert g == r[f"gold_{side}"], (
                f"preferences_{split}: gold_{side}={r[f'gold_{side}']} but gold_reward gives {g} "
                f"for {r['prompt']!r} -> {r[side]!r}"
            )


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_annotator_noise_sets_the_agreement_rate(noise, world):
    n = 400
    records = preferences("train", n, world, noise=noise)
    assert len(records) == n, f"preferences(..., n={n}) returned {len(records)} records"
    assert all(r["gold_chosen"] != r["gold_rejected"] for r in records), (
        "preference pairs contain ties"
    )
    share, p = _agreement(records), 1 - noise
    if noise == 0.0:
        assert share == 1.0, (
            f"with noise=0 every chosen response must be gold-better, got {share:.3f}"
        )
    else:
        assert abs(share - p) <= _three_sigma(p, n), (
            f"with noise={noise} the chosen response is gold-better in {share:.3f} of {n} pairs, "
            f"expected {p:.2f} +- {_three_sigma(p, n):.3f}"
        )


def test_preference_test_prompts_ask_only_about_held_out_facts():
    train = _asked_facts(load_jsonl("preferences_train"), "prompt")
    test = _asked_facts(load_jsonl("preferences_test"), "prompt")
    assert train and test, "the preference files should contain fact questions"
    assert not train & test, (
        f"preferences_test asks about {len(train & test)} facts that "
        "preferences_train asks about: the reward model test would leak"
    )


# --- corpus and clinic notes ----------------------------------------------------------------------


def test_corpus_documents_are_deterministic():
    a, b = list(corpus_documents("train", 50)), list(corpus_documents("train", 50))
    assert a == b, "corpus_documents('train', 50) gave different documents on two calls"
    assert len(a) == 50, f"corpus_documents('train', 50) yielded {len(a)} documents"


def test_corpus_start_offset_matches_generating_from_zero():
    full = list(corpus_documents("train", 50))
    tail = list(corpus_documents("train", 20, start=30))
    assert tail == full[30:], (
        "corpus_documents(split, n, start) must yield documents start..start+n "
        "of the stream generated from 0 (texts and logp)"
    )


def test_committed_corpus_files_are_prefixes_of_the_streams():
    assert load_jsonl("corpus_sample")[:100] == list(corpus_documents("train", 100)), (
        "corpus_sample.jsonl does not start with the first train corpus documents"
    )
    assert load_jsonl("corpus_val")[:100] == list(corpus_documents("val", 100)), (
        "corpus_val.jsonl does not start with the first val corpus documents"
    )


def test_corpus_val_differs_from_train():
    train = [d["text"] for d in corpus_documents("train", 200)]
    val = [d["text"] for d in corpus_documents("val", 200)]
    same_position = sum(a == b for a, b in zip(train, val))
    assert same_position < 5, (
        f"{same_position} of 200 val documents equal the train document at the same index"
    )
    overlap = len(set(train) & set(val))
    assert overlap < 20, (
        f"{overlap} of 200 val documents also occur in train: the splits are not independent"
    )


def test_bad_corpus_split_raises():
    with pytest.raises(ValueError, match="split"):
        list(corpus_documents("test", 1))


@pytest.mark.parametrize("stem", ["corpus_sample", "corpus_val", "clinic_train", "clinic_val"])
def test_every_document_has_a_negative_finite_logp(stem):
    for d in load_jsonl(stem):
        assert math.isfinite(d["logp"]) and d["logp"] < 0, (
            f"{stem}: document {d['text'][:60]!r} has logp={d['logp']}; the log-probability of a "
            "generated document must be negative and finite"
        )


def test_clinic_notes_are_deterministic():
    assert clinic_notes("train", 20) == load_jsonl("clinic_train")[:20], (
        "clinic_notes('train', 20) does not reproduce the start of clinic_train.jsonl"
    )


@pytest.fixture(scope="module")
def corpus_text() -> str:
    return "\n".join(d["text"] for s in ("corpus_sample", "corpus_val") for d in load_jsonl(s))


@pytest.fixture(scope="module")
def clinic_text() -> str:
    return "\n".join(d["text"] for s in ("clinic_train", "clinic_val") for d in load_jsonl(s))


def test_clinic_notes_name_none_of_the_corpus_people(clinic_text, world):
    for p in world.people:
        for name in {p.name, p.first, p.name.split()[1]}:
            assert not contains_word(clinic_text, name), (
                f"the clinic notes mention {name!r}, a name from the corpus: the clinic domain must "
                "share no content with the corpus"
            )


CLINIC_ABBREVIATIONS = [
    "Pt",
    "PC:",
    "O/E:",
    "Imp:",
    "Rx:",
    "F/U",
    "TDS",
    "QDS",
    "PRN",
    "OD",
    "ON",
    "BD",
    "mcg",
    "BP",
    "MTP",
]


def test_corpus_contains_none_of_the_clinic_words(corpus_text, clinic_text):
    clinic_words = set(CLINIC_ABBREVIATIONS)
    for symptom, (drug, _, _, exam) in SYMPTOMS.items():
        clinic_words |= {symptom, drug, exam}
    for w in sorted(clinic_words):
        assert contains_word(clinic_text, w), (
            f"{w!r} should occur in the clinic notes (test list out of date)"
        )
        assert not contains_word(corpus_text, w), (
            f"the corpus contains the clinic word {w!r}: the clinic notes are meant to be a domain the "
            "base model has never seen"
        )
    shared = set(re.findall(r"[A-Za-z]+", clinic_text)) & set(re.findall(r"[A-Za-z]+", corpus_text))
    function_words = {"first", "for", "on", "if", "no", "of", "in", "x"}
    assert shared <= function_words, (
        f"the clinic notes and the corpus share the words {sorted(shared - function_words)}: the two "
        "domains should only share a few function words"
    )


def test_new_facts_people_appear_in_the_corpus_only_as_visitors(world):
    """new_facts people carry visitor names: the corpus mentions them only in visitor documents,
    whose facts are redrawn every time, so it holds no fact about them."""
    docs = load_jsonl("corpus_sample") + load_jsonl("corpus_val")
    for p in world.new_people:
        for d in docs:
            if contains_word(d["text"], p.name):
                assert d["kind"] == "visitor", (
                    f"{p.name!r} (a new_facts person) appears in a {d['kind']!r} document: the corpus "
                    "must not state facts about new_facts people"
                )
    first_names = {p.first for p in world.people}
    assert not first_names & {p.first for p in world.new_people}, (
        "a new_facts person shares a corpus person's first name"
    )
    assert {r["person"] for r in load_jsonl("new_facts")} == {p.name for p in world.new_people}, (
        "new_facts.jsonl is not about exactly the world's new_people"
    )


# --- review labels --------------------------------------------------------------------------------

ASPECTS = sorted(
    {a for v in PRODUCT_KINDS.values() for a in v} | set(GENERIC_ASPECTS), key=len, reverse=True
)


def _alt(options) -> str:
    return "|".join(re.escape(o) for o in options)


def _clause(n: str) -> str:
    tails = _alt([t.strip() for t in TAILS if t])
    return (
        rf"the (?:{_alt(ASPECTS)}) (?:is|are) (?:(?P<{n}neg>{_alt(NEGATORS)}) )?"
        rf"(?P<{n}word>{_alt(POSITIVE + NEGATIVE + NEUTRAL)})(?: (?:{tails}))?"
    )


REVIEW_FORMS = {
    "single": re.compile(rf"{_clause('x')}\."),
    "and": re.compile(rf"{_clause('x')} and {_clause('y')}\."),
    "but": re.compile(rf"{_clause('x')}, but {_clause('y')}\."),
    "although": re.compile(rf"although {_clause('x')}, {_clause('y')}\."),
}


def rule_label(text: str) -> str:
    """An independent reading of the review rules: a negated word flips its polarity, "and"
    adds the polarities, "X, but Y" and "although X, Y" take Y's polarity (X's when Y is neutral)."""
    body = text.split(". ")[-1]  # drop the opener sentence, if any
    body = body[0].lower() + body[1:]
    for form, rx in REVIEW_FORMS.items():
        m = rx.fullmatch(body)
        if m is None:
            continue

        def pol(n: str) -> int:
            w = m.group(n + "word")
            s = 1 if w in POSITIVE else -1 if w in NEGATIVE else 0
            return -s if m.group(n + "neg") else s

        if form == "single":
            score = pol("x")
        elif form == "and":
            score = pol("x") + pol("y")
        else:
            score = pol("y") or pol("x")
        return "positive" if score > 0 else "negative" if score < 0 else "neutral"
    raise AssertionError(f"the review {text!r} matches none of the four review forms")


def test_rule_reader_on_hand_made_reviews():
    cases = {
        "The lid is great.": "positive",
        "The lid is not great.": "negative",
        "The lid is far from terrible.": "positive",
        "The lid is okay overall.": "neutral",
        "The lid is great and the handle is awful.": "neutral",
        "The lid is great and the handle is okay.": "positive",
        "The lid is great, but the handle is awful.": "negative",
        "The lid is awful, but the handle is great.": "positive",
        "The lid is awful, but the handle is okay.": "negative",
        "Although the lid is great, the handle is hardly reliable.": "negative",
        "I bought the Nordel kettle last week. Although the lid is awful, the handle is never bad.": (
            "positive"
        ),
    }
    for text, label in cases.items():
        assert rule_label(text) == label, f"the test's rule reader labels {text!r} wrongly"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_review_labels_follow_the_stated_rules(split):
    wrong = [
        (r["text"], r["label"], rule_label(r["text"]))
        for r in load_jsonl(f"reviews_{split}")
        if rule_label(r["text"]) != r["label"]
    ]
    assert not wrong, (
        f"{len(wrong)} reviews_{split} labels break the rules (negation flips, 'and' adds, "
        f"'but'/'although' take the second clause), e.g. {wrong[0]}"
    )


def test_classify_instructions_follow_the_review_rules():
    for split in ("train", "val", "test"):
        for r in load_jsonl(f"instructions_{split}"):
            if r["skill"] == "classify":
                assert r["output"] == rule_label(r["input"]), (
                    f"instructions_{split}: the review {r['input']!r} is labelled {r['output']!r}, "
                    f"the rules say {rule_label(r['input'])!r}"
                )


def test_the_generator_makes_same_bag_of_words_reviews_with_different_labels(world):
    """Bag-of-words is provably insufficient: the generator writes two reviews with exactly the same
    words and different labels. (In the 3000 reviews of reviews_train no two reviews have exactly the
    same bag, so the pair is searched for over Chooser seeds, for one product.)"""
    product, seen = world.products[0], {}
    for seed in range(30_000):
        text, label = review_text(Chooser(seed), product)
        bag = tuple(sorted(words(text)))
        if bag in seen and seen[bag][1] != label:
            return
        seen.setdefault(bag, (text, label))
    pytest.fail(
        "no two generated reviews share a bag of words but differ in label: the review rules "
        "no longer defeat a bag-of-words classifier"
    )


def test_reviews_train_has_same_sentiment_words_with_different_labels():
    """Within reviews_train: reviews whose sentiment-bearing words (judgements, negators, 'and',
    'but', 'although') are the same multiset, yet whose labels differ: word order decides."""
    keep = (
        set(POSITIVE + NEGATIVE + NEUTRAL)
        | {w for n in NEGATORS for w in n.split()}
        | {"and", "but", "although"}
    )
    labels = collections.defaultdict(dict)
    for r in load_jsonl("reviews_train"):
        labels[tuple(sorted(w for w in words(r["text"]) if w in keep))][r["label"]] = r["text"]
    clashes = [v for v in labels.values() if len(v) > 1]
    assert len(clashes) >= 10, (
        f"only {len(clashes)} groups of reviews_train share their sentiment words but differ in label: "
        "the data no longer shows that a bag of words is insufficient"
    )


# --- loading --------------------------------------------------------------------------------------


def test_load_jsonl_accepts_the_name_with_or_without_suffix():
    assert load_jsonl("reviews_val") == load_jsonl("reviews_val.jsonl"), (
        "load_jsonl('reviews_val') and load_jsonl('reviews_val.jsonl') should load the same file"
    )


def test_load_jsonl_missing_name_says_how_to_regenerate():
    with pytest.raises(FileNotFoundError) as info:
        load_jsonl("reviews_tarin")
    message = str(info.value)
    assert "make data" in message, (
        f"the missing-file error should tell students to run `make data`: {message}"
    )
    assert "reviews_train" in message, (
        f"the missing-file error should list the known datasets: {message}"
    )


def test_load_jsonl_in_an_empty_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        load_jsonl("reviews_train", data_dir=tmp_path)


@pytest.mark.parametrize("bad", [None, 3, Path("reviews_train"), ["reviews_train"], ""])
def test_load_jsonl_non_string_name_raises_type_error(bad):
    with pytest.raises(TypeError):
        load_jsonl(bad)


def test_context_qa_answers_only_in_the_note():
    """Each context-QA record's answer is stated in its note, about the asked person, and no
    new_facts person appears (so the records cannot leak the knowledge-injection facts)."""
    from course_lib.world.entities import make_world

    w = make_world()
    new_names = {p.name for p in w.new_people}
    records = load_jsonl("context_qa_train")
    for r in records:
        assert r["output"] in r["context"], (
            f"answer {r['output']!r} is not in the note {r['context']!r}"
        )
        assert r["messages"][0]["content"] == r["context"] + "\n" + r["question"]
        assert not any(n in r["context"] for n in new_names), (
            f"a new_facts person is in {r['context']!r}"
        )
    distinct = {r["output"] for r in records}
    assert len(distinct) > 30, (
        f"only {len(distinct)} distinct answers: the generator draws too few values"
    )
