"""Build and regenerate every dataset of the course (`python -m course_lib.world.datasets`).

Taught in chapter 00 (tour of the datasets) and chapter 02 (data preparation).
One seed per file; the output is byte-identical on every run.
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from course_lib.data import DATA_DIR
from course_lib.world.documents import LABELS, clinic_note, corpus_doc, review_text
from course_lib.world.entities import WORLD_SEED, Chooser, World, make_world
from course_lib.world.instructions import (
    FACT_QUESTIONS,
    SKILLS,
    fact_pairs,
    instruction_example,
    make_record,
)
from course_lib.world.new_facts import context_qa_records, new_fact_records
from course_lib.world.preferences import preference_pair

SIZES = {
    "corpus_val": 2000,
    "corpus_sample": 3000,
    "clinic_train": 1500,
    "clinic_val": 300,
    "reviews_train": 3000,
    "reviews_val": 500,
    "reviews_test": 1000,
    "instructions_train": 1000,
    "instructions_val": 100,
    "instructions_test": 250,
    "preferences_train": 2000,
    "preferences_test": 500,
    "context_qa_train": 400,
}
ANNOTATOR_NOISE = 0.1
HELD_OUT_FACT_SHARE = 0.4


def seed_for(name: str) -> int:
    """A stable seed per dataset file (the same on every machine and Python)."""
    return WORLD_SEED * 1_000_003 + zlib.crc32(name.encode())


def corpus_documents(split: str, n: int, start: int = 0) -> Iterator[dict]:
    """Documents `start`..`start+n` of a corpus split ("train" or "val"), with their log-probability."""
    if split not in ("train", "val"):
        raise ValueError(f"corpus split must be 'train' or 'val', not {split!r}")
    w = make_world()
    ch = Chooser(seed_for(f"corpus_{split}"))
    for i in range(start + n):
        ch.logp = 0.0
        text, kind = corpus_doc(ch, w)
        if i >= start:
            yield {"text": text, "kind": kind, "logp": round(ch.logp, 6)}


def clinic_notes(split: str, n: int) -> list[dict]:
    """Clinic notes of a split, with their log-probability."""
    ch = Chooser(seed_for(f"clinic_{split}"))
    out = []
    for _ in range(n):
        ch.logp = 0.0
        text = clinic_note(ch)
        out.append({"text": text, "logp": round(ch.logp, 6)})
    return out


def reviews(split: str, n: int, w: World) -> list[dict]:
    """Labelled reviews, balanced over the three labels, in random order."""
    ch = Chooser(seed_for(f"reviews_{split}"))
    quota = {lab: n // 3 + (1 if i < n % 3 else 0) for i, lab in enumerate(LABELS)}
    out: list[dict] = []
    while len(out) < n:
        pr = ch.choice(w.products)
        text, label = review_text(ch, pr)
        if quota[label] > 0:
            quota[label] -= 1
            out.append({"text": text, "label": label, "product": pr.name})
    # Shuffled, so that any prefix (reviews[:300]) is balanced too, not only the whole file.
    return ch.shuffled(out)


def _fact_split(w: World) -> dict[str, list]:
    """Split the (person, attribute) facts: val and test ask only about held-out facts."""
    pairs = fact_pairs(w)
    ch = Chooser(seed_for("fact_split"))
    held = ch.sample(pairs, int(len(pairs) * HELD_OUT_FACT_SHARE))
    n_val = len(held) // 4
    return {"train": [p for p in pairs if p not in held], "val": held[:n_val], "test": held[n_val:]}


def _fact_records(ch: Chooser, w: World, pairs: list[tuple], n: int) -> list[dict]:
    """Up to n fact-question records: every (fact, phrasing) at most once, in random order."""
    options = [(p, a, q) for p, a in pairs for q in range(len(FACT_QUESTIONS[a]))]
    out = []
    for p, a, q in ch.sample(options, min(n, len(options))):
        question = FACT_QUESTIONS[a][q].format(name=p.name)
        out.append(make_record("fact", question, "", p.fact(a)))
    return out


def instructions(split: str, n: int, w: World, exclude: set[str] | None = None) -> list[dict]:
    """Instruction records, n/5 per skill (fewer fact questions when the split has
    fewer facts), no record repeated within or across splits (via `exclude`)."""
    ch = Chooser(seed_for(f"instructions_{split}"))
    per_skill = n // len(SKILLS)
    exclude = exclude if exclude is not None else set()
    out = _fact_records(ch, w, _fact_split(w)[split], per_skill)
    exclude.update(r["instruction"] + "\n" + r["input"] for r in out)
    for skill in SKILLS[1:]:
        made, tries = 0, 0
        while made < per_skill:
            tries += 1
            if tries > 100 * per_skill:
                raise RuntimeError(f"cannot find {per_skill} distinct {skill!r} instructions")
            rec = instruction_example(ch, w, skill, [])
            key = rec["instruction"] + "\n" + rec["input"]
            if key not in exclude:
                exclude.add(key)
                out.append(rec)
                made += 1
    return out


def preferences(split: str, n: int, w: World, noise: float = ANNOTATOR_NOISE) -> list[dict]:
    """Preference pairs labelled by the gold reward with annotator noise."""
    split_pairs = _fact_split(w)
    pairs = split_pairs["train"] if split == "train" else split_pairs["val"] + split_pairs["test"]
    ch = Chooser(seed_for(f"preferences_{split}"))
    out: list[dict] = []
    while len(out) < n:
        rec = preference_pair(ch, w, pairs, noise)
        if rec is not None:
            out.append(rec)
    return out


def world_json(w: World) -> dict:
    """The world as plain JSON (people, new_facts people, products, towns)."""
    return {
        "towns": list(w.towns),
        "people": [asdict(p) for p in w.people],
        "new_people": [asdict(p) for p in w.new_people],
        "products": [asdict(p) for p in w.products],
    }


def build_all() -> dict[str, list]:
    """Every committed dataset file, as {file stem: records}."""
    w = make_world()
    files: dict[str, list] = {
        "corpus_val": list(corpus_documents("val", SIZES["corpus_val"])),
        "corpus_sample": list(corpus_documents("train", SIZES["corpus_sample"])),
        "clinic_train": clinic_notes("train", SIZES["clinic_train"]),
        "clinic_val": clinic_notes("val", SIZES["clinic_val"]),
        "new_facts": new_fact_records(w),
    }
    for split in ("train", "val", "test"):
        files[f"reviews_{split}"] = reviews(split, SIZES[f"reviews_{split}"], w)
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        files[f"instructions_{split}"] = instructions(
            split, SIZES[f"instructions_{split}"], w, seen
        )
    for split in ("train", "test"):
        files[f"preferences_{split}"] = preferences(split, SIZES[f"preferences_{split}"], w)
    files["context_qa_train"] = context_qa_records(
        Chooser(seed_for("context_qa_train")), w, SIZES["context_qa_train"]
    )
    return files


def dumps_jsonl(records: list[dict]) -> str:
    """The exact bytes the course writes for a list of records."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_all(out_dir: Path = DATA_DIR) -> list[Path]:
    """Regenerate every dataset file into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, records in build_all().items():
        path = out_dir / f"{stem}.jsonl"
        path.write_text(dumps_jsonl(records), encoding="utf-8")
        written.append(path)
    path = out_dir / "world.json"
    path.write_text(
        json.dumps(world_json(make_world()), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return written + [path]


def main() -> None:
    """Command line: regenerate all datasets (byte-identical)."""
    ap = argparse.ArgumentParser(description="Regenerate the course datasets in data/.")
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="output folder (default: data/)")
    args = ap.parse_args()
    for path in write_all(args.out):
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
