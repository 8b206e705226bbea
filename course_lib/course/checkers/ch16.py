"""Checks for the chapter 16 exercises (BM25's idf and scores, swap-and-average judging, recall@k).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import math

import numpy as np

from course_lib.course.checks import check, expect, expect_close

# A small collection where every mistake changes the numbers: documents of different lengths,
# a word in most documents (negative raw idf), a word repeated inside a document and in a query.
DOCS = [
    "ines castell lives in stonebridge ines castell s home is in stonebridge".split(),
    "a visitor called ines castell came to lindenfield".split(),
    "ines gorse earns a living as a librarian in fernwick".split(),
    "the market in oakhollow opens on friday".split(),
    "a patient in fernwick reported a rash".split(),
]
QUERIES = [
    "where does ines castell live".split(),
    "ines castell ines castell".split(),
    "a living in fernwick".split(),
]


# --- 16.1: the Robertson–Spärck Jones idf --------------------------------------------------------


@check("16.1 the Robertson–Spärck Jones idf")
def check_rsj_idf(student_fn) -> None:
    """The student's rsj_idf(n_docs, doc_freq) = ln((N − n + 0.5) / (n + 0.5))."""
    expect(callable(student_fn), "pass your function itself, not its result")
    for n_docs, df in ((1000, 3), (100, 50), (10, 9), (5, 1)):
        want = math.log((n_docs - df + 0.5) / (df + 0.5))
        hints = {
            math.log(n_docs / df): "that is the classic idf ln(N/n); BM25's RSJ weight is "
            "ln((N − n + 0.5)/(n + 0.5))",
            math.log((n_docs - df) / df): "the +0.5 smoothing is missing "
            "from the numerator and the denominator",
            math.log(1 + (n_docs - df + 0.5) / (df + 0.5)): "that is Lucene's ln(1 + …), which "
            "is never negative; the RSJ weight has no 1 +",
            math.log((df + 0.5) / (n_docs - df + 0.5)): "the fraction is upside down: rare words "
            "must get a large idf",
        }
        expect_close(student_fn(n_docs, df), want, 1e-6, f"rsj_idf({n_docs}, {df})", hints)


# --- 16.2: BM25 scores ---------------------------------------------------------------------------


