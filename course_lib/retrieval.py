"""A real retriever: BM25 from scratch over the course world's notes, recall@k, and what fails.

Taught in chapter 16 (LLM judges and a real retriever). It replaces the oracle of chapters 01 and
08, which pasted the right fact into the prompt, by a retriever that has to find it among
thousands of notes. `BM25` equals the `rank_bm25` package's `BM25Okapi` (pinned in
requirements.txt) with `idf="okapi"`; the lesson checks it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np

from course_lib.data import load_jsonl

WORD = re.compile(r"[a-z0-9]+")
IDF_KINDS = ("rsj", "okapi", "lucene")
QUERY_FORMS = ("question", "probe_seen", "probe_paraphrase")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and numbers: the terms BM25 counts (chapter 16)."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize takes a string, got {type(text).__name__}")
    return WORD.findall(text.lower())


def rsj_idf(n_docs: int, doc_freq: int) -> float:
    """Robertson–Spärck Jones idf, log((N − n + 0.5) / (n + 0.5)): negative for n > N/2 (ch. 16)."""
    if not 0 <= doc_freq <= n_docs or n_docs < 1:
        raise ValueError(f"need 0 <= doc_freq <= n_docs and n_docs >= 1, got {doc_freq}, {n_docs}")
    return math.log((n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class BM25:
    """Okapi BM25 over tokenized documents (chapter 16).

    score(q, d) = Σ_{t in q} idf(t) · f(t,d)·(k1+1) / (f(t,d) + k1·(1 − b + b·|d|/avgdl)),
    a query term counted once per occurrence in the query. `idf` is "rsj" (the raw
    Robertson–Spärck Jones weight), "okapi" (rank_bm25's: negative weights replaced by
    epsilon × the mean idf) or "lucene" (log(1 + (N − n + 0.5)/(n + 0.5)), never negative).
    """

    def __init__(
        self,
        docs: Sequence[Sequence[str]],
        k1: float = 1.5,
        b: float = 0.75,
        idf: str = "okapi",
        epsilon: float = 0.25,
    ):
        if isinstance(docs, str) or not docs or any(isinstance(d, str) for d in docs):
            raise ValueError("pass a non-empty list of tokenized documents (lists of words)")
        if idf not in IDF_KINDS:
            raise ValueError(f"idf must be one of {IDF_KINDS}, got {idf!r}")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.kind = k1, b, idf
        self.counts = [Counter(d) for d in docs]
        self.doc_len = np.array([len(d) for d in docs], dtype=float)
        self.avgdl = float(self.doc_len.mean())
        n = len(docs)
        df = Counter(t for c in self.counts for t in c)
        raw = {t: rsj_idf(n, m) for t, m in df.items()}
        if idf == "rsj":
            self.idf = raw
        elif idf == "lucene":
            self.idf = {t: math.log(1 + (n - m + 0.5) / (m + 0.5)) for t, m in df.items()}
        else:
            floor = epsilon * sum(raw.values()) / len(raw)
            self.idf = {t: (v if v >= 0 else floor) for t, v in raw.items()}
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, c in enumerate(self.counts):
            for t, f in c.items():
                self.postings.setdefault(t, ([], []))
                self.postings[t][0].append(i)
                self.postings[t][1].append(f)
        self.postings = {
            t: (np.array(a), np.array(f, float)) for t, (a, f) in self.postings.items()
        }
        self.norm = k1 * (1 - b + b * self.doc_len / self.avgdl)

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for a tokenized query."""
        if isinstance(query, str):
            raise TypeError("pass the query tokenized (a list of words), e.g. tokenize(question)")
        out = np.zeros(len(self.counts))
        for t in query:
            if t in self.postings:
                rows, f = self.postings[t]
                out[rows] += self.idf[t] * f * (self.k1 + 1) / (f + self.norm[rows])
        return out

    def top_k(self, query: Sequence[str], k: int) -> list[int]:
        """Indices of the k best documents, best first (ties: the earlier document first)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        s = self.scores(query)
        return [int(i) for i in np.lexsort((np.arange(len(s)), -s))[:k]]


def world_notes(n_corpus: int = 3000, n_clinic: int = 300) -> list[dict]:
    """The retriever's collection (chapter 16): one note per new fact (its two statements; chapter
    01's 80 facts), then `n_corpus` documents of the course corpus and `n_clinic` clinic notes as
    the haystack. Each note: text, kind, and for a fact note its person and attribute."""
    notes = [
        {
            "text": " ".join(f["statements"]),
            "kind": "fact",
            "person": f["person"],
            "attribute": f["attribute"],
        }
        for f in load_jsonl("new_facts")
    ]
    notes += [
        {"text": r["text"], "kind": r["kind"]} for r in load_jsonl("corpus_sample")[:n_corpus]
    ]
    notes += [{"text": r["text"], "kind": "clinic"} for r in load_jsonl("clinic_val")[:n_clinic]]
    return notes


def gold_note(fact: dict, notes: Sequence[dict]) -> int:
    """Index of the note that holds this fact (its person and attribute)."""
    for i, n in enumerate(notes):
        if n.get("person") == fact["person"] and n.get("attribute") == fact["attribute"]:
            return i
    raise ValueError(f"no note holds {fact['person']}'s {fact['attribute']}")


def recall_at_k(rankings: Sequence[Sequence[int]], gold: Sequence[int], k: int) -> list[int]:
    """1/0 per query: is its gold note among the first k retrieved (chapter 16)?"""
    if len(rankings) != len(gold):
        raise ValueError(f"got {len(rankings)} rankings but {len(gold)} gold notes")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [int(g in list(r)[:k]) for r, g in zip(rankings, gold)]


def failure_kind(fact: dict, top: int, notes: Sequence[dict]) -> str:
    """Why the first retrieved note is not the gold one: 'hit', 'same person, other fact',
    'name collision' (a note that names the person, or shares a name with them, but is not
    theirs) or 'other'."""
    note = notes[top]
    if note.get("person") == fact["person"]:
        return "hit" if note.get("attribute") == fact["attribute"] else "same person, other fact"
    names = set(tokenize(fact["person"]))
    return "name collision" if names & set(tokenize(note["text"])) else "other"


def retrieved_prompts(
    facts: Sequence[dict], form: str, index: BM25, notes: Sequence[dict], k: int
) -> list[str]:
    """Each fact's probe (`form`) after its k best notes, the best one last (next to the probe)."""
    if form not in QUERY_FORMS[1:]:
        raise ValueError(f"form must be one of {QUERY_FORMS[1:]}, got {form!r}")
    if k < 0:
        raise ValueError(f"k must be >= 0 (0: no retrieval), got {k}")
    out = []
    for f in facts:
        top = index.top_k(tokenize(f[form]), k) if k else []
        out.append(" ".join([notes[i]["text"] for i in reversed(top)] + [f[form]]))
    return out


def answer_hits(model, tokenizer, facts: Sequence[dict], prompts: Sequence[str]) -> list[int]:
    """1/0 per fact: does the model rank the fact's answer first among its candidates after the
    prompt (chapter 01's probe scoring)?"""
    from course_lib.evaluation import choose_many

    if len(facts) != len(prompts):
        raise ValueError(f"got {len(facts)} facts but {len(prompts)} prompts")
    picks = choose_many(model, tokenizer, list(prompts), [f["candidates"] for f in facts])
    return [int(p == f["answer"]) for p, f in zip(picks, facts)]
