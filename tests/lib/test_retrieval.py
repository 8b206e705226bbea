"""BM25 from scratch equals rank_bm25; recall@k, failure kinds and the retriever's bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from course_lib.retrieval import (
    BM25,
    answer_hits,
    failure_kind,
    gold_note,
    recall_at_k,
    retrieved_prompts,
    rsj_idf,
    tokenize,
    world_notes,
)

DOCS = [
    "ines castell lives in stonebridge".split(),
    "a visitor called ines castell came to lindenfield and ines castell stayed".split(),
    "the market in oakhollow opens on friday".split(),
    "a patient in fernwick reported a rash on the arm".split(),
    "in in in".split(),
]


@pytest.fixture(scope="module")
def notes():
    return world_notes()


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("Ines Castell's home, 12 Oak St.") == [
        "ines",
        "castell",
        "s",
        "home",
        "12",
        "oak",
        "st",
    ]
    with pytest.raises(TypeError):
        tokenize(["a list"])


def test_rsj_idf_values_and_sign():
    assert rsj_idf(100, 1) == pytest.approx(math.log(99.5 / 1.5))
    assert rsj_idf(10, 5) == pytest.approx(0.0)
    assert rsj_idf(10, 9) < 0  # a word in most documents is evidence against
    with pytest.raises(ValueError, match="doc_freq"):
        rsj_idf(10, 11)


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (1.2, 0.3), (2.0, 1.0)])
def test_bm25_equals_rank_bm25(k1, b):
    ours, ref = BM25(DOCS, k1=k1, b=b, idf="okapi"), BM25Okapi(DOCS, k1=k1, b=b)
    for q in (["ines", "castell"], ["in", "oakhollow", "in"], ["absent"], ["a", "rash"]):
        np.testing.assert_allclose(ours.scores(q), ref.get_scores(q), rtol=0, atol=1e-12)


def test_bm25_equals_rank_bm25_on_the_world_notes(notes):
    docs = [tokenize(n["text"]) for n in notes]
    ours, ref = BM25(docs), BM25Okapi(docs)
    q = tokenize("Where does Ines Castell live?")
    np.testing.assert_allclose(ours.scores(q), ref.get_scores(q), rtol=0, atol=1e-9)


def test_idf_kinds_differ_only_where_they_should():
    rsj, luc, okapi = (BM25(DOCS, idf=k) for k in ("rsj", "lucene", "okapi"))
    assert rsj.idf["in"] < 0 < luc.idf["in"] and okapi.idf["in"] > 0  # "in" is in 4 of 5 docs
    assert rsj.idf["rash"] == okapi.idf["rash"] == pytest.approx(math.log(4.5 / 1.5))
    assert luc.idf["rash"] == pytest.approx(math.log(1 + 4.5 / 1.5))


def test_length_normalisation_and_saturation():
    no_len, full = BM25(DOCS, b=0.0, idf="rsj"), BM25(DOCS, b=1.0, idf="rsj")
    q = ["castell"]
    # with b = 0 the long document's two mentions beat the short one's; with b = 1 length counts
    assert no_len.scores(q)[1] > no_len.scores(q)[0]
    assert full.scores(q)[1] / full.scores(q)[0] < no_len.scores(q)[1] / no_len.scores(q)[0]
    binary = BM25(DOCS, k1=0.0, idf="rsj")
    assert binary.scores(q)[0] == pytest.approx(binary.scores(q)[1])  # k1 = 0: presence only


def test_top_k_orders_by_score_and_breaks_ties_by_index():
    index = BM25(DOCS)
    top = index.top_k(["ines", "castell"], 3)
    s = index.scores(["ines", "castell"])
    assert s[top[0]] >= s[top[1]] >= s[top[2]]
    assert index.top_k(["absent"], 2) == [0, 1]
    with pytest.raises(ValueError, match="k must"):
        index.top_k(["a"], 0)
    with pytest.raises(TypeError, match="tokenized"):
        index.scores("ines castell")


def test_bad_collections_are_refused():
    with pytest.raises(ValueError, match="tokenized"):
        BM25(["a string per document"])
    with pytest.raises(ValueError, match="idf"):
        BM25(DOCS, idf="tfidf")
    with pytest.raises(ValueError, match="k1"):
        BM25(DOCS, b=1.5)


def test_recall_at_k():
    assert recall_at_k([[3, 1], [0, 2], [2, 0]], [1, 0, 1], 1) == [0, 1, 0]
    assert recall_at_k([[3, 1], [0, 2], [2, 0]], [1, 0, 1], 2) == [1, 1, 0]
    with pytest.raises(ValueError, match="rankings"):
        recall_at_k([[1]], [1, 2], 1)


def test_world_notes_hold_every_fact_once_and_namesakes(notes):
    from course_lib.data import load_jsonl

    facts = load_jsonl("new_facts")
    golds = [gold_note(f, notes) for f in facts]
    assert len(set(golds)) == len(facts) == sum(n["kind"] == "fact" for n in notes)
    assert all(facts[i]["answer"] in notes[g]["text"] for i, g in enumerate(golds))
    namesakes = [n for n in notes if n["kind"] != "fact" and facts[0]["person"] in n["text"]]
    assert namesakes, "the haystack should name some new-fact people (name collisions)"
    assert failure_kind(facts[0], golds[0], notes) == "hit"
    assert failure_kind(facts[0], golds[1], notes) == "same person, other fact"
    assert failure_kind(facts[0], notes.index(namesakes[0]), notes) == "name collision"


def test_retrieved_prompts_put_the_best_note_last(notes):
    from course_lib.data import load_jsonl

    facts = load_jsonl("new_facts")[:3]
    index = BM25([tokenize(n["text"]) for n in notes])
    prompts = retrieved_prompts(facts, "probe_seen", index, notes, 2)
    top = index.top_k(tokenize(facts[0]["probe_seen"]), 2)
    assert prompts[0] == f"{notes[top[1]]['text']} {notes[top[0]]['text']} {facts[0]['probe_seen']}"
    assert retrieved_prompts(facts, "probe_seen", index, notes, 0)[0] == facts[0]["probe_seen"]
    with pytest.raises(ValueError, match="form"):
        retrieved_prompts(facts, "question", index, notes, 1)


def test_answer_hits_use_the_pasted_note():
    from course_lib.data import load_jsonl
    from course_lib.models import load_model

    model, tok = load_model("causal")
    facts = load_jsonl("new_facts")[:8]
    with_note = [" ".join(f["statements"]) + " " + f["probe_seen"] for f in facts]
    hits = answer_hits(model, tok, facts, with_note)
    assert set(hits) <= {0, 1} and sum(hits) >= 6  # the oracle of chapter 01 reads the note
    with pytest.raises(ValueError, match="prompts"):
        answer_hits(model, tok, facts, with_note[:2])
