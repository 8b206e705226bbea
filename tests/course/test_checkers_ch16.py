"""The chapter 16 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.course.checkers import ch16
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_rsj_idf():
    assert ch16.check_rsj_idf(lambda n, df: math.log((n - df + 0.5) / (df + 0.5)))
    fails_with(ch16.check_rsj_idf, lambda n, df: math.log(n / df), "classic idf")
    fails_with(ch16.check_rsj_idf, lambda n, df: math.log((n - df) / df), "+0.5")
    fails_with(
        ch16.check_rsj_idf, lambda n, df: math.log(1 + (n - df + 0.5) / (df + 0.5)), "Lucene"
    )
    fails_with(
        ch16.check_rsj_idf, lambda n, df: math.log((df + 0.5) / (n - df + 0.5)), "upside down"
    )


def scores(**mistakes):
    return lambda docs, query, k1, b: ch16.reference_scores(docs, query, k1, b, **mistakes)


def test_bm25_scores():
    assert ch16.check_bm25_scores(scores())
    fails_with(ch16.check_bm25_scores, scores(no_length=True), "length normalisation")
    fails_with(ch16.check_bm25_scores, scores(inverted_length=True), "upside down")
    fails_with(ch16.check_bm25_scores, scores(no_k1_plus_1=True), "k1 + 1")
    fails_with(ch16.check_bm25_scores, scores(unique_query=True), "once per occurrence")
    fails_with(ch16.check_bm25_scores, lambda d, q, k1, b: np.zeros(2), "one score per document")


def test_reference_scores_equal_the_library():
    from course_lib.retrieval import BM25

    for q in ch16.QUERIES:
        np.testing.assert_allclose(
            ch16.reference_scores(ch16.DOCS, q), BM25(ch16.DOCS, idf="rsj").scores(q), atol=1e-12
        )


def debiased(combine):
    def fn(judge, pairs):
        return [
            combine(judge(p["question"], p["x"], p["y"]), judge(p["question"], p["y"], p["x"])) > 0
            for p in pairs
        ]

    return fn


def test_debiased():
    assert ch16.check_debiased(debiased(lambda ab, ba: ab - ba))
    fails_with(ch16.check_debiased, debiased(lambda ab, ba: ab + ba), "position bias")
    fails_with(ch16.check_debiased, debiased(lambda ab, ba: ba - ab), "reversed")
    one_order = lambda judge, pairs: [judge(p["question"], p["x"], p["y"]) > 0 for p in pairs]  # noqa: E731
    fails_with(ch16.check_debiased, one_order, "both orders")


def test_recall_at_k():
    def recall(off_by_one=0):
        return lambda rankings, gold, k: (
            sum(g in list(r)[: k + off_by_one] for r, g in zip(rankings, gold)) / len(gold)
        )

    assert ch16.check_recall_at_k(recall())
    fails_with(ch16.check_recall_at_k, recall(1), "off by one")
    fails_with(ch16.check_recall_at_k, lambda r, g, k: 1.0, "recall@1")
