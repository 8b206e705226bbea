"""Tests of course_lib.dataprep: cleaning, deduplication, MinHash/LSH, balancing, splitting."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from datasketch import MinHash

from course_lib.data import load_jsonl
from course_lib.dataprep import (
    balance_classes,
    canonical_label,
    clean_records,
    clean_text,
    decontaminate,
    dedup_exact,
    flip_labels,
    jaccard,
    lsh_probability,
    minhash_params,
    minhash_signature,
    near_duplicate_pairs,
    shingles,
    stratified_split,
)
from course_lib.world.messy import messy_reviews, near_duplicate_variant

REVIEWS = load_jsonl("reviews_train")[:600]


def test_clean_text_removes_markup_entities_and_spacing():
    assert clean_text("  <p>The lid &amp; the\n handle</p> ") == "The lid & the handle", (
        "clean_text must unescape &amp;, drop tags and collapse whitespace"
    )
    assert clean_text("ﬁne") == "fine", "NFKC normalisation should turn the ligature ﬁ into 'fi'"
    with pytest.raises(TypeError, match="string"):
        clean_text(None)


def test_canonical_label_spellings():
    assert [canonical_label(x) for x in ["Positive", " neg ", "+", "NEUTRAL", "??", 3]] == [
        "positive",
        "negative",
        "positive",
        "neutral",
        None,
        None,
    ]


def test_messy_then_clean_leaves_only_clean_canonical_rows():
    raw = messy_reviews(REVIEWS, seed=0)
    assert len(raw) > len(REVIEWS), "messy_reviews must add duplicates and junk rows"
    kept, dropped = clean_records(raw)
    assert all(r["label"] in {"positive", "negative", "neutral"} for r in kept), (
        "labels must be canonical"
    )
    assert not any("<" in r["text"] or "  " in r["text"] or "&amp;" in r["text"] for r in kept), (
        "cleaned texts must have no tags, entities or double spaces"
    )
    junk = sum(r["issue"] == "junk" for r in raw)
    assert sum(dropped.values()) >= junk, (
        f"every junk row ({junk}) should be dropped, dropped {dropped}"
    )
    assert messy_reviews(REVIEWS, seed=0) == raw, "messy_reviews must be deterministic for a seed"


def test_dedup_exact_ignores_case_punctuation_and_markup():
    recs = [
        {"text": "The lid is great."},
        {"text": "<b>the LID is great!</b>"},
        {"text": "The lid is poor."},
    ]
    assert [r["text"] for r in dedup_exact(recs)] == ["The lid is great.", "The lid is poor."]


def test_jaccard_and_shingles():
    a, b = shingles("the lid is great", 2), shingles("the lid is poor", 2)
    assert a == {"the lid", "lid is", "is great"}, f"word 2-shingles wrong: {a}"
    assert jaccard(a, b) == pytest.approx(2 / 4), "Jaccard = |intersection| / |union|"
    assert shingles("two words", 3) == {"two words"}, "a text shorter than n is one shingle"
    with pytest.raises(ValueError, match="n must be"):
        shingles("x", 0)


def test_minhash_estimates_jaccard_like_datasketch():
    rng = random.Random(0)
    params = minhash_params(256, seed=1)
    errors_ours, errors_lib = [], []
    for _ in range(20):
        a = {f"w{rng.randrange(60)}" for _ in range(40)}
        b = {f"w{rng.randrange(60)}" for _ in range(40)}
        true = jaccard(a, b)
        est = (minhash_signature(a, params) == minhash_signature(b, params)).mean()
        ma, mb = MinHash(num_perm=256, seed=1), MinHash(num_perm=256, seed=1)
        for s in a:
            ma.update(s.encode())
        for s in b:
            mb.update(s.encode())
        errors_ours.append(abs(est - true))
        errors_lib.append(abs(ma.jaccard(mb) - true))
    mean_ours, mean_lib = sum(errors_ours) / 20, sum(errors_lib) / 20
    assert mean_ours < 0.05, (
        f"MinHash estimate is off by {mean_ours:.3f} on average: equal minima estimate Jaccard"
    )
    assert mean_ours < 2 * mean_lib + 0.01, (
        f"ours {mean_ours:.3f} vs datasketch {mean_lib:.3f}: too far apart"
    )


def test_lsh_finds_what_brute_force_finds():
    texts = [r["text"] for r in REVIEWS[:250]]
    rng = random.Random(3)
    texts += [near_duplicate_variant(t, rng) for t in texts[:30]]
    sets = [shingles(t) for t in texts]
    brute = {
        (i, j)
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if jaccard(sets[i], sets[j]) >= 0.6
    }
    found = {(i, j) for i, j, _ in near_duplicate_pairs(texts, 0.6)}
    assert found <= brute, (
        "every reported pair must really reach the threshold (verify candidates exactly)"
    )
    assert len(found & brute) >= 0.95 * len(brute), (
        f"LSH found {len(found)} of {len(brute)} pairs: too many misses"
    )


def test_lsh_probability_is_the_s_curve():
    assert lsh_probability(0.5, bands=32, rows=2) == pytest.approx(1 - 0.75**32)
    assert lsh_probability(0.0, 8, 4) == 0 and lsh_probability(1.0, 8, 4) == 1


def test_decontaminate_finds_leaked_near_duplicates():
    train, test = REVIEWS[:300], load_jsonl("reviews_test")[:100]
    rng = random.Random(0)
    leaked = [{**r, "text": near_duplicate_variant(r["text"], rng)} for r in train[:40]]
    clean, bad = decontaminate(test + leaked, train)
    caught = sum(r in bad for r in leaked)
    assert caught >= 36, f"only {caught} of 40 leaked near-duplicates were caught"
    assert len(clean) + len(bad) == 140, "decontaminate must return every test row exactly once"


def test_balance_and_split_keep_shares_and_never_overlap():
    recs = [
        {"text": str(i), "label": "a" if i < 70 else "b" if i < 90 else "c"} for i in range(100)
    ]
    bal = balance_classes(recs)
    assert Counter(r["label"] for r in bal) == {"a": 10, "b": 10, "c": 10}, (
        "down-sample to the smallest class"
    )
    train, val, test = stratified_split(recs, (0.7, 0.1, 0.2), seed=0)
    assert (len(train), len(val), len(test)) == (70, 10, 20), "split sizes must follow the ratios"
    ids = [r["text"] for part in (train, val, test) for r in part]
    assert sorted(ids) == sorted(r["text"] for r in recs), "every record in exactly one split"
    assert Counter(r["label"] for r in test) == {"a": 14, "b": 4, "c": 2}, (
        "each class keeps its share in test"
    )
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(recs, (0.8, 0.1))


def test_flip_labels_rate_and_bad_input():
    labels = ["negative", "neutral", "positive"]
    noisy = flip_labels(REVIEWS, 0.3, labels, seed=0)
    rate = sum(a["label"] != b["label"] for a, b in zip(REVIEWS, noisy)) / len(REVIEWS)
    assert rate == pytest.approx(0.3, abs=0.05), f"flip rate {rate:.2f}, expected 0.3"
    with pytest.raises(ValueError, match="rate"):
        flip_labels(REVIEWS, 1.5, labels)
    with pytest.raises(ValueError, match="lacks the field"):
        flip_labels([{"text": "x"}], 0.1, labels)
    with pytest.raises(TypeError, match="list of records"):
        dedup_exact("some text")


def test_swap_judgements_keeps_or_changes_polarity():
    from course_lib.dataprep import swap_judgements
    from course_lib.world.documents import NEGATIVE, POSITIVE

    text = "The lid is great, but the handle is awful."
    kept = swap_judgements(text, random.Random(0), keep_polarity=True)
    words = kept.replace(",", "").replace(".", "").split()
    assert words[3] in POSITIVE and words[3] != "great" and words[-1] in NEGATIVE
    assert kept.endswith(".") and "," in kept, "punctuation stays in place"
    changed = {swap_judgements(text, random.Random(s), keep_polarity=False) for s in range(20)}
    assert any(w in t for t in changed for w in ("terrible", "okay", "lovely", "average"))
    assert swap_judgements("No judgement here.", random.Random(0)) == "No judgement here."
    with pytest.raises(TypeError):
        swap_judgements(None, random.Random(0))
