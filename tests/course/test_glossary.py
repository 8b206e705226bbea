"""GLOSSARY.md: a well-formed English ↔ 中文 table, one definition and a real chapter per term."""

import re

from course_lib.data import ROOT

GLOSSARY = ROOT / "GLOSSARY.md"


def _rows():
    lines = [l for l in GLOSSARY.read_text(encoding="utf-8").splitlines() if l.startswith("| ")]
    return [[c.strip() for c in l.strip("|").split(" | ")] for l in lines[1:]]


def test_every_row_has_term_translation_definition_chapter():
    rows = _rows()
    assert len(rows) >= 60, f"expected a real glossary (≥ 60 terms), found {len(rows)}"
    for row in rows:
        assert len(row) == 4, (
            f"row should have 4 columns (English | 中文 | definition | chapter): {row}"
        )
        english, chinese, definition, chapter = row
        assert re.search(r"[\u4e00-\u9fff]", chinese), (
            f"{english!r}: the 中文 column has no Chinese characters"
        )
        assert definition.endswith(".") and len(definition) > 30, (
            f"{english!r}: give a one-sentence definition"
        )
        assert re.fullmatch(r"(0\d|1[0-2])", chapter), (
            f"{english!r}: chapter should be 00–12, got {chapter!r}"
        )


def test_sorted_and_unique():
    terms = [r[0].lower() for r in _rows()]
    assert terms == sorted(terms), "keep the glossary sorted by the English term"
    assert len(terms) == len(set(terms)), "a term appears twice"


def test_linked_from_readme():
    assert "(GLOSSARY.md)" in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "link GLOSSARY.md from the README"
    )


def test_is_a_markdown_table():
    lines = GLOSSARY.read_text(encoding="utf-8").splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("| English |"))
    assert re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|){4}", lines[header + 1]), (
        "the header row must be followed by a separator row (|---|---|---|---|), or the glossary "
        "renders as one paragraph on the website and on code hosts"
    )