def reference_scores(docs, query, k1: float = 1.5, b: float = 0.75, **mistakes) -> np.ndarray:
    """BM25 with the raw RSJ idf; `mistakes` switch on the usual errors (for the hints and tests)."""
    n, lengths = len(docs), np.array([len(d) for d in docs], float)
    avgdl = lengths.mean()
    terms = set(query) if mistakes.get("unique_query") else query
    out = np.zeros(n)
    for t in terms:
        df = sum(t in d for d in docs)
        if df == 0:
            continue
        idf = math.log((n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            f = d.count(t)
            norm = 1 - b + b * lengths[i] / avgdl
            if mistakes.get("no_length"):
                norm = 1.0
            if mistakes.get("inverted_length"):
                norm = 1 - b + b * avgdl / lengths[i]
            top = f * (1 if mistakes.get("no_k1_plus_1") else k1 + 1)
            out[i] += idf * top / (f + k1 * norm)
    return out


@check("16.2 BM25 scores")
def check_bm25_scores(student_fn) -> None:
    """The student's bm25_scores(docs, query, k1, b) -> one score per document."""
    expect(callable(student_fn), "pass your function itself, not its result")
    for query in QUERIES:
        for k1, b in ((1.5, 0.75), (1.2, 0.3)):
            got = np.asarray(student_fn(DOCS, query, k1, b), dtype=float)
            expect(
                got.shape == (len(DOCS),),
                f"expected one score per document ({len(DOCS)}), got shape {got.shape}",
            )
            hints = [
                (
                    reference_scores(DOCS, query, k1, b, no_length=True),
                    "the length normalisation is missing: divide by f + k1·(1 − b + b·|d|/avgdl)",
                ),
                (
                    reference_scores(DOCS, query, k1, b, inverted_length=True),
                    "|d|/avgdl is upside down: long documents must be discounted",
                ),
                (
                    reference_scores(DOCS, query, k1, b, no_k1_plus_1=True),
                    "the numerator is "
                    "f·(k1 + 1), not f: the ranking is the same but the scores are not BM25's",
                ),
                (
                    reference_scores(DOCS, query, k1, b, unique_query=True),
                    "a word repeated in "
                    "the query counts once per occurrence (as in rank_bm25), not once",
                ),
            ]
            want = reference_scores(DOCS, query, k1, b)
            expect_close(got, want, 1e-6, f"the scores of {' '.join(query)!r}", hints)
    from course_lib.retrieval import BM25

    lib = BM25(DOCS, idf="rsj").scores(QUERIES[0])
    expect_close(student_fn(DOCS, QUERIES[0], 1.5, 0.75), lib, 1e-6, "the scores vs course_lib")


# --- 16.3: swap-and-average ------------------------------------------------------------------------


def biased_judge(pull: float = 3.0):
    """A toy judge: log-odds that the first answer wins = `pull` (a position bias) + the
    difference of the answers' true qualities (their length here, shorter is better)."""

    def judge(question: str, first: str, second: str) -> float:
        return pull + (len(second) - len(first)) / 10

    return judge


JUDGE_PAIRS = [
    {"question": "q", "x": "short", "y": "a much longer answer"},
    {"question": "q", "x": "a much longer answer", "y": "short"},
    {"question": "q", "x": "tiny", "y": "a longer one here"},
    {"question": "q", "x": "an answer that rambles on", "y": "brief"},
]
TRUTH = [True, False, True, False]  # shorter wins


@check("16.3 swap-and-average")
def check_debiased(student_fn) -> None:
    """The student's debiased_prefers_x(judge, pairs) -> [bool]: x wins after swap-and-average."""
    expect(callable(student_fn), "pass your function itself, not its result")
    calls = []
    judge = biased_judge()

    def counting(question, first, second):
        calls.append((first, second))
        return judge(question, first, second)

    got = [bool(v) for v in student_fn(counting, JUDGE_PAIRS)]
    expect(len(got) == len(JUDGE_PAIRS), f"expected {len(JUDGE_PAIRS)} verdicts, got {len(got)}")
    orders = {(p["x"], p["y"]) for p in JUDGE_PAIRS} | {(p["y"], p["x"]) for p in JUDGE_PAIRS}
    expect(
        set(calls) == orders,
        "ask the judge about every pair in both orders: judge(q, x, y) and judge(q, y, x)",
    )
    expect(
        got != [True] * len(got),
        "every pair says x: that is the judge's position bias (x shown first wins); subtract the "
        "swapped verdict, s(x, y) − s(y, x), do not add it",
    )
    expect(
        got != [not t for t in TRUTH],
        "your verdicts are all reversed: x wins when s(x, y) − s(y, x) > 0",
    )
    expect(got == TRUTH, f"expected {TRUTH} (the shorter answer wins), got {got}")


# --- 16.4: recall@k --------------------------------------------------------------------------------


@check("16.4 recall@k")
def check_recall_at_k(student_fn) -> None:
    """The student's recall_at_k(rankings, gold, k) -> share of queries with gold in the top k."""
    expect(callable(student_fn), "pass your function itself, not its result")
    rankings = [[3, 1, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0]]
    gold = [1, 0, 1, 0]
    for k, want in ((1, 0.25), (2, 0.5), (3, 1.0)):
        hints = {1.0: "off by one: the top k are ranking[:k]"} if k == 2 else {}
        if k == 1:
            hints = {0.5: "off by one: the top k are ranking[:k], not ranking[:k + 1]"}
        expect_close(student_fn(rankings, gold, k), want, 1e-9, f"recall@{k}", hints)
