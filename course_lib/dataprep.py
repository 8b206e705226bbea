"""Data preparation: cleaning, exact and near-duplicate removal, class balancing, splits.

Taught in chapter 02 (data preparation). The near-duplicate search is MinHash with
locality-sensitive hashing (Broder 1997; the banding trick of Leskovec, Rajaraman & Ullman,
*Mining of Massive Datasets*, ch. 3), written out so that every step can be read; the chapter
checks it against brute-force Jaccard similarity and against the `datasketch` library.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")
LABEL_SPELLINGS = {
    "pos": "positive",
    "positive": "positive",
    "+": "positive",
    "neg": "negative",
    "negative": "negative",
    "-": "negative",
    "neu": "neutral",
    "neutral": "neutral",
    "0": "neutral",
}


# ---------------------------------------------------------------- cleaning
def clean_text(text: str) -> str:
    """Unescape HTML entities, drop tags, normalise Unicode (NFKC) and whitespace."""
    if not isinstance(text, str):
        raise TypeError(f"clean_text needs a string, got {type(text).__name__}")
    text = _TAG.sub(" ", html.unescape(text))
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def canonical_label(label: object) -> str | None:
    """'Positive', ' pos ', '+' -> 'positive'; None for a label that cannot be mapped."""
    if not isinstance(label, str):
        return None
    return LABEL_SPELLINGS.get(label.strip().lower())


def clean_records(
    records: Sequence[dict], min_words: int = 4, max_words: int = 60
) -> tuple[list[dict], Counter]:
    """Clean text and labels; drop records too short, too long or unlabelled. Returns (kept, reasons)."""
    _check_records(records, ("text", "label"))
    kept, dropped = [], Counter()
    for r in records:
        text, label = clean_text(r["text"]), canonical_label(r["label"])
        n = len(text.split())
        reason = (
            "unknown label"
            if label is None
            else "too short"
            if n < min_words
            else "too long"
            if n > max_words
            else None
        )
        if reason:
            dropped[reason] += 1
        else:
            kept.append({**r, "text": text, "label": label})
    return kept, dropped


# ---------------------------------------------------------------- exact duplicates
def normalise_for_dedup(text: str) -> str:
    """Lower case, no punctuation, single spaces: what 'the same text' means for dedup."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", clean_text(text).lower())).strip()


def dedup_exact(records: Sequence[dict], key: str = "text") -> list[dict]:
    """Keep the first record of every group whose normalised `key` is identical."""
    _check_records(records, (key,))
    seen, out = set(), []
    for r in records:
        h = hashlib.sha1(normalise_for_dedup(r[key]).encode()).hexdigest()
        if h not in seen:
            seen.add(h)
            out.append(r)
    return out


# ---------------------------------------------------------------- near duplicates
def shingles(text: str, n: int = 3) -> set[str]:
    """The set of word n-grams of the normalised text (the whole text if it is shorter)."""
    if n < 1:
        raise ValueError(f"shingle size n must be >= 1, got {n}")
    words = normalise_for_dedup(text).split()
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


_PRIME = (1 << 61) - 1


def _hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % _PRIME


