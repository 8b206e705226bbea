"""Tests of course_lib.baselines: the bag-of-words classifier every fine-tuned model must beat."""

from __future__ import annotations

import pytest

from course_lib.baselines import bag_of_words_accuracy, bag_of_words_predict
from course_lib.data import load_jsonl
from course_lib.world.documents import LABELS

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "sigma", "omega"]


def order_only_records() -> list[dict]:
    """Pairs of texts with the same words in the opposite order and opposite labels."""
    records = []
    for a, b in zip(WORDS[::2], WORDS[1::2]):
        records += [
            {"text": f"{a} {b}", "label": "positive"},
            {"text": f"{b} {a}", "label": "negative"},
        ]
    return records


def test_unigrams_cannot_see_word_order_and_bigrams_can():
    records = order_only_records()
    assert bag_of_words_accuracy(records, records, ngram=1) == 0.5, (
        "each pair has the same bag of words, so a unigram model gives both texts the same label"
    )
    assert bag_of_words_accuracy(records, records, ngram=2) == 1.0, (
        "with bigrams every text has its own feature: the training set should be fitted"
    )


def test_predictions_are_labels_of_the_training_set():
    records = order_only_records()
    pred = bag_of_words_predict(records, ["alpha beta", "omega sigma", "unseen words"], ngram=2)
    assert len(pred) == 3 and set(pred) <= {"positive", "negative"}, pred
    assert pred[:2] == ["positive", "negative"], "texts seen in training get their training label"


def test_balanced_class_weight_favours_the_rare_class():
    train = (
        [{"text": "meh", "label": "positive"}] * 6
        + [{"text": "great", "label": "positive"}] * 6
        + [{"text": "meh", "label": "negative"}] * 4
    )
    assert bag_of_words_predict(train, ["meh", "great"]) == ["positive", "positive"], (
        "unweighted, 'meh' is positive 6 times out of 10"
    )
    assert bag_of_words_predict(train, ["meh", "great"], class_weight="balanced") == [
        "negative",
        "positive",
    ], "balanced weights count each of the 4 negatives as 3 positives: 'meh' becomes negative"


def test_on_the_reviews_word_order_is_worth_a_lot():
    train, val = load_jsonl("reviews_train"), load_jsonl("reviews_val")
    uni, bi = bag_of_words_accuracy(train, val), bag_of_words_accuracy(train, val, ngram=2)
    assert 1 / len(LABELS) + 0.1 < uni < bi - 0.1, (
        f"unigram accuracy {uni:.3f}, bigram {bi:.3f}: the reviews' labels depend on word order "
        "(negations), so bigrams should beat a plain bag of words by a wide margin"
    )


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: bag_of_words_predict([], ["a text"]), ValueError, "non-empty"),
        (
            lambda: bag_of_words_predict([{"text": "a b", "label": "x"}], []),
            ValueError,
            "non-empty",
        ),
        (lambda: bag_of_words_predict([{"text": "a b", "label": "x"}], "a b"), TypeError, "list"),
        (lambda: bag_of_words_predict([{"text": "a b"}], ["a b"]), ValueError, "'label'"),
        (
            lambda: bag_of_words_predict([{"text": "a b", "label": "x"}], ["a b"], ngram=0),
            ValueError,
            "ngram",
        ),
        (lambda: bag_of_words_accuracy([], [{"text": "a", "label": "x"}]), ValueError, "non-empty"),
        (
            lambda: bag_of_words_accuracy([{"text": "ab cd", "label": "x"}], [{"text": "ab"}]),
            ValueError,
            "'label'",
        ),
    ],
)
def test_bad_inputs_are_explained(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), f"the message should mention {words!r}: {info.value}"
