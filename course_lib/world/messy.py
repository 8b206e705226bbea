"""Messy 'scraped' reviews for chapter 02 to clean: HTML, odd spacing, label spellings, junk rows,
exact and near duplicates, each row labelled with the defect injected (for checking only).

Part of the course world: it uses the world's brands and filler phrases. Taught in chapter 02.
"""

from __future__ import annotations

import random
from typing import Sequence

from course_lib.dataprep import LABEL_SPELLINGS, _check_records
from course_lib.world.documents import TAILS
from course_lib.world.entities import BRANDS


def near_duplicate_variant(text: str, rng: random.Random) -> str:
    """The same review with one small edit: another brand, another filler phrase, or shouting."""
    edits = ["shout"]
    brands = [b for b in BRANDS if b in text]
    tails = [t for t in TAILS if t and t in text]
    edits += ["brand"] * bool(brands) + ["tail"] * bool(tails)
    edit = rng.choice(edits)
    if edit == "brand":
        return text.replace(brands[0], rng.choice([b for b in BRANDS if b != brands[0]]), 1)
    if edit == "tail":
        return text.replace(tails[0], rng.choice([t for t in TAILS if t != tails[0]]), 1)
    return text.rstrip(".").upper() + rng.choice(["!", " !!", "!!!"])


def messy_reviews(
    records: Sequence[dict],
    seed: int = 0,
    dup_rate: float = 0.08,
    near_dup_rate: float = 0.08,
    junk_rate: float = 0.05,
) -> list[dict]:
    """A 'scraped' version of clean reviews: HTML, odd spacing and label spellings, junk rows,
    exact and near duplicates. Each row's `issue` says what was injected and `source` which
    clean record it came from (rows with the same source are duplicates): for checking only."""
    _check_records(records, ("text", "label"))
    rng = random.Random(seed)
    spellings = {
        lab: [k for k, v in LABEL_SPELLINGS.items() if v == lab] + [lab.title(), lab.upper()]
        for lab in set(LABEL_SPELLINGS.values())
    }
    raw: list[dict] = []
    for i, r in enumerate(records):
        text = r["text"]
        if rng.random() < 0.3:
            text = f"<p>{text.replace(' and ', ' &amp; ', 1)}</p>"
        if rng.random() < 0.3:
            text = "  " + text.replace(" ", "  \n", 1) + " "
        label = rng.choice(spellings[r["label"]]) if r["label"] in spellings else r["label"]
        raw.append({"id": i, "text": text, "label": label, "issue": "none", "source": i})
    n = len(raw)
    for _ in range(round(dup_rate * n)):
        raw.append({**raw[rng.randrange(n)], "issue": "exact duplicate"})
    for _ in range(round(near_dup_rate * n)):
        k = rng.randrange(n)
        raw.append(
            {
                "id": None,
                "text": near_duplicate_variant(records[k]["text"], rng),
                "label": records[k]["label"],
                "issue": "near duplicate",
                "source": k,
            }
        )
    junk = ["", "   ", "<br/>", "great!!!", "N/A", "asdf asdf"]
    for _ in range(round(junk_rate * n)):
        raw.append(
            {
                "id": None,
                "text": rng.choice(junk),
                "label": rng.choice(["positive", "", "??"]),
                "issue": "junk",
                "source": None,
            }
        )
    rng.shuffle(raw)
    for j, r in enumerate(raw):
        r["id"] = j
    return raw