def minhash_params(num_perm: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The num_perm random hash functions h(x) = (a*x + b) mod p, as arrays a, b."""
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    rng = np.random.default_rng(seed)
    return (
        rng.integers(1, _PRIME, num_perm, dtype=np.uint64),
        rng.integers(0, _PRIME, num_perm, dtype=np.uint64),
    )


def minhash_signature(items: set[str], params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """For each hash function, the minimum hash over the set: P(equal) = Jaccard similarity."""
    a, b = params
    if not items:
        return np.full(len(a), _PRIME, dtype=np.uint64)
    x = np.array([_hash64(s) for s in items], dtype=object)
    # Python ints (dtype=object) so that a*x+b cannot overflow 64 bits.
    h = (np.outer(a.astype(object), x) + b.astype(object)[:, None]) % _PRIME
    return h.min(axis=1).astype(np.uint64)


def lsh_candidates(signatures: Sequence[np.ndarray], bands: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures agree on all rows of at least one band."""
    if not signatures:
        return set()
    k = len(signatures[0])
    if bands < 1 or k % bands:
        raise ValueError(f"bands must divide the signature length {k}, got {bands}")
    rows, pairs = k // bands, set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, sig in enumerate(signatures):
            buckets[sig[band * rows : (band + 1) * rows].tobytes()].append(i)
        for ids in buckets.values():
            pairs.update((ids[x], ids[y]) for x in range(len(ids)) for y in range(x + 1, len(ids)))
    return pairs


def lsh_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that a pair of Jaccard `similarity` becomes a candidate: 1 - (1 - s^r)^b."""
    return 1 - (1 - similarity**rows) ** bands


def near_duplicate_pairs(
    texts: Sequence[str],
    threshold: float = 0.5,
    num_perm: int = 64,
    bands: int = 32,
    n: int = 3,
    seed: int = 0,
) -> list[tuple[int, int, float]]:
    """Pairs of texts with Jaccard similarity >= threshold: LSH candidates, verified exactly."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    sets = [shingles(t, n) for t in texts]
    params = minhash_params(num_perm, seed)
    sigs = [minhash_signature(s, params) for s in sets]
    found = []
    for i, j in sorted(lsh_candidates(sigs, bands)):
        sim = jaccard(sets[i], sets[j])
        if sim >= threshold:
            found.append((i, j, sim))
    return found


def drop_near_duplicates(
    records: Sequence[dict], threshold: float = 0.5, key: str = "text", **kwargs
) -> tuple[list[dict], list[dict]]:
    """Keep the first record of each near-duplicate group; returns (kept, dropped)."""
    _check_records(records, (key,))
    drop = {j for _, j, _ in near_duplicate_pairs([r[key] for r in records], threshold, **kwargs)}
    return (
        [r for i, r in enumerate(records) if i not in drop],
        [r for i, r in enumerate(records) if i in drop],
    )


def decontaminate(
    test: Sequence[dict], train: Sequence[dict], threshold: float = 0.5, key: str = "text", **kwargs
) -> tuple[list[dict], list[dict]]:
    """Split `test` into (clean, leaked): leaked rows near-duplicate some training row."""
    _check_records(test, (key,))
    _check_records(train, (key,))
    texts = [r[key] for r in train] + [r[key] for r in test]
    n = len(train)
    leaked = {j - n for i, j, _ in near_duplicate_pairs(texts, threshold, **kwargs) if i < n <= j}
    return (
        [r for i, r in enumerate(test) if i not in leaked],
        [r for i, r in enumerate(test) if i in leaked],
    )


# ---------------------------------------------------------------- balance and split
def balance_classes(records: Sequence[dict], key: str = "label", seed: int = 0) -> list[dict]:
    """Down-sample every class to the size of the smallest one (order shuffled, seeded)."""
    _check_records(records, (key,))
    by: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by[r[key]].append(r)
    rng, m = random.Random(seed), min(len(v) for v in by.values())
    out = [r for lab in sorted(by) for r in rng.sample(by[lab], m)]
    rng.shuffle(out)
    return out


def stratified_split(
    records: Sequence[dict],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    key: str | None = "label",
    seed: int = 0,
) -> list[list[dict]]:
    """Split into len(ratios) parts with those shares, keeping each class's share (if `key`)."""
    if not records:
        raise ValueError("stratified_split needs at least one record")
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-9:
        raise ValueError(
            f"ratios must be non-negative and sum to 1 (e.g. (0.8, 0.1, 0.1)), got {tuple(ratios)}"
        )
    if key is not None:
        _check_records(records, (key,))
    groups: dict = defaultdict(list)
    for r in records:
        groups[r[key] if key else None].append(r)
    rng, parts = random.Random(seed), [[] for _ in ratios]
    for g in sorted(groups, key=str):
        items = rng.sample(groups[g], len(groups[g]))
        cuts = np.round(np.cumsum(ratios) * len(items)).astype(int)
        for p, (lo, hi) in enumerate(zip([0, *cuts[:-1]], cuts)):
            parts[p] += items[lo:hi]
    for p in parts:
        rng.shuffle(p)
    return parts


def accuracy_standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent examples: sqrt(p(1-p)/n)."""
    if n < 1 or not 0 <= accuracy <= 1:
        raise ValueError(f"need n >= 1 and accuracy in [0, 1], got n={n}, accuracy={accuracy}")
    return float(np.sqrt(accuracy * (1 - accuracy) / n))


def flip_labels(
    records: Sequence[dict], rate: float, labels: Sequence[str], seed: int = 0, key: str = "label"
) -> list[dict]:
    """Label noise: each record's label replaced, with probability `rate`, by a different label."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if len(set(labels)) < 2:
        raise ValueError("labels must name at least two classes")
    _check_records(records, (key,))
    rng, out = random.Random(seed), []
    for r in records:
        if rng.random() < rate:
            r = {**r, key: rng.choice([lab for lab in labels if lab != r[key]])}
        out.append(r)
    return out


def _check_records(records: Iterable[dict], fields: Sequence[str]) -> None:
    if isinstance(records, (str, dict)):
        raise TypeError("pass a list of records (dicts), not a single string or dict")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise TypeError(f"record {i} is a {type(r).__name__}, expected a dict")
        missing = [f for f in fields if f not in r]
        if missing:
            raise ValueError(f"record {i} lacks the field(s) {missing}; it has {sorted(r)}")


# ---------------------------------------------------------------- augmentation
def swap_judgements(text: str, rng: random.Random, keep_polarity: bool = True) -> str:
    """Data augmentation on a review: every judgement word (great, awful, okay, ...) replaced by
    another one. `keep_polarity=True` draws from the word's own polarity list, so the gold label
    is unchanged (label-preserving); `False` draws from all judgement words, which silently
    changes the label of many copies while they keep the original one (label-changing).
    Taught in chapter 02 (augmentation): only a transformation that preserves the label may keep it."""
    from course_lib.world.documents import NEGATIVE, NEUTRAL, POSITIVE

    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    groups = (POSITIVE, NEGATIVE, NEUTRAL)
    every = [w for g in groups for w in g]
    words = []
    for word in text.split(" "):
        core = word.rstrip(".,")
        group = next((g for g in groups if core in g), None)
        if group is not None:
            pool = group if keep_polarity else every
            word = rng.choice([w for w in pool if w != core]) + word[len(core) :]
        words.append(word)
    return " ".join(words)
